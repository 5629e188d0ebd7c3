//! Test support for the gateway: an LLM provider simulator usable in-process
//! ([`sim::Simulator`]) or as the `provider-sim` binary, plus the golden fixtures under
//! `tests/testdata/` that it produces.

pub mod sim;

pub use sim::{RecordedRequest, SimConfig, SimError, Simulator};

/// Directory of the golden request/response fixtures (`tests/testdata`).
pub fn testdata_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}
