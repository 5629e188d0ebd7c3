//! Project tasks that `build.rs` cannot do.
//!
//! - `cargo xtask demo [--once]`: the offline demo (README's first command).
//! - `cargo xtask bench [--quick] [--write PATH]`: the gateway data-path benchmark (gateway
//!   versus direct, tracing on/off, fixed rate and saturation, SSE per-event delay, idle RSS and
//!   10k idle streams); see `loadbench.rs`.
//! - `cargo xtask bench-ebpf [--quick] [--write PATH]`: eBPF benchmarks (connect latency
//!   with/without steering, round trip with/without sk_msg acceleration, sock_ops CPU cost at
//!   a high connection rate); prints a markdown section and, with `--write`, replaces the
//!   eBPF section of that file (BENCHMARKS.md).
//! - `cargo xtask node-sim`: two "pods" (netns + veth + own child cgroup) call the gateway's
//!   virtual address with the real openai SDK; see `nodesim.rs`.
//!
//! Both need root and a kernel with BPF. Hidden subcommands (`__*`) are the re-exec'd child
//! processes that join a cgroup before doing network I/O.

mod bench;
mod cgroup;
mod demo;
mod loadbench;
mod nodesim;

use std::process::Command;

use anyhow::{Context as _, bail};

/// `cargo`, for a build from inside `cargo xtask`, without the package variables `cargo run`
/// gave us (`CARGO_PKG_*`, `CARGO_MANIFEST_*`): ring's build script tracks them, so passing them
/// on would rebuild ring and everything above it, here and again in the next `cargo xtask`.
fn nested_cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && (name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_"))
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("usage: cargo xtask <demo|bench|bench-ebpf|node-sim> [options]");
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "demo" => demo::run(rest),
        "bench" => loadbench::run(rest),
        "__loadbench" => loadbench::child_main(rest),
        "__openloop" => loadbench::openloop_main(rest),
        "__idlestreams" => loadbench::idle_streams_main(rest),
        "__celbench" => loadbench::celbench::main(),
        "__guardbench" => loadbench::guardbench::main(),
        "__spendbench" => loadbench::spendbench::main(),
        "bench-ebpf" => bench::run(rest),
        "__bench-client" => bench::client_main(rest),
        "node-sim" => nodesim::run(rest),
        other => bail!("unknown xtask {other:?}"),
    }
    .with_context(|| format!("xtask {cmd}"))
}
