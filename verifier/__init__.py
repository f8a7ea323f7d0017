"""Static analysis of BPF programs: structure now, the full safety verifier in a later issue."""
