//! Wires config, proxy, telemetry, metrics, eBPF and admin servers together, and owns the
//! process lifecycle: start-up (readiness turns green last), reload (file watch and SIGHUP),
//! and drain on SIGTERM.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

use crate::admin::{self, AdminState, Readiness};
use crate::config::restart::Pending;
use crate::config::snapshot::{BackendKind, Route};
use crate::config::{self, ConfigErrors, Snapshot, Source};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::server::{AcceptHook, Listeners};
use crate::proxy::workers::Workers;
use crate::telemetry::{Telemetry, TelemetryConfig};

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum ConfigInput {
    File(PathBuf),
    Inline(String),
    Embedded,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("config: {0}")]
    Telemetry(String),
    #[error("{0}")]
    Listen(#[from] crate::proxy::server::ListenError),
    #[error("cannot start {what} on {addr}: {source}")]
    Serve {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("eBPF: {0}")]
    Ebpf(String),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

pub fn load(input: &ConfigInput) -> Result<Snapshot, ConfigErrors> {
    match input {
        ConfigInput::File(p) => config::load_file(p),
        ConfigInput::Inline(s) => config::load_str(s, Source::Inline(s.clone())),
        ConfigInput::Embedded => config::load_str(config::EMBEDDED_DEFAULT, Source::Embedded),
    }
}

fn telemetry_config(snap: &Snapshot) -> TelemetryConfig<'_> {
    let g = snap.raw.config.as_ref();
    TelemetryConfig {
        tracing: g.and_then(|c| c.tracing.as_ref()),
        otlp_logs: snap
            .raw
            .frontend_policies
            .as_ref()
            .and_then(|f| f.access_log.as_ref().or(f.logging.as_ref()))
            .and_then(|l| l.otlp.as_ref()),
        logging: snap.logging.as_ref(),
        frontend_tracing: snap
            .raw
            .frontend_policies
            .as_ref()
            .and_then(|f| f.tracing.as_ref()),
        gateway_name: &snap.global.gateway_name,
    }
}

/// `--validate-only`: compile everything that can fail, without listening.
pub fn validate(input: &ConfigInput) -> Result<(), AppError> {
    let snap = load(input)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    rt.block_on(async {
        Telemetry::new(telemetry_config(&snap), Metrics::new())
            .map(|_| ())
            .map_err(|e| AppError::Telemetry(e.to_string()))
    })
}

type FilterHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

fn init_logging(snap: &Snapshot) -> FilterHandle {
    let logging = snap.raw.config.as_ref().and_then(|c| c.logging.as_ref());
    let level = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| logging.and_then(|l| l.level.clone()))
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let json = logging.and_then(|l| l.format.as_deref()) == Some("json");
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_target(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    handle
}

struct State {
    proxy: Arc<Proxy>,
    filter: FilterHandle,
    level: Mutex<String>,
    ebpf: crate::ebpf::EbpfStatus,
    /// Settings the last reload changed that wait for a restart (`/config_dump`).
    pending: Mutex<Vec<Pending>>,
}

impl AdminState for State {
    fn overview(&self) -> Value {
        let snap = self.proxy.snapshot();
        let (enabled, reason) = match &self.ebpf {
            crate::ebpf::EbpfStatus::Enabled => (true, None),
            crate::ebpf::EbpfStatus::Disabled { reason } => (false, Some(reason.clone())),
        };
        let mut routes = Vec::new();
        let mut mcp = Vec::new();
        for b in &snap.binds {
            for l in &b.listeners {
                for r in &l.routes {
                    for be in &r.backends {
                        if let BackendKind::Mcp(m) = &be.kind {
                            mcp.push(serde_json::json!({
                                "route": r.name,
                                "sessions": m.session_count(),
                                "targets": m.target_names(),
                            }));
                        }
                    }
                    routes.push(route_summary(b.port, &l.name, r));
                }
            }
        }
        serde_json::json!({
            "gateway": snap.global.gateway_name,
            "ebpf": {"enabled": enabled, "reason": reason},
            "routes": routes,
            "mcp": mcp,
        })
    }

    fn config_dump(&self) -> Value {
        let snap = self.proxy.snapshot();
        let mut v: Value = yaml_serde::from_str::<yaml_serde::Value>(&snap.text)
            .ok()
            .and_then(|y| serde_json::to_value(y).ok())
            .unwrap_or(Value::Null);
        admin::redact(&mut v);
        let source = match &snap.source {
            Source::File(p) => p.display().to_string(),
            Source::Inline(_) => "inline (-c)".into(),
            Source::Embedded => "embedded default".into(),
        };
        let pending = self.pending.lock().map(|p| p.clone()).unwrap_or_default();
        // `config` is the file as loaded; `restartRequired` names what in it is not running
        // yet, with the value that is.
        serde_json::json!({"source": source, "config": v, "restartRequired": pending})
    }

    fn log_level(&self) -> String {
        self.level.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn set_log_level(&self, filter: &str) -> Result<(), String> {
        check_log_filter(filter)?;
        let f = EnvFilter::try_new(filter)
            .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
        self.filter.reload(f).map_err(|e| e.to_string())?;
        if let Ok(mut l) = self.level.lock() {
            *l = filter.to_owned();
        }
        Ok(())
    }
}

/// A route as the viewer's overview lists it: where it listens, what it matches, where it
/// sends (names and addresses only, never credentials).
fn route_summary(port: u16, listener: &str, r: &Route) -> Value {
    use crate::config::snapshot::PathMatch;
    let matches: Vec<String> = r
        .matches
        .iter()
        .map(|m| {
            let path = match &m.path {
                PathMatch::Exact(p) => format!("= {p}"),
                PathMatch::Prefix(p) => format!("{p}*"),
                PathMatch::Regex(re) => format!("~ {}", re.as_str()),
            };
            match &m.method {
                Some(method) => format!("{method} {path}"),
                None => path,
            }
        })
        .collect();
    let backends: Vec<Value> = r
        .backends
        .iter()
        .map(|b| match &b.kind {
            BackendKind::Host(u) => serde_json::json!({"kind": "host", "target": u.authority}),
            BackendKind::Ai(a) => serde_json::json!({
                "kind": "ai", "name": a.name, "provider": a.provider.name(),
                "model": a.model_override, "target": a.upstream.authority,
            }),
            BackendKind::Models(ms) => serde_json::json!({
                "kind": "llm",
                "models": ms.entries.iter().map(|m| serde_json::json!({
                    "model": m.pattern, "provider": m.backend.provider.name(),
                    "target": m.backend.upstream.authority,
                    "visibility": if m.internal { "internal" } else { "public" },
                })).collect::<Vec<_>>(),
                "virtualModels": ms.virtual_models.iter().map(|v| serde_json::json!({
                    "name": v.name, "routing": v.kind(),
                })).collect::<Vec<_>>(),
            }),
            BackendKind::Mcp(m) => serde_json::json!({"kind": "mcp", "targets": m.target_names()}),
        })
        .collect();
    serde_json::json!({
        "bind": port, "listener": listener, "route": r.name,
        "matches": matches, "backends": backends,
    })
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Accepts `level` and `target=level` clauses only. `EnvFilter` would read a bare word such as
/// `verbose` as a target name, enabling that target and silencing everything else.
fn check_log_filter(filter: &str) -> Result<(), String> {
    for clause in filter.split(',') {
        let level =
            clause.rsplit_once('=').map_or(
                clause,
                |(target, level)| {
                    if target.is_empty() { "" } else { level }
                },
            );
        if !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
            return Err(format!(
                "invalid log filter {filter:?}: clause {clause:?} is not LEVEL or TARGET=LEVEL (levels: {})",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Runs the gateway until SIGTERM/SIGINT, then drains.
pub fn run(input: ConfigInput) -> Result<(), AppError> {
    let snap = Arc::new(load(&input)?);
    let filter = init_logging(&snap);
    // Traffic runs on the proxy workers (one per core, `workerThreads` to change); the main
    // runtime only runs the admin servers, reloads and signals.
    let n = snap.global.worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let workers = Arc::new(Workers::start(n).map_err(AppError::Runtime)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gateway-main")
        .enable_all()
        .build()
        .map_err(AppError::Runtime)?;
    let result = rt.block_on(serve(input, snap, filter, workers.clone()));
    // Stop the workers only now: their tasks (connections, MCP sessions and the stdio servers
    // they own) end when the workers' runtimes are dropped.
    drop(rt);
    drop(workers);
    result
}

/// Start-up in readiness order (config, telemetry, eBPF, admin servers, listeners), then
/// reloads until SIGTERM/SIGINT, then the drain.
async fn serve(
    input: ConfigInput,
    snap: Arc<Snapshot>,
    filter: FilterHandle,
    workers: Arc<Workers>,
) -> Result<(), AppError> {
    let ready = Readiness::new();
    for task in ["config", "telemetry", "ebpf", "listeners", "admin"] {
        ready.register(task);
    }
    ready.done("config");
    let metrics = Arc::new(
        Metrics::with_config(snap.global.metrics.clone().unwrap_or_default())
            .map_err(|e| AppError::Telemetry(e.to_string()))?,
    );
    let reloads = reload_counter(&metrics)?;

    let telemetry = Telemetry::new(telemetry_config(&snap), metrics.clone())
        .map_err(|e| AppError::Telemetry(e.to_string()))?;
    ready.done("telemetry");

    // eBPF (config.ebpf): kernel steering and flow timing. Held until the process exits;
    // dropping it detaches every program.
    let ports: Vec<u16> = snap.binds.iter().map(|b| b.port).collect();
    let (ebpf, ebpf_status) = crate::ebpf::start(
        snap.raw.config.as_ref().and_then(|c| c.ebpf.as_ref()),
        &ports,
        metrics.registry(),
    )
    .map_err(|e| AppError::Ebpf(e.to_string()))?;
    tracing::info!(status = ?ebpf_status, "eBPF");
    ready.done("ebpf");
    let hook = ebpf.clone().map(ebpf_accept_hook);
    let proxy = Proxy::new(
        snap.clone(),
        telemetry.clone(),
        metrics.clone(),
        ebpf.clone(),
    );
    crate::spend::Prices::watch(&proxy.prices);
    let state = admin_state(&snap, &proxy, filter, ebpf_status);
    serve_admin_ports(&snap, &metrics, &ready, state.clone(), &telemetry).await?;
    ready.done("admin");

    let mut listeners = Listeners::with_workers(workers);
    listeners.reconcile(&proxy, &snap, hook.clone()).await?;
    ready.done("listeners");
    tracing::info!(gateway = %snap.global.gateway_name, "gateway ready");

    let listeners = Arc::new(tokio::sync::Mutex::new(listeners));
    let reloader = Arc::new(Reloader {
        input,
        proxy: proxy.clone(),
        telemetry: telemetry.clone(),
        state: state.clone(),
        startup: snap.clone(),
        listeners: listeners.clone(),
        reloads,
        hook,
    });
    if let ConfigInput::File(path) = &reloader.input {
        let r = reloader.clone();
        tokio::spawn(watch_file(path.clone(), move || {
            let r = r.clone();
            async move { r.reload().await }
        }));
    }
    until_terminated(&reloader).await?;

    let snap = proxy.snapshot();
    tracing::info!(deadline = ?snap.global.drain_deadline, "draining");
    ready.set_draining();
    tokio::time::sleep(snap.global.min_drain).await;
    listeners
        .lock()
        .await
        .drain(snap.global.drain_deadline)
        .await;
    telemetry.shutdown().await;
    drop(proxy);
    drop(ebpf);
    tracing::info!("drained; exiting");
    Ok(())
}

/// `agentgateway_config_reloads_total{result}`, registered with the gateway's metrics.
fn reload_counter(metrics: &Metrics) -> Result<Reloads, AppError> {
    let reloads = IntCounterVec::new(
        Opts::new(
            "agentgateway_config_reloads_total",
            "Config reload attempts by result: success, restart_required (applied, but some changed settings wait for a restart), failure (nothing applied)",
        ),
        &["result"],
    )
    .map_err(|e| AppError::Telemetry(e.to_string()))?;
    let pending = IntGauge::new(
        "agentgateway_config_restart_pending",
        "Changed settings the running gateway keeps at their start-up values until it restarts (see /config_dump restartRequired)",
    )
    .map_err(|e| AppError::Telemetry(e.to_string()))?;
    let _ = metrics.registry().register(Box::new(reloads.clone()));
    let _ = metrics.registry().register(Box::new(pending.clone()));
    Ok(Reloads { reloads, pending })
}

/// Reload outcomes: `agentgateway_config_reloads_total{result="success|restart_required|failure"}`
/// and the number of settings waiting for a restart.
#[derive(Clone)]
struct Reloads {
    reloads: IntCounterVec,
    pending: IntGauge,
}

/// What the admin server reads and changes: the running config and the log filter.
fn admin_state(
    snap: &Snapshot,
    proxy: &Arc<Proxy>,
    filter: FilterHandle,
    ebpf: crate::ebpf::EbpfStatus,
) -> Arc<State> {
    let level = snap
        .raw
        .config
        .as_ref()
        .and_then(|c| c.logging.as_ref())
        .and_then(|l| l.level.clone())
        .unwrap_or_else(|| "info".into());
    Arc::new(State {
        proxy: proxy.clone(),
        filter,
        level: Mutex::new(level),
        ebpf,
        pending: Mutex::new(Vec::new()),
    })
}

/// The stats, readiness and admin servers, each when its address is configured. The admin
/// server carries the viewer, whose ring `telemetry` then fills.
async fn serve_admin_ports(
    snap: &Snapshot,
    metrics: &Arc<Metrics>,
    ready: &Arc<Readiness>,
    state: Arc<State>,
    telemetry: &Arc<Telemetry>,
) -> Result<(), AppError> {
    let g = &snap.global;
    if let Some(addr) = g.stats_addr {
        admin::serve_stats(addr, metrics.clone())
            .await
            .map_err(|source| AppError::Serve {
                what: "stats server (statsAddr)",
                addr,
                source,
            })?;
    }
    if let Some(addr) = g.readiness_addr {
        admin::serve_readiness(addr, ready.clone())
            .await
            .map_err(|source| AppError::Serve {
                what: "readiness server (readinessAddr)",
                addr,
                source,
            })?;
    }
    if let Some(addr) = g.admin_addr {
        // The viewer's ring exists only where someone can look at it, and not at size 0.
        let recent =
            (g.ui_recent_requests > 0).then(|| admin::ui::ring::Recent::new(g.ui_recent_requests));
        if let Some(r) = &recent {
            telemetry.record_to(r.clone());
        }
        let ui = Arc::new(admin::ui::Ui {
            recent,
            telemetry: telemetry.clone(),
            state: state.clone(),
        });
        admin::serve_admin(addr, state, ready.clone(), ui)
            .await
            .map_err(|source| AppError::Serve {
                what: "admin server (adminAddr)",
                addr,
                source,
            })?;
    }
    Ok(())
}

/// Applies a changed config (file watch, SIGHUP): every CEL expression compiled first, then
/// listeners, then the snapshot and telemetry swap. A config that fails to load, compile or
/// bind changes nothing and keeps the last good one; settings that need a restart are named.
struct Reloader {
    input: ConfigInput,
    proxy: Arc<Proxy>,
    telemetry: Arc<Telemetry>,
    state: Arc<State>,
    /// The config the process started with: what start-up-only settings still run.
    startup: Arc<Snapshot>,
    listeners: Arc<tokio::sync::Mutex<Listeners>>,
    reloads: Reloads,
    hook: Option<AcceptHook>,
}

// === impl Reloader ===

impl Reloader {
    fn failed(&self, error: &dyn std::fmt::Display) {
        self.reloads.reloads.with_label_values(&["failure"]).inc();
        tracing::error!(error = %error, "config reload rejected; keeping the last good config");
    }

    async fn reload(&self) {
        let new = match load(&self.input) {
            Ok(new) if matches!(self.input, ConfigInput::File(_)) && is_blank(&new.text) => {
                // Almost always a writer caught between truncate and write; applying it would
                // close every listener.
                return self.failed(
                    &"the file is empty (write it atomically: a new file renamed over the old)",
                );
            }
            Ok(new) => Arc::new(new),
            Err(e) => return self.failed(&e),
        };
        let telemetry = match self.telemetry.prepare(telemetry_config(&new)) {
            Ok(t) => t,
            Err(e) => return self.failed(&e),
        };
        let res = self
            .listeners
            .lock()
            .await
            .reconcile(&self.proxy, &new, self.hook.clone())
            .await;
        if let Err(e) = res {
            return self.failed(&e);
        }
        let old = self.proxy.snapshot();
        let mut pending = crate::config::restart::pending(&self.startup, &new);
        pending.extend(telemetry.restart.iter().cloned());
        self.proxy.swap(new.clone());
        self.telemetry.apply(telemetry);
        self.apply_log_level(&old, &new);
        self.reloads.pending.set(pending.len() as i64);
        if pending.is_empty() {
            self.reloads.reloads.with_label_values(&["success"]).inc();
            tracing::info!("config reloaded");
        } else {
            self.reloads
                .reloads
                .with_label_values(&["restart_required"])
                .inc();
            let list: Vec<String> = pending.iter().map(ToString::to_string).collect();
            tracing::warn!(
                restart_required = %list.join("; "),
                "config reloaded, except settings that keep their running values until the gateway restarts"
            );
        }
        if let Ok(mut p) = self.state.pending.lock() {
            *p = pending;
        }
    }

    /// A changed `config.logging.level` applies now (unless `RUST_LOG` overrides the config).
    fn apply_log_level(&self, old: &Snapshot, new: &Snapshot) {
        let level = |s: &Snapshot| {
            s.raw
                .config
                .as_ref()
                .and_then(|c| c.logging.as_ref())
                .and_then(|l| l.level.clone())
                .unwrap_or_else(|| "info".into())
        };
        let (was, now) = (level(old), level(new));
        if was == now || std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        match self.state.set_log_level(&now) {
            Ok(()) => tracing::info!(level = %now, "log level changed by config reload"),
            Err(e) => tracing::warn!(error = %e, "config.logging.level not applied"),
        }
    }
}

/// Waits for SIGTERM or SIGINT, reloading on each SIGHUP meanwhile.
async fn until_terminated(reloader: &Reloader) -> Result<(), AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(AppError::Runtime)?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                reloader.reload().await;
            }
        }
    }
    Ok(())
}

/// At accept: the connection's kernel flow record (handshake timing, and the original
/// destination when the kernel steered it here), one BPF map lookup.
fn ebpf_accept_hook(ebpf: Arc<crate::ebpf::Ebpf>) -> AcceptHook {
    Arc::new(move |stream, info| {
        if let Some(a) = ebpf.accepted(std::os::fd::AsFd::as_fd(stream)) {
            info.flow = Some(a.flow);
            info.original_dst = a.original_dst;
            if let Some(dst) = a.original_dst {
                tracing::debug!(peer = %info.peer, original_dst = %dst, "steered connection accepted");
            }
        }
    })
}

/// How long changed config content must stay unchanged before it is reloaded.
const SETTLE: Duration = Duration::from_millis(100);

/// True for a config text with nothing but whitespace and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// Polls the config file every 500 ms. Comparing the resolved file's identity and content
/// catches in-place edits and Kubernetes' ConfigMap symlink swap alike.
async fn watch_file<F, Fut>(path: PathBuf, reload: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use std::os::unix::fs::MetadataExt;
    let id = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    };
    let mut last_id = id(&path);
    let mut last_text = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = id(&path);
        if now == last_id {
            continue;
        }
        last_id = now;
        let text = std::fs::read(&path).ok();
        if text.is_none() || text == last_text {
            continue;
        }
        // A writer may still be filling the file: reload only content that held still for a
        // moment. If it moved, its identity changed too and a later tick sees the final text.
        tokio::time::sleep(SETTLE).await;
        if std::fs::read(&path).ok() != text {
            continue;
        }
        last_text = text;
        tracing::info!(path = %path.display(), "config file changed; reloading");
        reload().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{check_log_filter, is_blank};

    #[test]
    fn log_filter_clauses() {
        for ok in [
            "info",
            "DEBUG",
            "info,gateway=debug",
            "warn,hyper_util::client=trace",
        ] {
            assert!(check_log_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "verbose",
            "info,",
            "",
            "debug,hyper=loud",
            "=debug",
            "gateway",
        ] {
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blank_config_text() {
        assert!(is_blank(""));
        assert!(is_blank("\n  \n# only a comment\n"));
        assert!(!is_blank("binds: []\n"));
        assert!(!is_blank("# header\nconfig: {}\n"));
    }
}
