//! Wires config, proxy, telemetry, metrics, eBPF and admin servers together.
