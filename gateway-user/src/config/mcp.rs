//! Raw (serde) types for `mcp` backends and the top-level `mcp:` shorthand. Owned by the MCP
//! subsystem.

use serde::Deserialize;

/// A route backend `mcp: {targets: [...]}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMcpBackend {}

/// `policies.mcpAuthorization`: CEL rules; a request is allowed when any rule is true.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMcpAuthorization {
    #[serde(default)]
    pub rules: Vec<String>,
}
