//! Configuration: agentgateway-compatible raw YAML types, `$VAR` expansion, validation that names
//! the YAML path and value, and compilation into an immutable runtime snapshot.

pub mod ebpf;
pub mod mcp;
pub mod telemetry;
