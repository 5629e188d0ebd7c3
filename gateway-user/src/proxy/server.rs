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
    /// `maxConnections` for the bind, shared by its accept loops, and its current size.
    permits: Arc<Semaphore>,
    max_connections: usize,
}

impl Running {
    /// Applies a reloaded `maxConnections`.
    fn resize(&mut self, max: usize) {
        let max = max.max(1);
        resize_permits(&self.permits, self.max_connections, max);
        self.max_connections = max;
    }
}

/// Moves a connection limit from `from` to `to` permits. Growing adds permits at once;
/// shrinking takes them back as connections close (open connections are never cut).
fn resize_permits(permits: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        permits.add_permits(to - from);
    } else if to < from {
        let excess = from - to;
        let taken = permits.forget_permits(excess);
        if taken < excess {
            let permits = permits.clone();
            let rest = u32::try_from(excess - taken).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(rest).await {
                    p.forget();
                }
            });
        }
    }
}

/// Per-bind settings a reload may change without rebinding the port (`maxConnections` is
/// applied to the bind's shared permits by `Running::resize`).
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
            if let Some(running) = self.binds.get_mut(addr) {
                // Rotated certificates and new limits apply to the next connections.
                running.resize(snap.global.limits.max_connections);
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
            let max_connections = snap.global.limits.max_connections.max(1);
            let permits = Arc::new(Semaphore::new(max_connections));
            let shared = AcceptShared {
                proxy: proxy.clone(),
                port: addr.port(),
                permits: permits.clone(),
                hook: hook.clone(),
            };
            let tasks = self.spawn_accept_loops(addr, socket, shared, settings_rx, stop_rx)?;
            tracing::info!(%local, "listening");
            self.binds.insert(
                addr,
                Running {
                    stop,
                    settings,
                    tasks,
                    permits,
                    max_connections,
                },
            );
            started.push(local);
        }
        Ok(started)
    }

    /// The accept loops of one new bind: on the current runtime, or one per proxy worker.
    fn spawn_accept_loops(
        &self,
        addr: SocketAddr,
        socket: TcpListener,
        shared: AcceptShared,
        settings_rx: watch::Receiver<ListenSettings>,
        stop_rx: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, ListenError> {
        let Some(w) = &self.workers else {
            return Ok(vec![tokio::spawn(accept_loop(
                shared,
                Listen::Tokio(socket),
                settings_rx,
                stop_rx,
            ))]);
        };
        // Every worker accepts on its own descriptor of the one socket: the worker that is
        // free first takes the next connection.
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
        Ok(tasks)
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

// === impl Listen ===

impl Listen {
    /// The listener as a tokio one on this worker's runtime; `None` (logged) when that fails.
    fn register(self, port: u16) -> Option<TcpListener> {
        match self {
            Listen::Tokio(l) => Some(l),
            Listen::Std(l) => match TcpListener::from_std(l) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(error = %e, port, "cannot register the listener with this worker");
                    None
                }
            },
        }
    }
}

/// Per-connection facts, with the kernel's (flow timing, original destination) from the hook.
fn conn_info(
    stream: &tokio::net::TcpStream,
    peer: SocketAddr,
    port: u16,
    tls: bool,
    hook: Option<&AcceptHook>,
) -> Arc<ConnInfo> {
    let local = stream.local_addr().unwrap_or(peer);
    let mut info = ConnInfo {
        bind_port: port,
        peer,
        local,
        tls,
        flow: None,
        original_dst: None,
    };
    if let Some(h) = hook {
        h(stream, &mut info);
    }
    Arc::new(info)
}

async fn accept_loop(
    shared: AcceptShared,
    listen: Listen,
    mut settings: watch::Receiver<ListenSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(listener) = listen.register(shared.port) else {
        return;
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
        let info = conn_info(&stream, peer, port, acceptor.is_some(), hook.as_ref());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_limit_follows_reloads_without_cutting_open_connections() {
        let permits = Arc::new(Semaphore::new(4));
        let open: Vec<_> = (0..3)
            .map(|_| permits.clone().try_acquire_owned().expect("permit"))
            .collect();
        // Grow: room at once.
        resize_permits(&permits, 4, 6);
        assert_eq!(permits.available_permits(), 3);
        // Shrink below what is open: nothing is cut, and no new connection fits until
        // enough close.
        resize_permits(&permits, 6, 2);
        assert_eq!(permits.available_permits(), 0);
        drop(open);
        tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while permits.available_permits() != 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("limit settles at 2 once connections close");
    }
}
