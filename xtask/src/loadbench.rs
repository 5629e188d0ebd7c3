//! `cargo xtask bench`: the gateway's data-path benchmark, gateway versus direct, in one run.
//!
//! Builds release binaries, then re-runs itself from `target/release/xtask` (the load
//! generators must not be debug code) and, on loopback:
//!
//! 1. starts `fast-upstream` (tests/src/bin/fast-upstream.rs), a rotel OTLP receiver with the
//!    blackhole exporter, and the gateways on the same upstream: `plain` (tracing off),
//!    `noring` (tracing off, the viewer's ring off), `traced` (every request sampled, OTLP
//!    gRPC to rotel), `streams` (kept untouched for the idle-stream test), `routed` (a
//!    virtual model over two targets), and for the paired comparison `plain2` (the plain
//!    config again) and `shorthand` (the `llm:` shorthand, one plain model); `plain` is also
//!    run while a client polls its viewer API as an open `/ui` page does (`viewer.rs`);
//! 2. idle RSS of the fresh gateways; then pairs of gateways served at once, their CPU per
//!    request compared (`paired.rs`);
//! 3. fixed rate (default 2,000 req/s, open loop, `openloop.rs`): direct, plain, traced, in
//!    alternating rounds; latency from each request's due time; gateway CPU from
//!    `/proc/<pid>/stat` deltas and RSS after each run;
//! 4. saturation with `wrk` (closed loop, `wrk.rs`), same alternation;
//! 5. streaming: one-way delay of every SSE event, direct versus through each gateway
//!    (`sse.rs`);
//! 6. 10,000 idle streams held open through the `streams` gateway, with its RSS;
//! 7. optionally (`--with-litellm`) the LiteLLM proxy on the same upstream and load;
//! 8. in process: the seeds' CEL `fields` blocks evaluated per request (`celbench.rs`), the
//!    viewer's ring: cost per recorded request, memory per kept request, and prompt guards
//!    on a 4 KB prompt and per stream event (`guardbench.rs`), cost, rate limits and budgets
//!    per request, and a Redis-backed limit's round trips against a real `redis-server`
//!    (`spendbench.rs`).
//!
//! Prints a markdown section; `--write BENCHMARKS.md` replaces the gateway section of that file
//! (between `<!-- bench-gateway:start -->` and `<!-- bench-gateway:end -->`), leaving the rest.

pub mod celbench;
pub mod guardbench;
mod litellm;
mod openloop;
mod paired;
mod procs;
mod report;
pub mod spendbench;
mod sse;
mod viewer;
mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;

use self::procs::{Mem, Proc};
use self::report::{FixedRow, Report, SatRow, SseRow, StreamsRow};

const UPSTREAM: &str = "127.0.0.1:18800";
const ROTEL_GRPC: &str = "127.0.0.1:18817";
const ROTEL_HTTP: &str = "127.0.0.1:18818";
const ROTEL: &str = "target/test-venv/lib/python3.11/site-packages/rotel/rotel-agent";
pub const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32}"#;
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// Knobs of one run (`--quick` shrinks every duration).
#[derive(Clone, Debug)]
pub struct Opts {
    pub rate: f64,
    pub fixed_secs: u64,
    pub sat_secs: u64,
    pub rounds: usize,
    pub wrk_connections: u32,
    pub sse_concurrency: usize,
    pub sse_secs: u64,
    pub sse_chunks: u32,
    pub sse_interval_us: u64,
    pub idle_streams: usize,
    pub with_litellm: bool,
    pub write: Option<PathBuf>,
}

impl Opts {
    fn parse(args: &[String]) -> anyhow::Result<Opts> {
        let mut o = Opts {
            rate: 2000.0,
            fixed_secs: 8,
            sat_secs: 8,
            rounds: 3,
            wrk_connections: 64,
            sse_concurrency: 16,
            sse_secs: 6,
            sse_chunks: 20,
            sse_interval_us: 10_000,
            idle_streams: 10_000,
            with_litellm: false,
            write: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--quick" => {
                    o.fixed_secs = 3;
                    o.sat_secs = 3;
                    o.rounds = 1;
                    o.sse_secs = 2;
                    o.idle_streams = 1000;
                }
                "--rate" => o.rate = val(a)?.parse()?,
                "--duration" => {
                    let s: u64 = val(a)?.parse()?;
                    o.fixed_secs = s;
                    o.sat_secs = s;
                }
                "--rounds" => o.rounds = val(a)?.parse::<usize>()?.max(1),
                "--connections" => o.wrk_connections = val(a)?.parse()?,
                "--streams" => o.idle_streams = val(a)?.parse()?,
                "--with-litellm" => o.with_litellm = true,
                "--write" => o.write = Some(PathBuf::from(val(a)?)),
                other => bail!(
                    "unknown option {other:?}; usage: cargo xtask bench [--quick] [--rate N] \
                     [--duration SECS] [--rounds N] [--connections N] [--streams N] \
                     [--with-litellm] [--write BENCHMARKS.md]"
                ),
            }
        }
        Ok(o)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo xtask bench`: build release binaries, then run the benchmark from the release xtask.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    println!("==> building release binaries (gateway, fast-upstream, xtask; AYA_BUILD_SKIP=1)");
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "gateway-user",
            "-p",
            "gateway-tests",
            "-p",
            "xtask",
        ])
        // The data path does not need the kernel programs; skipping their nested build keeps the
        // benchmark free of the BPF toolchain. eBPF is set to `off` in the bench configs.
        .env("AYA_BUILD_SKIP", "1")
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("cargo build --release failed");
    }
    let xtask = target_dir().join("release/xtask");
    let st = Command::new(&xtask)
        .arg("__loadbench")
        .args(args)
        .status()
        .with_context(|| format!("running {}", xtask.display()))?;
    if !st.success() {
        bail!("benchmark failed ({st})");
    }
    Ok(())
}

/// One path the load goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    Direct,
    Gateway,
    /// The gateway with the viewer's ring off (`config.ui.recentRequests: 0`).
    NoRing,
    /// `Gateway` while a client polls the viewer's API as an open `/ui` page does.
    UiOpen,
    Traced,
    /// The `llm:` shorthand with a weighted virtual model over two targets (both the
    /// fast-upstream), tracing off.
    Routed,
    LiteLlm,
}

impl PathKind {
    pub fn label(self) -> &'static str {
        match self {
            PathKind::Direct => "direct to upstream",
            PathKind::Gateway => "gateway, tracing off",
            PathKind::NoRing => "gateway, tracing off, viewer ring 0",
            PathKind::UiOpen => "gateway, tracing off, /ui open",
            PathKind::Traced => "gateway, 100% tracing (OTLP gRPC)",
            PathKind::Routed => "gateway, virtual model over two targets",
            PathKind::LiteLlm => "LiteLLM proxy",
        }
    }
}

/// A gateway instance's ports.
struct GwPorts {
    bind: u16,
    admin: u16,
    stats: u16,
    ready: u16,
}

/// What a bench gateway runs with besides its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// Tracing off, the viewer's default ring (1,000 requests).
    Plain,
    /// Tracing off, `config.ui.recentRequests: 0`.
    NoRing,
    /// Every request traced to rotel.
    Traced,
    /// `llm:` shorthand: the request's model is a weighted virtual model over two targets.
    Routed,
    /// `llm:` shorthand: the request's model is one plain model (the paired baseline of
    /// `Routed`).
    Shorthand,
}

fn gateway_config(p: &GwPorts, variant: Variant) -> String {
    let ui = if variant == Variant::NoRing {
        "  ui:\n    recentRequests: 0\n"
    } else {
        ""
    };
    let tracing = if variant == Variant::Traced {
        format!(
            "  tracing:\n    otlpEndpoint: http://{ROTEL_GRPC}\n    otlpProtocol: grpc\n    randomSampling: true\n"
        )
    } else {
        String::new()
    };
    if variant == Variant::Routed {
        return routed_config(p);
    }
    if variant == Variant::Shorthand {
        return format!(
            "{head}llm:
  port: {bind}
  models:
  - name: gpt-4o-mini
    provider: openAI
    params: {{hostOverride: {UPSTREAM}, apiKey: bench-upstream-key}}
",
            head = config_head(p),
            bind = p.bind,
        );
    }
    format!(
        "{head}{ui}{tracing}binds:
- port: {bind}
  address: 127.0.0.1
  listeners:
  - name: bench
    routes:
    - name: openai
      backends:
      - ai:
          name: fast-upstream
          provider: {{openAI: {{}}}}
          hostOverride: {UPSTREAM}
      policies:
        backendAuth: {{key: bench-upstream-key}}
",
        head = config_head(p),
        bind = p.bind,
    )
}

/// The `config:` block every bench gateway starts with (admin ports, text log, eBPF off).
fn config_head(p: &GwPorts) -> String {
    format!(
        "# Generated by `cargo xtask bench` (xtask/src/loadbench.rs).
config:
  adminAddr: 127.0.0.1:{admin}
  statsAddr: 127.0.0.1:{stats}
  readinessAddr: 127.0.0.1:{ready}
  logging:
    format: text
  ebpf:
    mode: 'off'
  limits:
    maxConnections: 30000
",
        admin = p.admin,
        stats = p.stats,
        ready = p.ready,
    )
}

/// The `Routed` gateway: the bench's model name is a virtual model whose two targets both send
/// to the fast-upstream (so both stay healthy and the draw alternates by weight), each an
/// entry naming its provider model, as two deployments of one model would.
fn routed_config(p: &GwPorts) -> String {
    format!(
        "{head}llm:
  port: {bind}
  models:
  - name: target-a
    visibility: internal
    provider: openAI
    params: {{model: gpt-4o-mini, hostOverride: {UPSTREAM}, apiKey: bench-upstream-key}}
  - name: target-b
    visibility: internal
    provider: openAI
    params: {{model: gpt-4o-mini, hostOverride: {UPSTREAM}, apiKey: bench-upstream-key}}
  virtualModels:
  - name: gpt-4o-mini
    routing:
      weighted:
        targets: [{{model: target-a, weight: 1}}, {{model: target-b, weight: 1}}]
",
        head = config_head(p),
        bind = p.bind,
    )
}

struct Gateway {
    proc: Proc,
    addr: SocketAddr,
    stats: String,
    admin: String,
}

fn start_gateway(
    name: &'static str,
    bin: &Path,
    dir: &Path,
    ports: GwPorts,
    variant: Variant,
) -> anyhow::Result<Gateway> {
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(&cfg, gateway_config(&ports, variant))?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let mut proc = Proc::spawn(
        name,
        Command::new(bin)
            .arg("-f")
            .arg(&cfg)
            // Access log lines go to stdout: formatted and written as in production, to /dev/null.
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    procs::wait_http(
        &format!("127.0.0.1:{}", ports.ready),
        "/healthz/ready",
        name,
        &mut proc,
        Duration::from_secs(60),
    )?;
    Ok(Gateway {
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], ports.bind)),
        stats: format!("127.0.0.1:{}", ports.stats),
        admin: format!("127.0.0.1:{}", ports.admin),
    })
}

/// CPU and memory of the processes that matter, sampled around one run.
struct Watch<'a> {
    procs: Vec<&'a Proc>,
    cpu0: Vec<Duration>,
    t0: Instant,
    load0: f64,
}

impl<'a> Watch<'a> {
    fn start(procs: Vec<&'a Proc>) -> Watch<'a> {
        let cpu0 = procs.iter().map(|p| p.cpu().unwrap_or_default()).collect();
        Watch {
            procs,
            cpu0,
            t0: Instant::now(),
            load0: procs::loadavg(),
        }
    }

    /// (wall, CPU per watched process, memory per watched process, mean load average).
    fn stop(self) -> (Duration, Vec<Duration>, Vec<Mem>, f64) {
        let wall = self.t0.elapsed();
        let cpu = self
            .procs
            .iter()
            .zip(&self.cpu0)
            .map(|(p, c0)| p.cpu().unwrap_or_default().saturating_sub(*c0))
            .collect();
        let mem = self
            .procs
            .iter()
            .map(|p| p.mem().unwrap_or_default())
            .collect();
        (wall, cpu, mem, (self.load0 + procs::loadavg()) / 2.0)
    }
}

/// Hidden `__openloop ADDR RATE SECS`: one fixed-rate run of the chat request against `ADDR`
/// (gateway or upstream already running), for profiling one path by hand.
pub fn openloop_main(args: &[String]) -> anyhow::Result<()> {
    let [addr, rate, secs] = args else {
        bail!("usage: xtask __openloop ADDR RATE SECS");
    };
    let target = openloop::Target {
        addr: addr.parse().context("ADDR")?,
        path: CHAT_PATH.into(),
        body: Bytes::from_static(CHAT_BODY.as_bytes()),
    };
    let s = openloop::run(
        &target,
        rate.parse().context("RATE")?,
        Duration::from_secs(1),
        Duration::from_secs(secs.parse().context("SECS")?),
    )?;
    let p = |q| openloop::percentile(&s.latency_us, q);
    println!(
        "{:.0} req/s  p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  errors {}",
        s.achieved_rps,
        p(50.0),
        p(90.0),
        p(99.0),
        p(99.9),
        s.errors
    );
    Ok(())
}

/// Hidden `__idlestreams ADDR N PID`: holds `N` idle streams through a running gateway (its
/// upstream a `fast-upstream`) and prints the gateway's RSS per stream, the bench's
/// idle-stream measurement on its own.
pub fn idle_streams_main(args: &[String]) -> anyhow::Result<()> {
    let [addr, n, pid] = args else {
        bail!("usage: xtask __idlestreams ADDR N GATEWAY_PID");
    };
    let n: usize = n.parse().context("N")?;
    let pid: u32 = pid.parse().context("PID")?;
    procs::raise_nofile(4 * n as u64 + 4096)?;
    let before = procs::mem(pid)?;
    let (opened, took, at) = sse::hold_idle_streams(addr.parse()?, n, 256, move |_| {
        std::thread::sleep(Duration::from_secs(1));
        procs::mem(pid).unwrap_or_default()
    })?;
    let per = (at.rss_mib() - before.rss_mib()) * 1024.0 / opened.max(1) as f64;
    println!(
        "{opened} streams open in {:.1} s: RSS {:.1} MiB (before {:.1} MiB), {per:.1} KiB per stream",
        took.as_secs_f64(),
        at.rss_mib(),
        before.rss_mib()
    );
    Ok(())
}

/// Hidden `__loadbench`: the benchmark itself, run from the release xtask binary.
pub fn child_main(args: &[String]) -> anyhow::Result<()> {
    let mut o = Opts::parse(args)?;
    let root = workspace_root();
    let bin = target_dir().join("release");
    let dir = target_dir().join("loadbench");
    std::fs::create_dir_all(&dir)?;
    let nofile = procs::raise_nofile(4 * o.idle_streams as u64 + 4096)?;
    // The gateway holds two descriptors per stream (client and upstream connection).
    let fit = (nofile as usize).saturating_sub(1200) / 2;
    if fit < o.idle_streams {
        println!(
            "==> open-file hard limit is {nofile} and cannot be raised here (needs CAP_SYS_RESOURCE): \
             testing {fit} idle streams instead of {}",
            o.idle_streams
        );
        o.idle_streams = fit;
    }
    let mut rep = Report::new(&o, &root);

    println!("==> starting fast-upstream, rotel and the gateways on loopback");
    let mut upstream = Proc::spawn(
        "fast-upstream",
        Command::new(bin.join("fast-upstream"))
            .args(["--listen", UPSTREAM, "--threads", "1"])
            .stdout(Stdio::null()),
    )?;
    procs::wait_http(
        UPSTREAM,
        "/health",
        "fast-upstream",
        &mut upstream,
        Duration::from_secs(30),
    )?;
    let rotel_bin = std::env::var_os("ROTEL_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(ROTEL));
    let mut rotel = Proc::spawn(
        "rotel",
        Command::new(&rotel_bin)
            .args(["start", "--otlp-grpc-endpoint", ROTEL_GRPC])
            .args([
                "--otlp-http-endpoint",
                ROTEL_HTTP,
                "--exporter",
                "blackhole",
            ])
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.join("rotel.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .with_context(|| {
        format!(
            "rotel-agent at {} (tests/scripts/install-deps.sh)",
            rotel_bin.display()
        )
    })?;
    procs::wait_tcp(ROTEL_GRPC, "rotel", &mut rotel)?;
    let gw_bin = bin.join("gateway");
    let plain = start_gateway(
        "gw-plain",
        &gw_bin,
        &dir,
        GwPorts {
            bind: 18801,
            admin: 18811,
            stats: 18821,
            ready: 18831,
        },
        Variant::Plain,
    )?;
    let noring = start_gateway(
        "gw-noring",
        &gw_bin,
        &dir,
        GwPorts {
            bind: 18804,
            admin: 18814,
            stats: 18824,
            ready: 18834,
        },
        Variant::NoRing,
    )?;
    let traced = start_gateway(
        "gw-traced",
        &gw_bin,
        &dir,
        GwPorts {
            bind: 18802,
            admin: 18812,
            stats: 18822,
            ready: 18832,
        },
        Variant::Traced,
    )?;
    let streams = start_gateway(
        "gw-streams",
        &gw_bin,
        &dir,
        GwPorts {
            bind: 18803,
            admin: 18813,
            stats: 18823,
            ready: 18833,
        },
        Variant::Plain,
    )?;
    let routed = start_gateway(
        "gw-routed",
        &gw_bin,
        &dir,
        GwPorts {
            bind: 18805,
            admin: 18815,
            stats: 18825,
            ready: 18835,
        },
        Variant::Routed,
    )?;
    // The A/A control of the paired CPU comparison: the plain config again.
    let plain2 = start_gateway(
        "gw-plain2",
        &gw_bin,
        &dir,
        GwPorts {
            bind: 18806,
            admin: 18816,
            stats: 18826,
            ready: 18836,
        },
        Variant::Plain,
    )?;
    // The `llm:` shorthand with one plain model: what the virtual model is compared with.
    let shorthand = start_gateway(
        "gw-shorthand",
        &gw_bin,
        &dir,
        GwPorts {
            bind: 18840,
            admin: 18841,
            stats: 18842,
            ready: 18843,
        },
        Variant::Shorthand,
    )?;
    std::thread::sleep(Duration::from_secs(1));
    rep.idle_rss = vec![
        ("gw-plain", plain.proc.mem()?),
        ("gw-noring", noring.proc.mem()?),
        ("gw-traced", traced.proc.mem()?),
        ("gw-streams", streams.proc.mem()?),
    ];
    let litellm = if o.with_litellm {
        Some(litellm::start(&root, &dir, UPSTREAM)?)
    } else {
        None
    };

    let upstream_addr: SocketAddr = UPSTREAM.parse()?;
    let mut paths: Vec<(PathKind, SocketAddr, Option<&Proc>)> = vec![
        (PathKind::Direct, upstream_addr, None),
        (PathKind::Gateway, plain.addr, Some(&plain.proc)),
        (PathKind::NoRing, noring.addr, Some(&noring.proc)),
        (PathKind::UiOpen, plain.addr, Some(&plain.proc)),
        (PathKind::Traced, traced.addr, Some(&traced.proc)),
        (PathKind::Routed, routed.addr, Some(&routed.proc)),
    ];
    if let Some(l) = &litellm {
        paths.push((PathKind::LiteLlm, l.addr, Some(&l.proc)));
    }
    let script = dir.join("post.lua");
    wrk::write_script(&script, CHAT_BODY)?;

    println!("==> warm-up (2 s of wrk per path; 15 s for LiteLLM, whose first calls are slow)");
    for (kind, addr, _) in &paths {
        let secs = if *kind == PathKind::LiteLlm { 15 } else { 2 };
        let r = wrk::run(
            &format!("http://{addr}{CHAT_PATH}"),
            &script,
            1,
            8,
            Duration::from_secs(secs),
        )?;
        // LiteLLM's first, cold calls may time out; only its measured runs count errors.
        let failed = r.requests == 0 || (r.errors > 0 && *kind != PathKind::LiteLlm);
        if failed {
            bail!("warm-up through {} failed: {r:?}", kind.label());
        }
    }

    // gw-plain2 gets the warm-up gw-plain had as the `Gateway` path (its `/ui open` run
    // warmed the same process once more): both sides of each pair arrive warm.
    for (addr, secs) in [(plain2.addr, 4), (shorthand.addr, 2)] {
        wrk::run(
            &format!("http://{addr}{CHAT_PATH}"),
            &script,
            1,
            8,
            Duration::from_secs(secs),
        )?;
    }
    let half = o.rate / 2.0;
    println!(
        "==> paired CPU: two gateways at {half} req/s each, at once, {} rounds of {} s",
        paired::ROUNDS,
        paired::SECS
    );
    rep.paired = vec![
        paired::run(
            "A/A: gw-plain and gw-plain2 (the same config)",
            (&plain.proc, plain.addr),
            (&plain2.proc, plain2.addr),
            half,
        )?,
        paired::run(
            "gw-plain and gw-shorthand (the `llm:` shorthand, one plain model)",
            (&plain.proc, plain.addr),
            (&shorthand.proc, shorthand.addr),
            half,
        )?,
        paired::run(
            "gw-shorthand and gw-routed (a virtual model over two targets instead of the plain model)",
            (&shorthand.proc, shorthand.addr),
            (&routed.proc, routed.addr),
            half,
        )?,
        paired::run(
            "gw-plain and gw-routed",
            (&plain.proc, plain.addr),
            (&routed.proc, routed.addr),
            half,
        )?,
    ];

    println!(
        "==> fixed rate: {} req/s, {} s per run, {} rounds",
        o.rate, o.fixed_secs, o.rounds
    );
    let mut fixed: Vec<FixedRow> = paths.iter().map(|p| FixedRow::new(p.0)).collect();
    for round in 0..o.rounds {
        for (i, (kind, addr, gw)) in paths.iter().enumerate() {
            if *kind == PathKind::LiteLlm && round > 0 {
                continue;
            }
            let target = openloop::Target {
                addr: *addr,
                path: CHAT_PATH.into(),
                body: Bytes::from_static(CHAT_BODY.as_bytes()),
            };
            let _page =
                (*kind == PathKind::UiOpen).then(|| viewer::Poller::start(plain.admin.clone()));
            let mut watched = vec![&upstream];
            watched.extend(gw.iter().copied());
            let w = Watch::start(watched);
            let s = openloop::run(
                &target,
                o.rate,
                Duration::from_secs(1),
                Duration::from_secs(o.fixed_secs),
            )?;
            let (wall, cpu, mem, load) = w.stop();
            println!(
                "    round {} {:<36} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>7.0} req/s  errors {}  load {:.2}",
                round + 1,
                kind.label(),
                openloop::percentile(&s.latency_us, 50.0),
                openloop::percentile(&s.latency_us, 99.0),
                s.achieved_rps,
                s.errors,
                load
            );
            fixed[i].add(s, wall, &cpu, mem.get(1).copied(), load);
        }
    }
    rep.fixed = fixed;

    println!(
        "==> saturation: wrk -t2 -c{} , {} s per run, {} rounds",
        o.wrk_connections, o.sat_secs, o.rounds
    );
    let mut sat: Vec<SatRow> = paths.iter().map(|p| SatRow::new(p.0)).collect();
    for round in 0..o.rounds {
        for (i, (kind, addr, gw)) in paths.iter().enumerate() {
            if *kind == PathKind::LiteLlm && round > 0 {
                continue;
            }
            let _page =
                (*kind == PathKind::UiOpen).then(|| viewer::Poller::start(plain.admin.clone()));
            let mut watched = vec![&upstream];
            watched.extend(gw.iter().copied());
            let w = Watch::start(watched);
            let r = wrk::run(
                &format!("http://{addr}{CHAT_PATH}"),
                &script,
                2,
                o.wrk_connections,
                Duration::from_secs(o.sat_secs),
            )?;
            let (wall, cpu, mem, load) = w.stop();
            println!(
                "    round {} {:<36} {:>8.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  errors {}  load {:.2}",
                round + 1,
                kind.label(),
                r.rps,
                r.p50_us,
                r.p99_us,
                r.errors,
                load
            );
            sat[i].add(r, wall, &cpu, mem.get(1).copied(), load);
        }
    }
    rep.sat = sat;
    rep.spans_dropped = procs::http_get(&traced.stats, "/metrics")
        .map(|(_, m)| procs::metric_sum(&m, "agentgateway_tracing_spans_dropped_total"))
        .unwrap_or(f64::NAN);
    rep.traced_requests = procs::http_get(&traced.stats, "/metrics")
        .map(|(_, m)| procs::metric_sum(&m, "agentgateway_requests_total"))
        .unwrap_or(f64::NAN);
    rep.after_load_rss = vec![
        ("gw-plain", plain.proc.mem()?),
        ("gw-noring", noring.proc.mem()?),
        ("gw-traced", traced.proc.mem()?),
    ];

    println!(
        "==> streaming: {} concurrent streams, {} events {} µs apart, {} s per path",
        o.sse_concurrency, o.sse_chunks, o.sse_interval_us, o.sse_secs
    );
    let mut sse_rows = Vec::new();
    for (kind, addr, gw) in &paths {
        // The viewer's variants differ from `Gateway` only after a request ends.
        if matches!(
            kind,
            PathKind::LiteLlm | PathKind::NoRing | PathKind::UiOpen
        ) {
            continue;
        }
        let mut watched = vec![&upstream];
        watched.extend(gw.iter().copied());
        let w = Watch::start(watched);
        let d = sse::event_delays(
            *addr,
            o.sse_concurrency,
            Duration::from_secs(o.sse_secs),
            o.sse_chunks,
            o.sse_interval_us,
        )?;
        let (wall, cpu, _, load) = w.stop();
        println!(
            "    {:<36} {} streams, {} events: p50 {:.1} µs  p99 {:.1} µs (first event p50 {:.1} µs)  errors {}",
            kind.label(),
            d.streams,
            d.rest_us.len() + d.first_us.len(),
            openloop::percentile(&d.rest_us, 50.0),
            openloop::percentile(&d.rest_us, 99.0),
            openloop::percentile(&d.first_us, 50.0),
            d.errors
        );
        sse_rows.push(SseRow {
            kind: *kind,
            delays: d,
            wall,
            gw_cpu: cpu.get(1).copied(),
            load,
        });
    }
    rep.sse = sse_rows;

    println!(
        "==> {} idle streams through a fresh gateway",
        o.idle_streams
    );
    let before = streams.proc.mem()?;
    let gw_pid = streams.proc.pid();
    let up_pid = upstream.pid();
    let cpu_before = streams.proc.cpu()?;
    let (opened, took, (at, hold_cpu)) =
        sse::hold_idle_streams(streams.addr, o.idle_streams, 256, move |_| {
            // Let the allocator settle, then sample; CPU over a 5 s hold shows what idle costs.
            std::thread::sleep(Duration::from_secs(1));
            let c0 = procs::cpu_time(gw_pid).unwrap_or_default();
            std::thread::sleep(Duration::from_secs(5));
            let c1 = procs::cpu_time(gw_pid).unwrap_or_default();
            let m = procs::mem(gw_pid).unwrap_or_default();
            let up = procs::mem(up_pid).unwrap_or_default();
            ((m, up), c1.saturating_sub(c0))
        })?;
    std::thread::sleep(Duration::from_secs(2));
    let after = streams.proc.mem()?;
    println!(
        "    opened {opened} in {:.1} s: gateway RSS {:.1} MiB (before {:.1} MiB, after close {:.1} MiB)",
        took.as_secs_f64(),
        at.0.rss_mib(),
        before.rss_mib(),
        after.rss_mib()
    );
    rep.streams = Some(StreamsRow {
        wanted: o.idle_streams,
        opened,
        took,
        before,
        at: at.0,
        upstream_at: at.1,
        after,
        hold_cpu,
        open_cpu: streams.proc.cpu()?.saturating_sub(cpu_before),
        load: procs::loadavg(),
    });
    rep.rotel_cpu = rotel.cpu().ok();
    println!("==> CEL: the seeds' fields blocks evaluated per request, in process");
    rep.cel = celbench::micro()?;
    for r in &rep.cel {
        println!("    {r:?}");
    }
    println!("==> the viewer's ring in process (record cost, memory per kept request)");
    let micro = viewer::micro();
    println!("    {micro:?}");
    rep.viewer = Some(micro);
    println!("==> prompt guards in process (4 KB prompt, stream events)");
    let g = guardbench::micro()?;
    println!("    {g:?}");
    rep.guard = Some(g);
    println!("==> cost, limits and budgets in process; a Redis-backed limit against redis-server");
    let sp = spendbench::micro()?;
    println!("    {sp:?}");
    rep.spend = Some(sp);
    rep.finish();

    let md = rep.markdown();
    println!("\n{md}");
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&rep.json())?,
    )?;
    if let Some(path) = &o.write {
        report::write_section(path, &md)?;
        println!("==> wrote the gateway section of {}", path.display());
    }
    drop(litellm);
    drop(streams);
    drop(traced);
    drop(noring);
    drop(plain);
    drop(rotel);
    drop(upstream);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_configs_are_valid_gateway_configs() {
        let ports = GwPorts {
            bind: 1,
            admin: 2,
            stats: 3,
            ready: 4,
        };
        for variant in [
            Variant::Plain,
            Variant::NoRing,
            Variant::Traced,
            Variant::Routed,
            Variant::Shorthand,
        ] {
            let text = gateway_config(&ports, variant);
            let input = gateway::app::ConfigInput::Inline(text.clone());
            gateway::app::validate(&input).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(text.contains("otlpEndpoint"), variant == Variant::Traced);
            assert_eq!(
                text.contains("recentRequests: 0"),
                variant == Variant::NoRing
            );
        }
    }

    #[test]
    fn options() {
        let o = Opts::parse(&["--quick".into(), "--rate".into(), "500".into()]).expect("parse");
        assert_eq!((o.rate, o.rounds, o.idle_streams), (500.0, 1, 1000));
        assert!(Opts::parse(&["--bogus".into()]).is_err());
        assert!(Opts::parse(&["--rate".into()]).is_err());
    }
}
