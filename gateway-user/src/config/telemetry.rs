//! Raw (serde) types for `config.tracing`, `config.logging`, `config.metrics` and the
//! `frontendPolicies.tracing` policy form. Owned by the telemetry subsystem.

use serde::Deserialize;

/// `config.tracing`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTracing {}

/// `config.logging`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLogging {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// Log level filter, e.g. `info` or `info,gateway=debug`.
    pub level: Option<String>,
}

/// `frontendPolicies.tracing`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawFrontendTracing {}
