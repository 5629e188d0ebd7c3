//! Raw (serde) types for `config.ebpf`. Owned by the eBPF subsystem.

use serde::Deserialize;

/// `config.ebpf`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawEbpf {}
