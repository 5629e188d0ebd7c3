//! `provider-sim`: serves the LLM provider simulator until SIGTERM or Ctrl-C.
//!
//! Prints `listening on ADDR` once bound and, with `--port-file`, writes the bound port there
//! (written to a temporary name and renamed, so a reader never sees a partial file).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use gateway_tests::{SimConfig, Simulator};

#[derive(Debug, Parser)]
#[command(
    name = "provider-sim",
    about = "Deterministic OpenAI/Anthropic/Gemini/Azure simulator for tests"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File to write the bound port number to.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Accept requests that carry no provider credential (by default they get 401).
    #[arg(long)]
    allow_anonymous: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sim = Simulator::start(SimConfig {
        listen: args.listen,
        require_auth: !args.allow_anonymous,
    })
    .await?;
    let addr = sim.addr();
    if let Some(path) = &args.port_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, addr.port().to_string())
            .with_context(|| format!("writing port file {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming port file to {}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
    }
    sim.shutdown().await;
    Ok(())
}
