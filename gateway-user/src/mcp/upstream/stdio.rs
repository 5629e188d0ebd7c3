//! stdio targets: one child process per client session, newline-delimited JSON-RPC on
//! stdin/stdout; stderr is logged at debug level.
//!
//! Why per session: MCP servers keep per-connection state (subscriptions, log level, roots),
//! and a stdio server has exactly one connection, so sharing one child between clients would
//! leak that state across them. The child is killed when the session ends (DELETE, idle
//! timeout, backend shutdown) and, as a backstop, when the connection is dropped.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;

use serde_json::Value as Json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc};

use super::{CallCtx, ConnectArgs, Inbound, Pending, UpstreamError};
use crate::mcp::jsonrpc::RpcError;

/// How to start the child.
#[derive(Clone, Debug)]
pub struct StdioSpec {
    pub cmd: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub clear_env: bool,
}

/// A running child.
#[derive(Debug)]
pub struct StdioConn {
    name: String,
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Option<Child>>,
    pending: Arc<Pending>,
    pid: Option<u32>,
}

impl StdioConn {
    pub fn spawn(spec: &StdioSpec, a: &ConnectArgs<'_>) -> Result<Self, UpstreamError> {
        let mut cmd = Command::new(&spec.cmd);
        cmd.args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if spec.clear_env {
            cmd.env_clear();
        }
        cmd.envs(&spec.env);
        let mut child = cmd.spawn().map_err(|source| UpstreamError::Spawn {
            cmd: spec.cmd.clone(),
            source,
        })?;
        let pid = child.id();
        let pending = Arc::new(Pending::default());
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(read_stdout(
                BufReader::new(stdout),
                a.idx,
                a.name.to_string(),
                a.limits.max_message_bytes,
                pending.clone(),
                a.inbound.clone(),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            let name = a.name.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target_name = %name, "stderr: {line}");
                }
            });
        }
        tracing::debug!(target_name = %a.name, ?pid, cmd = %spec.cmd, "spawned stdio MCP target");
        Ok(StdioConn {
            name: a.name.to_string(),
            stdin: Mutex::new(child.stdin.take()),
            child: Mutex::new(Some(child)),
            pending,
            pid,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub async fn request(
        &self,
        method: &str,
        params: Option<Json>,
        ctx: &CallCtx,
    ) -> Result<Result<Json, RpcError>, UpstreamError> {
        self.pending
            .call(method, params, ctx, |req| self.send(req))
            .await
    }

    pub async fn send(&self, msg: Json) -> Result<(), UpstreamError> {
        let mut line =
            serde_json::to_vec(&msg).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let mut guard = self.stdin.lock().await;
        let stdin = guard
            .as_mut()
            .ok_or_else(|| UpstreamError::Closed(self.pending.closed_reason()))?;
        let res = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        }
        .await;
        if let Err(e) = res {
            // A broken pipe means the child is gone; fail waiters now rather than at timeout.
            self.pending
                .close(format!("target '{}' stdin closed: {e}", self.name));
            return Err(e.into());
        }
        Ok(())
    }

    /// Closes stdin (the MCP stdio shutdown signal), waits briefly, then kills.
    pub async fn close(&self) {
        self.stdin.lock().await.take();
        self.pending.close(format!("target '{}' closed", self.name));
        let Some(mut child) = self.child.lock().await.take() else {
            return;
        };
        let graceful = tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await;
        if graceful.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        tracing::debug!(target_name = %self.name, pid = ?self.pid, "stdio MCP target stopped");
    }
}

async fn read_stdout<R: AsyncBufRead + Unpin>(
    mut reader: R,
    idx: usize,
    name: String,
    limit: usize,
    pending: Arc<Pending>,
    inbound: mpsc::Sender<Inbound>,
) {
    let why = loop {
        match read_line_limited(&mut reader, limit).await {
            Ok(Some(line)) => {
                let trimmed = line.trim_ascii();
                if trimmed.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Json>(trimmed) {
                    Ok(msg) => pending.dispatch(msg, idx, &inbound).await,
                    Err(e) => {
                        tracing::debug!(target_name = %name, "non-JSON stdout line ignored: {e}")
                    }
                }
            }
            Ok(None) => break format!("target '{name}' exited (stdout closed)"),
            Err(e) => break format!("target '{name}' stdout: {e}"),
        }
    };
    tracing::debug!("{why}");
    pending.close(why);
}

/// Reads one `\n`-terminated line, refusing lines over `limit` bytes. `None` at EOF.
async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if line.len() > limit + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("message larger than {limit} bytes"),
            ));
        }
        if done {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_with_limit() {
        let data: &[u8] = b"{\"a\":1}\n\nshort\nthis line is far too long\n";
        let mut r = BufReader::with_capacity(4, data);
        assert_eq!(
            read_line_limited(&mut r, 16).await.expect("ok"),
            Some(b"{\"a\":1}\n".to_vec())
        );
        assert_eq!(
            read_line_limited(&mut r, 16).await.expect("ok"),
            Some(b"\n".to_vec())
        );
        assert_eq!(
            read_line_limited(&mut r, 16).await.expect("ok"),
            Some(b"short\n".to_vec())
        );
        assert!(read_line_limited(&mut r, 16).await.is_err());
        let mut empty = BufReader::new(&b""[..]);
        assert_eq!(read_line_limited(&mut empty, 16).await.expect("ok"), None);
    }
}
