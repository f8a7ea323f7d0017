"""The ``bpfjit`` command line: run, prog, map, btf, asm, disasm, conformance-plugin.

Every verb goes through the same public API users call (``bpfjit.load``, ``Program``, ``asm``,
``disasm``, ``listing``, ``btf``, ``helpers``, ``kernel``; never ``bpfjit.runtime`` or the JIT),
and every user error ends as one ``bpfjit: error: ...`` line on stderr with exit status 1, never a
traceback. Ctrl-C stops any verb at once: ``bpfjit: interrupted``, status 130.

``bpfjit run`` without a file is the main job: the bundled XDP firewall (``data/firewall.c``,
built into ``data/firewall.o``) over the bundled packets (``data/packets.hex``) on both engines,
checked to agree on verdicts, packets, maps and globals, then timed.
"""
from .main_job import read_packets
from .parser import main

__all__ = ["main", "read_packets"]
