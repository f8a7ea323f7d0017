"""What BPF programs run against: native memory, helpers, the reference interpreter."""
