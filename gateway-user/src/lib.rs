//! The gateway daemon as a library, so integration tests, fuzz targets and benches reach the
//! same code the binary runs. `app` wires the subsystems; see ARCHITECTURE.md for who owns what.

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod cel;
pub mod cloud;
pub mod config;
pub mod ctx;
pub mod ebpf;
pub mod guard;
pub mod limit;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod proxy;
pub mod spend;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod time;
