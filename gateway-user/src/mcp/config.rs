//! Raw (serde) types for `mcp` backends and the top-level `mcp:` shorthand, in agentgateway's
//! YAML shape (`LocalMcpBackend`, `LocalMcpTarget`, `McpAuthorization`). Owned by the MCP
//! subsystem: `config::raw` embeds them in the file's tree, and `McpBackend::new` validates them
//! and names the YAML path on error, so `mcp` never imports `config`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A route backend `mcp: {targets: [...]}` (agentgateway `LocalMcpBackend`), plus the gateway's
/// own limits (`maxMessageBytes`, `requestTimeout`, `sessionIdleTimeout`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMcpBackend {
    /// MCP servers multiplexed behind this one endpoint. At least one; names must be unique.
    #[serde(default)]
    pub targets: Vec<RawMcpTarget>,
    /// `stateful` (default): one gateway session per client, each holding one upstream session
    /// per target. `stateless`: every client request gets fresh upstream sessions that are closed
    /// when the request ends (no `Mcp-Session-Id` is issued).
    pub stateful_mode: Option<RawMcpStatefulMode>,
    /// How tool and prompt names are namespaced. Default `conditional`.
    pub prefix_mode: Option<RawMcpPrefixMode>,
    /// What happens when a target fails to initialize or fails during a fan-out. Default
    /// `failClosed`.
    pub failure_mode: Option<RawMcpFailureMode>,
    /// Reject requests whose `Host`/`Origin` is not localhost. Default false.
    pub dns_rebinding_protection: Option<bool>,
    /// Largest JSON-RPC message accepted from a client or a target, in bytes, per message
    /// (gateway extension). Default 4194304 (4 MiB). Larger client bodies get HTTP 413 with a
    /// JSON-RPC error; larger target messages fail the call.
    pub max_message_bytes: Option<u64>,
    /// Upper bound on one upstream call (connect, spawn, request to response), as a duration
    /// string such as `30s`, `500ms`, `2m` (gateway extension). Default `60s`. A crashed target
    /// is reported at once; this only bounds targets that hang.
    pub request_timeout: Option<String>,
    /// A session that sees no client request for this long is closed, with its upstream
    /// sessions and child processes (gateway extension). Duration string, default `30m`.
    pub session_idle_timeout: Option<String>,
}

/// `statefulMode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RawMcpStatefulMode {
    Stateless,
    Stateful,
}

/// `prefixMode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RawMcpPrefixMode {
    /// Prefix `${target}_` only when there is more than one target.
    Conditional,
    /// Always prefix, even with a single target.
    Always,
    /// Never prefix; calls are routed to the one target that lists the name.
    Never,
}

/// `failureMode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RawMcpFailureMode {
    FailClosed,
    FailOpen,
}

/// One entry of `targets[]`: a `name` plus exactly one of `stdio`, `sse`, `mcp` (`openapi` is
/// recognised and rejected as unsupported).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMcpTarget {
    /// Target name; the `${name}_` prefix of its tools and prompts when multiplexing.
    pub name: String,
    /// A local process speaking MCP over stdin/stdout. Spawned once per client session.
    pub stdio: Option<RawMcpStdio>,
    /// A remote server speaking the legacy HTTP+SSE transport (`GET /sse`, `POST` endpoint).
    pub sse: Option<RawMcpHttpTarget>,
    /// A remote server speaking streamable HTTP.
    pub mcp: Option<RawMcpHttpTarget>,
    /// agentgateway's OpenAPI-to-MCP target. Not supported; rejected with a clear error.
    pub openapi: Option<yaml_serde::Value>,
    /// agentgateway's per-target transport policies. Not supported; rejected when set.
    pub policies: Option<yaml_serde::Value>,
}

/// `stdio: {cmd, args, env}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpStdio {
    /// Program to run, looked up in `PATH` when not absolute.
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables for the child.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Start the child with an empty environment (plus `env`). Default false.
    #[serde(default)]
    pub clear_env: bool,
}

/// `sse:` / `mcp:` target address: `{host}` where host is a URL or `host:port`, or
/// `{host, port, path}`. The `{backend}` reference form is recognised and rejected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpHttpTarget {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub backend: Option<String>,
}

/// `policies.mcpAuthorization` (agentgateway `McpAuthorization` = `RuleSet`).
///
/// A rule is a CEL string (an allow rule) or `{allow|deny|require: expr}`. With no rules,
/// everything is allowed; any true `deny` denies; every `require` must be true; and when allow
/// rules exist at least one must be true.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMcpAuthorization {
    #[serde(default)]
    pub rules: Vec<RawMcpRule>,
}

/// One `mcpAuthorization.rules[]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawMcpRule {
    /// A bare CEL expression: allow when true.
    Allow(String),
    /// `{allow: expr}`, `{deny: expr}` or `{require: expr}`.
    Keyed(RawMcpKeyedRule),
}

/// The keyed form of a rule.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum RawMcpKeyedRule {
    Allow(String),
    Deny(String),
    Require(String),
}

impl From<String> for RawMcpRule {
    fn from(s: String) -> Self {
        RawMcpRule::Allow(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agentgateway_multiplex_example() {
        let yaml = r#"
targets:
- name: time
  stdio:
    cmd: uvx
    args: ["--with", "mcp<2", "mcp-server-time"]
- name: everything
  stdio:
    cmd: npx
    args: ["@modelcontextprotocol/server-everything"]
    env: {A: "1"}
- name: remote
  mcp:
    host: https://example.com:443/mcp
- name: legacy
  sse:
    host: 127.0.0.1
    port: 8080
    path: /sse
prefixMode: always
statefulMode: stateless
failureMode: failOpen
maxMessageBytes: 1024
"#;
        let raw: RawMcpBackend = yaml_serde::from_str(yaml).expect("parses");
        assert_eq!(raw.targets.len(), 4);
        assert_eq!(raw.targets[0].stdio.as_ref().map(|s| s.args.len()), Some(3));
        assert_eq!(
            raw.targets[1].stdio.as_ref().and_then(|s| s.env.get("A")),
            Some(&"1".to_string())
        );
        assert_eq!(
            raw.targets[2].mcp.as_ref().and_then(|m| m.host.as_deref()),
            Some("https://example.com:443/mcp")
        );
        assert_eq!(raw.targets[3].sse.as_ref().and_then(|m| m.port), Some(8080));
        assert_eq!(raw.prefix_mode, Some(RawMcpPrefixMode::Always));
        assert_eq!(raw.stateful_mode, Some(RawMcpStatefulMode::Stateless));
        assert_eq!(raw.failure_mode, Some(RawMcpFailureMode::FailOpen));
        assert_eq!(raw.max_message_bytes, Some(1024));
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = yaml_serde::from_str::<RawMcpBackend>("targets: []\nbogus: 1\n")
            .expect_err("unknown top-level key");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = yaml_serde::from_str::<RawMcpBackend>(
            "targets: [{name: a, stdio: {cmd: x, argz: []}}]",
        )
        .expect_err("unknown stdio key");
        assert!(err.to_string().contains("argz"), "{err}");
    }

    #[test]
    fn rules_accept_strings_and_keyed_forms() {
        let yaml = r#"
rules:
- 'mcp.tool.name == "echo"'
- allow: 'mcp.tool.name == "add"'
- deny: 'mcp.tool.name == "rm"'
- require: 'true'
"#;
        let raw: RawMcpAuthorization = yaml_serde::from_str(yaml).expect("parses");
        assert_eq!(
            raw.rules,
            vec![
                RawMcpRule::Allow(r#"mcp.tool.name == "echo""#.into()),
                RawMcpRule::Keyed(RawMcpKeyedRule::Allow(r#"mcp.tool.name == "add""#.into())),
                RawMcpRule::Keyed(RawMcpKeyedRule::Deny(r#"mcp.tool.name == "rm""#.into())),
                RawMcpRule::Keyed(RawMcpKeyedRule::Require("true".into())),
            ]
        );
    }

    /// The lead's `mcp:` shorthand flattens `RawMcpBackend` next to `port`/`policies`.
    #[test]
    fn flattens_under_simple_mcp_shorthand() {
        #[derive(Deserialize)]
        struct Simple {
            #[allow(dead_code)]
            port: Option<u16>,
            #[serde(flatten)]
            backend: RawMcpBackend,
        }
        let s: Simple =
            yaml_serde::from_str("port: 3000\ntargets: [{name: a, mcp: {host: 'http://x/mcp'}}]\n")
                .expect("parses");
        assert_eq!(s.backend.targets.len(), 1);
    }
}
