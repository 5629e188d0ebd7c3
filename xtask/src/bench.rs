//! `cargo xtask bench-ebpf`: what the kernel programs cost and gain, measured on loopback.
//!
//! Method (all on one host, loopback, the xtask process is the "gateway" in its own cgroup,
//! clients are re-exec'd processes in a child of the steered cgroup):
//! Rounds alternate baseline and attached runs; each table cell is a median over rounds.
//! 1. connect(): N sequential connect()+close (SO_LINGER 0) to a listener that accepts and
//!    drops; per-connect latency measured in the client with a monotonic clock. Baseline (no
//!    programs), steered (virtual address rewritten by connect4 to the listener) and
//!    "attached but not matching" (direct address, programs present).
//! 2. Round trip: one connection, N ping-pongs of 64 bytes to an echo server. Baseline, steered
//!    with plain TCP, steered with sockhash + sk_msg redirect (`accelerate: true`).
//! 3. sock_ops CPU at a high connection rate: N connect+close as fast as one client can, with
//!    the kernel's BPF run-time accounting on (`BPF_ENABLE_STATS`): run count and run time of
//!    each program, per connection; plus client and gateway process CPU per connection with
//!    and without the programs.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use gateway::config::ebpf::{RawEbpf, RawEbpfMode, RawSteer};
use gateway::ebpf::{self, Ebpf, ProgramStats};
use gateway_common::stats::Stat;
use serde_json::{Value, json};

use crate::cgroup::{CgroupTree, join};

const VIRT_IP: &str = "127.0.0.2";
const VIRT_ECHO_PORT: u16 = 18101;
const VIRT_SINK_PORT: u16 = 18102;
const PAYLOAD: usize = 64;
const SECTION_START: &str = "<!-- bench-ebpf:start -->";
const SECTION_END: &str = "<!-- bench-ebpf:end -->";

struct Sizes {
    rounds: usize,
    connects: usize,
    round_trips: usize,
    churn: usize,
}

/// Results of one measurement over all rounds (one client JSON per round).
#[derive(Default)]
struct Series {
    runs: Vec<Value>,
    /// CPU seconds of the gateway (xtask) process per round, for churn series.
    gw_cpu: Vec<f64>,
}

impl Series {
    /// Median over rounds of one field of the client result.
    fn median(&self, key: &str) -> f64 {
        median(self.runs.iter().map(|v| f(v, key)).collect())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Default)]
struct Results {
    connect_base: Series,
    connect_steer: Series,
    connect_miss: Series,
    rtt_base: Series,
    rtt_steer: Series,
    rtt_accel: Series,
    churn_base: Series,
    churn_steer: Series,
    /// Program run count and run time deltas summed over the churn_steer runs.
    prog: Vec<(String, u64, Duration)>,
    steered: u64,
    redirects: u64,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench-ebpf needs root (BPF programs, cgroups)");
    }
    let quick = args.iter().any(|a| a == "--quick");
    let write = args
        .iter()
        .position(|a| a == "--write")
        .and_then(|i| args.get(i + 1));
    let sizes = if quick {
        Sizes {
            rounds: 2,
            connects: 500,
            round_trips: 2000,
            churn: 1000,
        }
    } else {
        Sizes {
            rounds: 5,
            connects: 2000,
            round_trips: 10000,
            churn: 4000,
        }
    };

    let mut tree = CgroupTree::create("gw-bench")?;
    let gw_cg = tree.dir("gateway")?;
    let client_cg = tree.dir("pods/client")?;
    let pods = tree.root.join("pods");
    tree.enter(&gw_cg)?;

    let echo = TcpListener::bind("127.0.0.1:0")?;
    let sink = TcpListener::bind("127.0.0.1:0")?;
    // std listens with a backlog of 128: a churning client outruns the accept thread, SYNs
    // get dropped and retried after 1 s, and the run measures that instead of connect().
    deepen_backlog(&echo)?;
    deepen_backlog(&sink)?;
    let echo_addr = echo.local_addr()?;
    let sink_addr = sink.local_addr()?;
    serve_echo(echo);
    serve_sink(sink);
    let virt_echo: SocketAddr = format!("{VIRT_IP}:{VIRT_ECHO_PORT}").parse()?;
    let virt_sink: SocketAddr = format!("{VIRT_IP}:{VIRT_SINK_PORT}").parse()?;
    let ports = [echo_addr.port(), sink_addr.port()];
    let cfg = |accelerate| RawEbpf {
        mode: RawEbpfMode::Required,
        cgroup: Some(pods.clone()),
        steer: vec![
            RawSteer {
                address: virt_echo.to_string(),
                bind: echo_addr.port(),
            },
            RawSteer {
                address: virt_sink.to_string(),
                bind: sink_addr.port(),
            },
        ],
        node_address: vec![],
        accelerate,
    };
    let c = |mode: &str, target: SocketAddr, n: usize| client(&client_cg, mode, target, n);

    let mut r = Results::default();
    for round in 0..sizes.rounds {
        eprintln!("bench-ebpf: round {}/{}", round + 1, sizes.rounds);
        // Baseline and attached runs alternate so that drift of the shared machine hits both.
        r.connect_base
            .runs
            .push(c("connect", sink_addr, sizes.connects)?);

        let ebpf = start(&cfg(false), &ports)?;
        r.connect_steer
            .runs
            .push(c("connect", virt_sink, sizes.connects)?);
        r.connect_miss
            .runs
            .push(c("connect", sink_addr, sizes.connects)?);
        r.rtt_steer
            .runs
            .push(c("rtt", virt_echo, sizes.round_trips)?);
        let stats_fd = ebpf::enable_run_stats()?;
        let before = ebpf.program_stats();
        let (v, cpu) = with_own_cpu(|| c("churn", virt_sink, sizes.churn))?;
        let after = ebpf.program_stats();
        drop(stats_fd);
        r.churn_steer.runs.push(v);
        r.churn_steer.gw_cpu.push(cpu);
        add_program_deltas(&mut r.prog, &before, &after);
        r.steered += ebpf.stat(Stat::Steered);
        stop(ebpf);

        r.rtt_base
            .runs
            .push(c("rtt", echo_addr, sizes.round_trips)?);
        let (v, cpu) = with_own_cpu(|| c("churn", sink_addr, sizes.churn))?;
        r.churn_base.runs.push(v);
        r.churn_base.gw_cpu.push(cpu);

        let ebpf = start(&cfg(true), &ports)?;
        r.rtt_accel
            .runs
            .push(c("rtt", virt_echo, sizes.round_trips)?);
        let redirects = ebpf.stat(Stat::AccelRedirects);
        stop(ebpf);
        if redirects < sizes.round_trips as u64 {
            bail!("acceleration did not engage: {redirects} sk_msg redirects");
        }
        r.redirects += redirects;
    }

    let md = report(&sizes, &r);
    println!("{md}");
    if let Some(path) = write {
        write_section(Path::new(path), &md)?;
        eprintln!("bench-ebpf: wrote {path}");
    }
    Ok(())
}

fn add_program_deltas(
    acc: &mut Vec<(String, u64, Duration)>,
    before: &[ProgramStats],
    after: &[ProgramStats],
) {
    for a in after {
        let b = before.iter().find(|b| b.name == a.name);
        let runs = a.run_count - b.map_or(0, |b| b.run_count);
        let time = a
            .run_time
            .saturating_sub(b.map_or(Duration::ZERO, |b| b.run_time));
        match acc.iter_mut().find(|(n, _, _)| *n == a.name) {
            Some(e) => {
                e.1 += runs;
                e.2 += time;
            }
            None => acc.push((a.name.clone(), runs, time)),
        }
    }
}

fn start(cfg: &RawEbpf, ports: &[u16]) -> anyhow::Result<std::sync::Arc<Ebpf>> {
    let (e, _) = ebpf::start(Some(cfg), ports, &prometheus::Registry::new())?;
    settle();
    e.context("eBPF did not start")
}

/// Detaching programs and freeing the preallocated maps runs as deferred kernel work; on two
/// shared vCPUs it would otherwise steal from the next (baseline) measurement.
fn stop(e: std::sync::Arc<Ebpf>) {
    drop(e);
    settle();
}

fn settle() {
    std::thread::sleep(Duration::from_millis(700));
}

fn serve_echo(l: TcpListener) {
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; PAYLOAD];
                let mut s = s;
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn serve_sink(l: TcpListener) {
    std::thread::spawn(move || for _ in l.incoming() {});
}

/// CPU time (user + system) this process spent while `f` ran.
fn with_own_cpu<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    let before = cpu_seconds();
    let out = f()?;
    Ok((out, cpu_seconds() - before))
}

fn cpu_seconds() -> f64 {
    // SAFETY: zeroed rusage is a valid out parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs one client process in `cg` and returns its JSON result.
fn client(cg: &Path, mode: &str, target: SocketAddr, n: usize) -> anyhow::Result<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(["__bench-client", mode])
        .arg(cg)
        .arg(target.to_string())
        .arg(n.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "bench client {mode} {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The re-exec'd client: `__bench-client <connect|rtt|churn> <cgroup> <target> <n>`.
pub fn client_main(args: &[String]) -> anyhow::Result<()> {
    let [mode, cg, target, n] = args else {
        bail!("usage: __bench-client MODE CGROUP TARGET N");
    };
    join(Path::new(cg))?;
    let target: SocketAddr = target.parse()?;
    let n: usize = n.parse()?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(n);
    match mode.as_str() {
        "connect" | "churn" => {
            for _ in 0..n {
                let t = Instant::now();
                let s = TcpStream::connect(target)?;
                if mode == "connect" {
                    lat.push(t.elapsed());
                }
                // RST on close: no TIME_WAIT pile-up across tens of thousands of connects.
                set_linger_zero(&s)?;
            }
        }
        "rtt" => {
            let mut s = TcpStream::connect(target)?;
            s.set_nodelay(true)?;
            let msg = [7u8; PAYLOAD];
            let mut buf = [0u8; PAYLOAD];
            for i in 0..n + 100 {
                let t = Instant::now();
                s.write_all(&msg)?;
                s.read_exact(&mut buf)?;
                if i >= 100 {
                    lat.push(t.elapsed());
                }
            }
            if buf != msg {
                bail!("echo corrupted the payload");
            }
        }
        other => bail!("unknown client mode {other}"),
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e6)
            .unwrap_or(0.0)
    };
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e6 / lat.len() as f64
    };
    println!(
        "{}",
        json!({
            "n": n, "wall_s": wall, "cpu_s": cpu, "mean_us": mean,
            "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99),
        })
    );
    Ok(())
}

fn deepen_backlog(l: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: valid listening fd; listen() again only changes the backlog.
    if unsafe { libc::listen(l.as_raw_fd(), 4096) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd, pointer to a linger struct and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn lat_row(name: &str, s: &Series) -> String {
    format!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
        s.median("mean_us"),
        s.median("p50_us"),
        s.median("p90_us"),
        s.median("p99_us")
    )
}

fn report(z: &Sizes, r: &Results) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut s = String::new();
    s.push_str(&format!(
        "{SECTION_START}\n## eBPF (connect4 steering, sock_ops, sk_msg)\n\n\
         Measured by `cargo xtask bench-ebpf` (method in xtask/src/bench.rs) on kernel {}, \
         {cpus} vCPUs shared with other builds, loopback only, kernel debug logging off. \
         {} rounds; in each round the baseline and the attached runs alternate, and every \
         cell is the median over rounds of that run's statistic. The client loops are \
         syscall-bound, so the xtask build profile barely matters. Means and p99 carry the \
         scheduling noise of the shared machine; compare p50s.\n\n",
        kernel.trim(),
        z.rounds
    ));
    s.push_str(&format!(
        "### connect() latency ({} sequential connect+close per round, µs)\n\n\
         | path | mean | p50 | p90 | p99 |\n|---|---|---|---|---|\n",
        z.connects
    ));
    s.push_str(&lat_row("no programs, direct", &r.connect_base));
    s.push_str(&lat_row(
        "steered (virtual address → gateway)",
        &r.connect_steer,
    ));
    s.push_str(&lat_row(
        "programs attached, address not steered",
        &r.connect_miss,
    ));
    s.push_str(&format!(
        "\n### Round trip, 64-byte ping-pong on one connection ({} per round, µs)\n\n\
         | path | mean | p50 | p90 | p99 |\n|---|---|---|---|---|\n",
        z.round_trips
    ));
    s.push_str(&lat_row("no programs, plain TCP", &r.rtt_base));
    s.push_str(&lat_row("steered, plain TCP", &r.rtt_steer));
    s.push_str(&lat_row(
        "steered + sk_msg redirect (accelerate)",
        &r.rtt_accel,
    ));
    s.push_str(&format!(
        "\n{} sk_msg redirects over the accelerated runs.\n",
        r.redirects
    ));
    let n = z.churn as f64;
    let rate = |x: &Series| n / x.median("wall_s");
    let cpu = |x: &Series| x.median("cpu_s") * 1e6 / n;
    let gw = |x: &Series| median(x.gw_cpu.clone()) * 1e6 / n;
    s.push_str(&format!(
        "\n### sock_ops / connect4 CPU at a high connection rate ({} connect+close per round, one client)\n\n\
         | | no programs | programs attached, steered |\n|---|---|---|\n\
         | connections/s | {:.0} | {:.0} |\n\
         | client process CPU per connection (µs) | {:.1} | {:.1} |\n\
         | gateway process CPU per connection (µs) | {:.1} | {:.1} |\n\n",
        z.churn,
        rate(&r.churn_base),
        rate(&r.churn_steer),
        cpu(&r.churn_base),
        cpu(&r.churn_steer),
        gw(&r.churn_base),
        gw(&r.churn_steer),
    ));
    s.push_str(
        "Kernel BPF accounting over the attached churn runs (`BPF_ENABLE_STATS`; both \
         sides of every connection are on this host, so sock_ops runs for the client socket and \
         for the gateway's accepted socket):\n\n\
         | program | runs | runs per connection | ns per run | ns per connection |\n\
         |---|---|---|---|---|\n",
    );
    let total = n * z.rounds as f64;
    for (name, runs, time) in &r.prog {
        if *runs == 0 {
            continue;
        }
        let ns = time.as_nanos() as f64;
        s.push_str(&format!(
            "| {name} | {runs} | {:.2} | {:.0} | {:.0} |\n",
            *runs as f64 / total,
            ns / *runs as f64,
            ns / total
        ));
    }
    s.push_str(&format!(
        "\n{} connects steered over the attached phases.\n\n\
         Reading: steering adds one LPM lookup and one map insert at connect() and one re-key \
         at ESTABLISHED; after that a steered connection is plain TCP, so its round trip is the \
         baseline's. sk_msg redirect hands bytes from socket to socket, skipping the TCP/IP \
         stack between a local app and the gateway; kernel TCP counters (RTT, bytes) of such \
         connections stop moving.\n\n\
         Caveat: connections/s is one client's wall clock and includes waits that are not CPU; \
         on this host it swung more than anything else (in our runs the no-program baseline \
         was slower in wall clock although it used less CPU per connection, which we could not \
         explain). The CPU rows and the kernel's own per-program accounting are the numbers to \
         use for the cost of sock_ops and connect4.\n\
         {SECTION_END}\n",
        r.steered
    ));
    s
}

/// Replaces the bench-ebpf section of `path` (or appends it).
fn write_section(path: &Path, md: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let new = match (old.find(SECTION_START), old.find(SECTION_END)) {
        (Some(a), Some(b)) if b > a => {
            format!(
                "{}{}{}",
                &old[..a],
                md.trim_end(),
                &old[b + SECTION_END.len()..]
            )
        }
        _ => format!("{}\n{}", old.trim_end(), md),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}
