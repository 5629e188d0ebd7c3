//! `--with-litellm`: the LiteLLM proxy as a peer gateway on the same upstream.
//!
//! LiteLLM is a Python package; it is looked up at `$LITELLM` or `target/litellm-venv/bin/
//! litellm`. Install it (pinned) with
//! `uv venv target/litellm-venv && uv pip install -p target/litellm-venv/bin/python
//! 'litellm[proxy]==1.106.2'`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::procs::{self, Proc};

pub const ADDR: &str = "127.0.0.1:18804";

pub struct LiteLlm {
    pub proc: Proc,
    pub addr: SocketAddr,
}

pub fn start(root: &Path, dir: &Path, upstream: &str) -> anyhow::Result<LiteLlm> {
    let bin = std::env::var_os("LITELLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/litellm-venv/bin/litellm"));
    if !bin.exists() {
        bail!(
            "--with-litellm: {} not found; install it with `uv venv target/litellm-venv && uv pip \
             install -p target/litellm-venv/bin/python 'litellm[proxy]==1.106.2'` or set LITELLM",
            bin.display()
        );
    }
    let cfg = dir.join("litellm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n- model_name: gpt-4o-mini\n  litellm_params:\n    model: openai/gpt-4o-mini\n    api_base: http://{upstream}/v1\n    api_key: bench-upstream-key\nlitellm_settings:\n  telemetry: false\ngeneral_settings:\n  master_key: sk-bench-client-key\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("litellm.log"))?;
    let (host, port) = ADDR.split_once(':').context("litellm address")?;
    println!("==> starting LiteLLM (takes a minute on 2 cores)");
    let mut proc = Proc::spawn(
        "litellm",
        Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .args(["--host", host, "--port", port])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_TELEMETRY", "False")
            .env("LITELLM_LOG", "ERROR")
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    procs::wait_http(
        ADDR,
        "/health/liveliness",
        "LiteLLM",
        &mut proc,
        Duration::from_secs(240),
    )?;
    Ok(LiteLlm {
        proc,
        addr: ADDR.parse()?,
    })
}
