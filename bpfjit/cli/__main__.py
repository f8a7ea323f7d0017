"""python -m bpfjit.cli: the same as the bpfjit command."""
import sys

from .parser import main

sys.exit(main())
