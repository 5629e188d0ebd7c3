//! Proxy workers: one thread per core, each running its own single-threaded tokio runtime.
//!
//! Every listening socket is shared by all workers (one accept loop per worker on the same
//! socket); a connection stays on the worker that accepted it, and that worker's own upstream
//! connection pool serves its requests. A request therefore never hops between threads: the
//! client connection, the upstream connection and the response stream are all polled by one
//! thread, woken only by its own epoll. With a work-stealing runtime, each hop between the
//! client-side and upstream-side tasks could wake a second worker; on a small VM those
//! cross-thread wake-ups cost more CPU than the forwarding itself (see BENCHMARKS.md).
//!
//! Everything else (admin servers, config reload, signals) stays on the main runtime.

use std::cell::Cell;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The proxy worker running on this thread, if any.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// The running workers. Dropping this stops them: their runtimes are dropped on their own
/// threads, which ends every task (connections, MCP sessions) spawned there.
pub struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.handles.len())
            .finish()
    }
}

impl Workers {
    /// Starts `n` workers (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let n = n.max(1);
        let mut w = Workers {
            handles: Vec::with_capacity(n),
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        for id in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            w.handles.push(rt.handle().clone());
            w.stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("proxy-worker-{id}"))
                .spawn(move || {
                    WORKER.with(|c| c.set(Some(id)));
                    // Runs the tasks spawned on this worker until told to stop.
                    let _ = rt.block_on(stopped);
                })?;
            w.threads.push(thread);
        }
        Ok(w)
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_their_worker_and_stop_with_it() {
        let w = Workers::start(2).expect("start");
        let ids: Vec<Option<usize>> = w
            .handles()
            .iter()
            .map(|h| {
                let (tx, rx) = std::sync::mpsc::channel();
                h.spawn(async move {
                    let _ = tx.send(current());
                });
                rx.recv().expect("ran")
            })
            .collect();
        assert_eq!(ids, vec![Some(0), Some(1)]);
        assert_eq!(current(), None);
        // A task that never ends is dropped (not leaked) when the workers stop.
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        w.handles()[0].spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        drop(w);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
