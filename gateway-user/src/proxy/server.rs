//! Listeners: HTTP/1.1 and HTTP/2 (h2c and ALPN), optional TLS, a connection limit,
//! header-read timeout, and graceful drain. Each bind is one listening socket with one accept
//! loop per proxy worker (`workers.rs`), or a single loop on the caller's runtime when the
//! listeners run without workers (tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::workers::Workers;
use super::{ConnInfo, Proxy};
use crate::config::Snapshot;

/// Running accept loops, reconciled with the config on every reload.
#[derive(Default)]
pub struct Listeners {
    binds: HashMap<SocketAddr, Running>,
    workers: Option<Arc<Workers>>,
}

struct Running {
    stop: watch::Sender<bool>,
    /// TLS and limits, replaced on every reload; new connections use the latest.
    settings: watch::Sender<ListenSettings>,
    /// One accept loop per worker.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Per-bind settings a reload may change without rebinding the port. `max_connections` is
/// fixed when the bind starts.
#[derive(Clone)]
struct ListenSettings {
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: crate::config::snapshot::Limits,
}

/// Looks up the client's kernel flow timing and original destination at accept time.
pub type AcceptHook = Arc<dyn Fn(&tokio::net::TcpStream, &mut ConnInfo) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Listeners {
    /// Listeners whose connections are served by `workers`, one accept loop per worker.
    pub fn with_workers(workers: Arc<Workers>) -> Listeners {
        Listeners {
            binds: HashMap::new(),
            workers: Some(workers),
        }
    }

    /// Starts loops for new binds and stops those no longer configured. Existing loops keep
    /// running: routes come from the snapshot per request, so they see the new config.
    ///
    /// All new sockets are bound before anything is stopped, so a config that cannot be
    /// applied (a port in use) fails as a whole and the running listeners keep serving.
    pub async fn reconcile(
        &mut self,
        proxy: &Arc<Proxy>,
        snap: &Snapshot,
        hook: Option<AcceptHook>,
    ) -> Result<Vec<SocketAddr>, ListenError> {
        let mut wanted = HashMap::new();
        for b in &snap.binds {
            let tls = b.listeners.iter().find_map(|l| l.tls.clone());
            wanted.insert(SocketAddr::new(b.address, b.port), tls);
        }
        let mut bound = Vec::new();
        for (addr, tls) in wanted.iter() {
            if let Some(running) = self.binds.get(addr) {
                // Rotated certificates and new limits apply to the next connections.
                running.settings.send_replace(ListenSettings {
                    tls: tls.clone(),
                    limits: snap.global.limits.clone(),
                });
                continue;
            }
            let socket = bind_socket(*addr).map_err(|source| ListenError::Bind {
                addr: *addr,
                source,
            })?;
            bound.push((*addr, tls.clone(), socket));
        }
        let stale: Vec<SocketAddr> = self
            .binds
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in stale {
            if let Some(r) = self.binds.remove(&addr) {
                let _ = r.stop.send(true);
                tracing::info!(%addr, "listener removed by config reload");
            }
        }
        let mut started = Vec::new();
        for (addr, tls, socket) in bound {
            let local = socket.local_addr().unwrap_or(addr);
            let (stop, stop_rx) = watch::channel(false);
            let (settings, settings_rx) = watch::channel(ListenSettings {
                tls,
                limits: snap.global.limits.clone(),
            });
            // `maxConnections` holds for the bind as a whole, across its workers.
            let permits = Arc::new(Semaphore::new(snap.global.limits.max_connections.max(1)));
            let shared = AcceptShared {
                proxy: proxy.clone(),
                port: addr.port(),
                permits,
                hook: hook.clone(),
            };
            let tasks = match &self.workers {
                None => vec![tokio::spawn(accept_loop(
                    shared,
                    Listen::Tokio(socket),
                    settings_rx,
                    stop_rx,
                ))],
                Some(w) => {
                    // Every worker accepts on its own descriptor of the one socket: the worker
                    // that is free first takes the next connection.
                    let std = socket
                        .into_std()
                        .map_err(|source| ListenError::Bind { addr, source })?;
                    let mut tasks = Vec::with_capacity(w.handles().len());
                    for h in w.handles() {
                        let fd = std
                            .try_clone()
                            .map_err(|source| ListenError::Bind { addr, source })?;
                        tasks.push(h.spawn(accept_loop(
                            shared.clone(),
                            Listen::Std(fd),
                            settings_rx.clone(),
                            stop_rx.clone(),
                        )));
                    }
                    tasks
                }
            };
            tracing::info!(%local, "listening");
            self.binds.insert(
                addr,
                Running {
                    stop,
                    settings,
                    tasks,
                },
            );
            started.push(local);
        }
        Ok(started)
    }

    /// Stops accepting everywhere, then waits (up to `deadline`) for open connections to finish
    /// their in-flight requests and streams.
    pub async fn drain(&mut self, deadline: Duration) {
        for r in self.binds.values() {
            let _ = r.stop.send(true);
        }
        let tasks: Vec<_> = self.binds.drain().flat_map(|(_, r)| r.tasks).collect();
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(deadline + Duration::from_millis(200), all)
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "drain deadline reached; closing remaining connections"
            );
        }
    }
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn conn_builder(limits: &crate::config::snapshot::Limits) -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    Arc::new(builder)
}

/// What every accept loop of one bind shares.
#[derive(Clone)]
struct AcceptShared {
    proxy: Arc<Proxy>,
    port: u16,
    permits: Arc<Semaphore>,
    hook: Option<AcceptHook>,
}

/// A listening socket, registered with the runtime of the loop that accepts on it.
enum Listen {
    Tokio(TcpListener),
    /// Registered when its loop starts, on that loop's worker.
    Std(std::net::TcpListener),
}

async fn accept_loop(
    shared: AcceptShared,
    listen: Listen,
    mut settings: watch::Receiver<ListenSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match listen {
        Listen::Tokio(l) => l,
        Listen::Std(l) => match TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, port = shared.port, "cannot register the listener with this worker");
                return;
            }
        },
    };
    let AcceptShared {
        proxy,
        port,
        permits,
        hook,
    } = shared;
    let graceful = GracefulShutdown::new();
    let initial = settings.borrow_and_update().clone();
    let mut limits = initial.limits;
    let mut acceptor = initial.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = conn_builder(&limits);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        if settings.has_changed().unwrap_or(false) {
            let new = settings.borrow_and_update().clone();
            builder = conn_builder(&new.limits);
            acceptor = new.tls.map(tokio_rustls::TlsAcceptor::from);
            limits = new.limits;
        }
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let mut info = ConnInfo {
            bind_port: port,
            peer,
            local,
            tls: acceptor.is_some(),
            flow: None,
            original_dst: None,
        };
        if let Some(h) = &hook {
            h(&stream, &mut info);
        }
        let info = Arc::new(info);
        let proxy = proxy.clone();
        let svc = service_fn(move |req| {
            let proxy = proxy.clone();
            let info = info.clone();
            // hyper keeps one slot for the service future for the connection's whole life;
            // boxing the request's (large) state machine keeps that slot a pointer, and frees
            // the state as soon as the response head is out, so a long stream costs its body
            // and log only.
            let fut = Box::pin(proxy.handle(req, info));
            async move { Ok::<_, std::convert::Infallible>(fut.await) }
        });
        let builder = builder.clone();
        match &acceptor {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with error");
                    }
                    drop(permit);
                });
            }
            Some(acc) => {
                let acc = acc.clone();
                let watcher = graceful.watcher();
                let timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(timeout, acc.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(tls), svc)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, %peer, "connection ended with error");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
