//! Settings a reload cannot apply: the process keeps running them with their start-up values
//! until it restarts. A reload that changes one of them still applies everything else, and
//! says which ones wait (log line, `agentgateway_config_reloads_total{result="restart_required"}`,
//! `agentgateway_config_restart_pending`, and `/config_dump`'s `restartRequired`).
//!
//! | setting | why it waits for a restart |
//! |---|---|
//! | `config.adminAddr`, `statsAddr`, `readinessAddr` | servers bound once at start-up, before readiness |
//! | `config.workerThreads` | the proxy's thread-per-core runtimes are created at start-up |
//! | `config.ebpf` | the kernel programs are loaded and attached once |
//! | `config.logging.format` | the process log's formatter is installed once (the access log follows it) |
//! | `config.ui.recentRequests` | the viewer's ring is allocated once |
//! | `frontendPolicies.accessLog.otlp` | its exporter is built once, like the tracing one |
//! | `config.metrics` (`remove`, `fields.add`) | metric families and their label names are registered once |
//! | the tracing exporter (`otlpEndpoint`, protocol, headers, path, resources) | the OTLP exporter and its connection are built once; `telemetry::Telemetry::prepare` reports it |
//!
//! Everything else is applied by the reload: routes, backends, policies, listeners and TLS,
//! limits, and every CEL expression (access-log fields and filter, tracing fields, filter and
//! sampling, MCP authorization).

use serde::Serialize;

use super::Snapshot;

/// One setting whose new value waits for a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// YAML path, e.g. `config.adminAddr`.
    pub path: String,
    /// The value the process runs with.
    pub running: String,
    /// The value the file now asks for.
    pub configured: String,
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (running {}, configured {})",
            self.path, self.running, self.configured
        )
    }
}

fn addr(a: Option<std::net::SocketAddr>) -> String {
    a.map_or_else(|| "off".into(), |a| a.to_string())
}

/// The start-up-only settings of `snap`, as `(path, rendered value)`. Rendered values never
/// carry secrets: none of these settings holds one.
fn startup_settings(snap: &Snapshot) -> Vec<(&'static str, String)> {
    let g = &snap.global;
    let raw = snap.raw.config.as_ref();
    let logging_format = raw
        .and_then(|c| c.logging.as_ref())
        .and_then(|l| l.format.clone())
        .unwrap_or_else(|| "text".into());
    let ebpf = raw
        .and_then(|c| c.ebpf.as_ref())
        .map_or_else(|| "default".into(), |e| format!("{e:?}"));
    vec![
        ("config.adminAddr", addr(g.admin_addr)),
        ("config.statsAddr", addr(g.stats_addr)),
        ("config.readinessAddr", addr(g.readiness_addr)),
        (
            "config.workerThreads",
            g.worker_threads
                .map_or_else(|| "one per CPU".into(), |n| n.to_string()),
        ),
        ("config.ebpf", ebpf),
        ("config.logging.format", logging_format),
        ("config.ui.recentRequests", g.ui_recent_requests.to_string()),
        (
            "frontendPolicies.accessLog.otlp",
            snap.raw
                .frontend_policies
                .as_ref()
                .and_then(|f| f.access_log.as_ref().or(f.logging.as_ref()))
                .and_then(|l| l.otlp.as_ref())
                .map_or_else(|| "off".into(), |o| format!("{o:?}")),
        ),
        (
            "config.metrics",
            raw.and_then(|c| c.metrics.as_ref())
                .and_then(|m| serde_json::to_string(m).ok())
                .unwrap_or_else(|| "default".into()),
        ),
    ]
}

/// What in `new` differs from the process's start-up config `running` and cannot be applied
/// without a restart.
pub fn pending(running: &Snapshot, new: &Snapshot) -> Vec<Pending> {
    startup_settings(running)
        .into_iter()
        .zip(startup_settings(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((path, running), (_, configured))| Pending {
            path: path.to_owned(),
            running,
            configured,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Source, load_str};

    fn snap(text: &str) -> Snapshot {
        load_str(text, Source::Inline(text.into())).expect("valid config")
    }

    #[test]
    fn restart_only_changes_are_named_with_both_values() {
        let a = snap("config:\n  adminAddr: 127.0.0.1:15000\n  logging: {format: text}\n");
        let b = snap(
            "config:\n  adminAddr: 127.0.0.1:15099\n  logging: {format: json, level: debug}\n  ui: {recentRequests: 5}\n",
        );
        let p = pending(&a, &b);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "config.adminAddr",
                "config.logging.format",
                "config.ui.recentRequests"
            ]
        );
        assert_eq!(p[0].running, "127.0.0.1:15000");
        assert_eq!(p[0].configured, "127.0.0.1:15099");
        assert_eq!(
            p[0].to_string(),
            "config.adminAddr (running 127.0.0.1:15000, configured 127.0.0.1:15099)"
        );
        // Reloadable settings (the level here) and an unchanged file are not pending.
        assert!(pending(&a, &snap("config:\n  adminAddr: 127.0.0.1:15000\n  logging: {format: text, level: warn}\n")).is_empty());
        assert!(pending(&b, &b).is_empty());
    }
}
