//! eBPF loader and BPF map readers.
