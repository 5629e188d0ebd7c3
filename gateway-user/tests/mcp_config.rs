//! agentgateway MCP configs load verbatim through the full config pipeline
//! (`gateway::config::load_str`), and MCP config errors name the YAML path.

use gateway::config::{Source, load_str};

fn load(yaml: &str) -> Result<(), String> {
    load_str(yaml, Source::Embedded)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// agentgateway examples/mcp-basic/config.yaml, verbatim.
const MCP_BASIC: &str = r#"# yaml-language-server: $schema=https://agentgateway.dev/schema/config
mcp:
  port: 3000
  policies:
    cors:
      allowOrigins:
      - "*"
      allowHeaders:
      - mcp-protocol-version
      - content-type
      - cache-control
      - mcp-session-id
      exposeHeaders:
      - "Mcp-Session-Id"
  targets:
  - name: everything
    stdio:
      cmd: npx
      args: ["@modelcontextprotocol/server-everything"]
"#;

/// agentgateway examples/mcp-multiplex/config.yaml, verbatim.
const MCP_MULTIPLEX: &str = r#"# yaml-language-server: $schema=https://agentgateway.dev/schema/config
binds:
- port: 3000
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: time
            stdio:
              cmd: uvx
              args: ["--with", "mcp<2", "mcp-server-time"]
          - name: everything
            stdio:
              cmd: npx
              args: ["@modelcontextprotocol/server-everything"]
"#;

/// Route-level mcpAuthorization (agentgateway's string and keyed rule forms) and every
/// target address form from the schema.
const MCP_AUTHZ_AND_TARGETS: &str = r#"
binds:
- port: 3000
  listeners:
  - routes:
    - policies:
        mcpAuthorization:
          rules:
          - 'mcp.tool.name == "echo"'
          - deny: 'mcp.tool.name == "rm"'
          - require: 'request.method == "POST"'
      backends:
      - mcp:
          prefixMode: always
          failureMode: failOpen
          statefulMode: stateful
          maxMessageBytes: 1048576
          requestTimeout: 1.5s
          targets:
          - name: remote
            mcp:
              host: https://example.com:443/mcp
          - name: legacy
            sse:
              host: 127.0.0.1
              port: 8080
              path: /sse
          - name: hostport
            mcp:
              host: localhost:3001
"#;

#[test]
fn agentgateway_examples_load() {
    for (name, yaml) in [
        ("mcp-basic", MCP_BASIC),
        ("mcp-multiplex", MCP_MULTIPLEX),
        ("authz+targets", MCP_AUTHZ_AND_TARGETS),
    ] {
        if let Err(e) = load(yaml) {
            panic!("{name} must load: {e}");
        }
    }
}

#[test]
fn mcp_errors_name_the_yaml_path() {
    let cases = [
        (
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - mcp:\n          targets:\n          - {name: a, stdio: {cmd: x}}\n          - {name: a, stdio: {cmd: y}}\n",
            "binds[0].listeners[0].routes[0].backends[0].mcp.targets[1].name",
        ),
        (
            "mcp:\n  port: 3000\n  targets:\n  - {name: a, sse: {host: 'ftp://nope'}}\n",
            "targets[0].sse.host",
        ),
        (
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - policies:\n        mcpAuthorization:\n          rules: ['mcp.tool.name ==']\n      backends:\n      - mcp:\n          targets: [{name: a, stdio: {cmd: x}}]\n",
            "mcpAuthorization.rules[0]",
        ),
        (
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - mcp:\n          targets: [{name: a, stdio: {cmd: x}}]\n          requestTimeout: forever\n",
            "requestTimeout",
        ),
    ];
    for (yaml, want) in cases {
        let e = load(yaml).expect_err("invalid MCP config must be rejected");
        assert!(e.contains(want), "error should mention {want:?}:\n{e}");
    }
}
