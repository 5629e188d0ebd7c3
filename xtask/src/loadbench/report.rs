//! The benchmark's figures, their markdown rendering (method, tables, targets) and the
//! replacement of the gateway section in BENCHMARKS.md.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::celbench::CelRow;
use super::openloop::{Samples, percentile};
use super::procs::Mem;
use super::sse::EventDelays;
use super::viewer::Micro;
use super::wrk::WrkResult;
use super::{CHAT_BODY, Opts, PathKind};

pub const SECTION_START: &str = "<!-- bench-gateway:start -->";
pub const SECTION_END: &str = "<!-- bench-gateway:end -->";

/// Decimal megabytes (the unit of the targets) from KiB.
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// How a gateway's CPU share is written: % of one core (fixed rate) or cores (saturation).
#[derive(Clone, Copy)]
enum Share {
    Percent,
    Cores,
}

/// The gateway CPU cells of a row (share of the wall time, µs per request); dashes for the
/// direct path, which has no gateway.
fn gw_cpu_cells(
    kind: PathKind,
    cpu: Duration,
    wall: Duration,
    requests: f64,
    share: Share,
) -> (String, String) {
    if kind == PathKind::Direct {
        return ("–".into(), "–".into());
    }
    let of_wall = cpu.as_secs_f64() / wall.as_secs_f64();
    let share = match share {
        Share::Percent => format!("{:.1}", of_wall * 100.0),
        Share::Cores => format!("{of_wall:.2}"),
    };
    (share, format!("{:.1}", cpu.as_secs_f64() * 1e6 / requests))
}

/// `RSS / peak` in MB, or a dash when it was not sampled.
fn mem_cell(mem: Option<Mem>) -> String {
    mem.map_or("–".into(), |m| {
        format!("{:.1} / {:.1}", mb(m.rss_kib), mb(m.hwm_kib))
    })
}

fn ms(us: f64) -> String {
    if us.is_finite() {
        format!("{:.3}", us / 1e3)
    } else {
        "–".into()
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

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Wall time, CPU, memory and load of one path, summed over rounds.
#[derive(Default)]
pub struct Usage {
    pub wall: Duration,
    pub gw_cpu: Duration,
    pub up_cpu: Duration,
    pub mem: Option<Mem>,
    pub loads: Vec<f64>,
}

impl Usage {
    /// `cpu[0]` is the upstream's, `cpu[1]` (if any) the gateway's; the last memory sample wins.
    fn add(&mut self, wall: Duration, cpu: &[Duration], mem: Option<Mem>, load: f64) {
        self.wall += wall;
        self.up_cpu += cpu.first().copied().unwrap_or_default();
        self.gw_cpu += cpu.get(1).copied().unwrap_or_default();
        if mem.is_some() {
            self.mem = mem;
        }
        self.loads.push(load);
    }
}

/// Fixed-rate figures of one path, summed over rounds.
pub struct FixedRow {
    pub kind: PathKind,
    pub samples: Samples,
    pub usage: Usage,
}

impl FixedRow {
    pub fn new(kind: PathKind) -> Self {
        FixedRow {
            kind,
            samples: Samples::default(),
            usage: Usage::default(),
        }
    }

    /// `cpu[0]` is the upstream's, `cpu[1]` (if any) the gateway's.
    pub fn add(
        &mut self,
        s: Samples,
        wall: Duration,
        cpu: &[Duration],
        mem: Option<Mem>,
        load: f64,
    ) {
        self.samples.merge(s);
        self.usage.add(wall, cpu, mem, load);
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.samples.latency_us, q)
    }

    fn requests(&self) -> f64 {
        self.samples.latency_us.len() as f64 + self.samples.errors as f64
    }
}

/// Saturation figures of one path over rounds.
pub struct SatRow {
    pub kind: PathKind,
    pub runs: Vec<WrkResult>,
    pub usage: Usage,
}

impl SatRow {
    pub fn new(kind: PathKind) -> Self {
        SatRow {
            kind,
            runs: Vec::new(),
            usage: Usage::default(),
        }
    }

    pub fn add(
        &mut self,
        r: WrkResult,
        wall: Duration,
        cpu: &[Duration],
        mem: Option<Mem>,
        load: f64,
    ) {
        self.runs.push(r);
        self.usage.add(wall, cpu, mem, load);
    }

    fn rps(&self) -> f64 {
        median(self.runs.iter().map(|r| r.rps).collect())
    }

    fn requests(&self) -> f64 {
        self.runs.iter().map(|r| r.requests as f64).sum()
    }
}

pub struct SseRow {
    pub kind: PathKind,
    pub delays: EventDelays,
    pub wall: Duration,
    pub gw_cpu: Option<Duration>,
    pub load: f64,
}

pub struct StreamsRow {
    pub wanted: usize,
    pub opened: usize,
    pub took: Duration,
    pub before: Mem,
    pub at: Mem,
    pub upstream_at: Mem,
    pub after: Mem,
    pub hold_cpu: Duration,
    pub open_cpu: Duration,
    pub load: f64,
}

pub struct Report {
    opts: Opts,
    machine: Vec<(String, String)>,
    pub idle_rss: Vec<(&'static str, Mem)>,
    pub after_load_rss: Vec<(&'static str, Mem)>,
    pub fixed: Vec<FixedRow>,
    /// Paired CPU comparisons: the A/A control first, then gw-plain and gw-routed.
    pub paired: Vec<super::paired::Pair>,
    pub sat: Vec<SatRow>,
    pub sse: Vec<SseRow>,
    pub streams: Option<StreamsRow>,
    pub spans_dropped: f64,
    pub traced_requests: f64,
    pub rotel_cpu: Option<Duration>,
    pub viewer: Option<Micro>,
    pub guard: Option<super::guardbench::GuardMicro>,
    pub spend: Option<super::spendbench::SpendMicro>,
    pub cel: Vec<CelRow>,
    load_start: f64,
    load_end: f64,
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Report {
    pub fn new(opts: &Opts, root: &Path) -> Report {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                })
            })
            .unwrap_or_default();
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let machine = vec![
            (
                "date (UTC)".into(),
                cmd_out("date", &["-u", "+%Y-%m-%d %H:%M"]),
            ),
            ("commit".into(), commit),
            ("CPU".into(), format!("{} × {cpu}", cmd_out("nproc", &[]))),
            ("kernel".into(), cmd_out("uname", &["-r"])),
            ("rustc".into(), cmd_out("rustc", &["--version"])),
            (
                "wrk".into(),
                cmd_out("sh", &["-c", "wrk -v 2>&1 | head -1"]),
            ),
        ];
        Report {
            opts: opts.clone(),
            machine,
            idle_rss: Vec::new(),
            after_load_rss: Vec::new(),
            fixed: Vec::new(),
            paired: Vec::new(),
            sat: Vec::new(),
            sse: Vec::new(),
            streams: None,
            spans_dropped: f64::NAN,
            traced_requests: f64::NAN,
            rotel_cpu: None,
            viewer: None,
            guard: None,
            spend: None,
            cel: Vec::new(),
            load_start: super::procs::loadavg(),
            load_end: f64::NAN,
        }
    }

    pub fn finish(&mut self) {
        self.load_end = super::procs::loadavg();
    }

    fn fixed_of(&self, k: PathKind) -> Option<&FixedRow> {
        self.fixed.iter().find(|r| r.kind == k)
    }

    fn sat_of(&self, k: PathKind) -> Option<&SatRow> {
        self.sat.iter().find(|r| r.kind == k)
    }

    fn sse_of(&self, k: PathKind) -> Option<&SseRow> {
        self.sse.iter().find(|r| r.kind == k)
    }

    /// (target, measured, met) rows.
    fn targets(&self) -> Vec<(String, String, bool)> {
        let mut t = Vec::new();
        if let (Some(d), Some(g)) = (
            self.fixed_of(PathKind::Direct),
            self.fixed_of(PathKind::Traced),
        ) {
            let a50 = g.p(50.0) - d.p(50.0);
            let a99 = g.p(99.0) - d.p(99.0);
            t.push((
                format!(
                    "added latency p50 ≤ 0.15 ms at {} req/s, tracing on",
                    self.opts.rate
                ),
                format!("{} ms", ms(a50)),
                a50 <= 150.0,
            ));
            t.push((
                format!(
                    "added latency p99 ≤ 0.5 ms at {} req/s, tracing on",
                    self.opts.rate
                ),
                format!("{} ms", ms(a99)),
                a99 <= 500.0,
            ));
        }
        if let (Some(p), Some(tr)) = (
            self.sat_of(PathKind::Gateway),
            self.sat_of(PathKind::Traced),
        ) {
            let cost = 1.0 - tr.rps() / p.rps();
            let cpu_p = p.usage.gw_cpu.as_secs_f64() / p.requests().max(1.0);
            let cpu_t = tr.usage.gw_cpu.as_secs_f64() / tr.requests().max(1.0);
            t.push((
                "tracing costs ≤ 5% of throughput".into(),
                format!(
                    "{:.1}% fewer req/s; {:+.1}% gateway CPU per request",
                    cost * 100.0,
                    (cpu_t / cpu_p - 1.0) * 100.0
                ),
                cost <= 0.05,
            ));
        }
        if let (Some(p), Some(r)) = (
            self.fixed_of(PathKind::Gateway),
            self.fixed_of(PathKind::Routed),
        ) {
            let per =
                |row: &FixedRow| row.usage.gw_cpu.as_secs_f64() * 1e6 / row.requests().max(1.0);
            let added = per(r) - per(p);
            // The paired comparison resolves what the sequential rows cannot.
            let (figure, ok) = match super::paired::virtual_model_target(&self.paired) {
                Some((f, ok)) => (format!("{f}; sequential rows {added:+.1} µs"), ok),
                None => (
                    format!("{added:+.1} µs ({:.1} against {:.1})", per(r), per(p)),
                    added <= 2.0,
                ),
            };
            t.push((
                format!(
                    "a virtual model over two healthy targets adds ≤ 2 µs of gateway CPU per request ({} req/s)",
                    self.opts.rate
                ),
                figure,
                ok,
            ));
        }
        if let Some(worst) = self
            .idle_rss
            .iter()
            .map(|(_, m)| mb(m.rss_kib))
            .reduce(f64::max)
        {
            t.push((
                "idle RSS ≤ 20 MB".into(),
                format!("{worst:.1} MB (largest of the fresh gateways)"),
                worst <= 20.0,
            ));
        }
        for k in [PathKind::Gateway, PathKind::Traced] {
            if let (Some(d), Some(g)) = (self.sse_of(PathKind::Direct), self.sse_of(k)) {
                let a99 = percentile(&g.delays.rest_us, 99.0) - percentile(&d.delays.rest_us, 99.0);
                t.push((
                    format!(
                        "each SSE event forwarded within 0.1 ms (p99), {}",
                        k.label()
                    ),
                    format!("{} ms added at p99", ms(a99)),
                    a99 <= 100.0,
                ));
            }
        }
        if let Some(v) = &self.viewer {
            t.push((
                "recording into the viewer's ring ≤ 3 µs of gateway CPU per request".into(),
                format!(
                    "{:.2} µs (in process, ring of 1,000 full)",
                    v.record_ns / 1e3
                ),
                v.record_ns <= 3000.0,
            ));
        }
        if let Some(g) = &self.guard {
            t.push((
                "prompt guards (agentgateway's example set + PII mask) ≤ 20 µs of gateway CPU on a 4 KB prompt".into(),
                format!(
                    "{:.1} µs clean, {:.1} µs with 3 items masked (in process)",
                    g.request_clean_us, g.request_masked_us
                ),
                g.request_clean_us.max(g.request_masked_us) <= 20.0,
            ));
            t.push((
                "stream guard ≤ 50 µs added to a streamed event's p50".into(),
                format!(
                    "{:.2} µs p50, {:.2} µs p99 per event (in process)",
                    g.event_p50_us, g.event_p99_us
                ),
                g.event_p50_us <= 50.0,
            ));
        }
        if let Some(s) = &self.streams {
            t.push((
                format!("{} idle streams under 200 MB", s.wanted),
                format!("{:.1} MB ({} open)", mb(s.at.rss_kib), s.opened),
                s.opened == s.wanted && mb(s.at.rss_kib) < 200.0,
            ));
        }
        t
    }

    pub fn markdown(&self) -> String {
        let o = &self.opts;
        let mut m = String::new();
        let mut line = |s: &str| {
            m.push_str(s);
            m.push('\n');
        };
        line("## Gateway data path (`cargo xtask bench`)");
        line("");
        line(
            "One command builds release binaries (`AYA_BUILD_SKIP=1`: the kernel programs are not needed, and `config.ebpf.mode` is `off`) and measures, in one run on loopback, the same OpenAI chat request sent **direct** to an upstream and **through the gateway**, with tracing off and with every request traced to a local OTLP receiver. Method in `xtask/src/loadbench.rs`.",
        );
        line("");
        line("| machine | |\n|---|---|");
        for (k, v) in &self.machine {
            line(&format!("| {k} | {v} |"));
        }
        line(&format!(
            "| load average (1 min) | {:.2} at start, {:.2} at end: other builds share these 2 cores, so every table carries the load it was measured under |",
            self.load_start, self.load_end
        ));
        line("");
        line(
            "**Setup.** Upstream: `fast-upstream` (tests/src/bin/fast-upstream.rs): hyper, one thread, a fixed 420-byte `chat.completion` body or an SSE stream. Gateways: the release `gateway` binary, 2 proxy workers (one single-threaded runtime per core, the default), access log on (text, to /dev/null), one `ai` route with the OpenAI provider and `backendAuth`, so each request is parsed as JSON and observed (model, tokens), sent upstream with the key injected (the body as the client sent it, since no policy changes it), and its response parsed for usage. Traced gateway: `tracing: {randomSampling: true}` (every request sampled, default attributes) exported by OTLP gRPC to `rotel-agent --exporter blackhole` (PyPI `rotel`). Request body:",
        );
        line(&format!("`{CHAT_BODY}`"));
        line("");
        line(&format!(
            "**Fixed rate ({} req/s).** Open-loop generator in xtask (`loadbench/openloop.rs`): request *i* is due at *start + i/rate*; a pacer thread with 1 ns timer slack wakes at each due time and a one-thread tokio/hyper client sends it on a pooled keep-alive connection. Latency runs from the due time to the last body byte, so stalls are charged to every request they delayed (no coordinated omission). Percentiles: nearest rank over all samples of {} rounds × {} s (1 s warm-up per run discarded); the paths alternate within each round. *Added* = gateway percentile − direct percentile. Gateway CPU: `utime+stime` delta of `/proc/<pid>/stat` over the run, as % of one core and per request; RSS and peak (VmRSS / VmHWM from `/proc/<pid>/status`) after the run.",
            o.rate, o.rounds, o.fixed_secs
        ));
        line("");
        line(
            "| path | achieved req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors | gateway CPU % of a core | gateway CPU µs/req | upstream CPU µs/req | gateway RSS / peak MB | load avg |",
        );
        line("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let direct = self.fixed_of(PathKind::Direct);
        for r in &self.fixed {
            let (a50, a99) = match (direct, r.kind) {
                (Some(d), k) if k != PathKind::Direct => {
                    (ms(r.p(50.0) - d.p(50.0)), ms(r.p(99.0) - d.p(99.0)))
                }
                _ => ("–".into(), "–".into()),
            };
            let req = r.requests().max(1.0);
            let (cpu, cpu_req) =
                gw_cpu_cells(r.kind, r.usage.gw_cpu, r.usage.wall, req, Share::Percent);
            line(&format!(
                "| {} | {:.0} | {} | {} | {a50} | {a99} | {} | {cpu} | {cpu_req} | {:.1} | {} | {:.2} |",
                r.kind.label(),
                r.samples.achieved_rps,
                ms(r.p(50.0)),
                ms(r.p(99.0)),
                r.samples.errors,
                r.usage.up_cpu.as_secs_f64() * 1e6 / req,
                mem_cell(r.usage.mem),
                mean(&r.usage.loads),
            ));
        }
        line("");
        let paired = super::paired::markdown(&self.paired);
        if let Some(text) = paired.strip_suffix('\n') {
            line(text);
        }
        line(&format!(
            "**Saturation.** `wrk -t2 -c{} -d{}s --latency` with a Lua script that POSTs the body above (closed loop: as fast as the 2 shared cores allow, with wrk, the upstream and the gateway competing for them). Cells are medians over {} rounds; CPU per request is total gateway CPU over total requests.",
            o.wrk_connections, o.sat_secs, o.rounds
        ));
        line("");
        line(
            "| path | req/s | p50 ms | p99 ms | errors | gateway CPU (cores) | gateway CPU µs/req | upstream CPU µs/req | gateway RSS / peak MB | load avg |",
        );
        line("|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.sat {
            let req = r.requests().max(1.0);
            let (cpu, cpu_req) =
                gw_cpu_cells(r.kind, r.usage.gw_cpu, r.usage.wall, req, Share::Cores);
            line(&format!(
                "| {} | {:.0} | {} | {} | {} | {cpu} | {cpu_req} | {:.1} | {} | {:.2} |",
                r.kind.label(),
                r.rps(),
                ms(median(r.runs.iter().map(|x| x.p50_us).collect())),
                ms(median(r.runs.iter().map(|x| x.p99_us).collect())),
                r.runs.iter().map(|x| x.errors).sum::<u64>(),
                r.usage.up_cpu.as_secs_f64() * 1e6 / req,
                mem_cell(r.usage.mem),
                mean(&r.usage.loads),
            ));
        }
        line("");
        line(&format!(
            "Spans: the traced gateway counted {:.0} requests and {:.0} dropped spans (`agentgateway_tracing_spans_dropped_total`); rotel used {} of CPU over the whole run.",
            self.traced_requests,
            self.spans_dropped,
            self.rotel_cpu
                .map_or("–".into(), |c| format!("{:.1} s", c.as_secs_f64()))
        ));
        line("");
        line(&format!(
            "**Streaming.** {} concurrent streams, each a fresh connection and a `stream: true` request; the upstream sends {} content events {} ms apart, each stamped with its send time (`x_sent_ns`, wall clock, same host), then usage and `[DONE]`. The client timestamps each event's arrival; one-way delay = arrival − stamp. Runs of {} s per path. *First* is each stream's first event (it rides with the response headers); *later* events are the per-event forwarding cost; added = gateway − direct at the same percentile.",
            o.sse_concurrency,
            o.sse_chunks,
            o.sse_interval_us as f64 / 1e3,
            o.sse_secs
        ));
        line("");
        line(
            "| path | streams | events | later events p50 ms | later p99 ms | added p50 ms | added p99 ms | first event p50 ms | first p99 ms | errors | gateway CPU µs/event | load avg |",
        );
        line("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let sd = self.sse_of(PathKind::Direct);
        for r in &self.sse {
            let d = &r.delays;
            let (a50, a99) = match (sd, r.kind) {
                (Some(s), k) if k != PathKind::Direct => (
                    ms(percentile(&d.rest_us, 50.0) - percentile(&s.delays.rest_us, 50.0)),
                    ms(percentile(&d.rest_us, 99.0) - percentile(&s.delays.rest_us, 99.0)),
                ),
                _ => ("–".into(), "–".into()),
            };
            let events = d.rest_us.len() + d.first_us.len();
            line(&format!(
                "| {} | {} | {} | {} | {} | {a50} | {a99} | {} | {} | {} | {} | {:.2} |",
                r.kind.label(),
                d.streams,
                events,
                ms(percentile(&d.rest_us, 50.0)),
                ms(percentile(&d.rest_us, 99.0)),
                ms(percentile(&d.first_us, 50.0)),
                ms(percentile(&d.first_us, 99.0)),
                d.errors,
                r.gw_cpu.map_or("–".into(), |c| format!(
                    "{:.1}",
                    c.as_secs_f64() * 1e6 / events.max(1) as f64
                )),
                r.load,
            ));
        }
        line("");
        line(
            "**Memory.** Idle: VmRSS of each gateway 1 s after it reported ready, before any traffic. Idle streams: a fresh gateway (`gw-streams`, tracing off, `limits.maxConnections: 30000`, open-file limit raised by the bench to fit) carries N streams, each its own client connection and its own upstream connection; the upstream sends one event and then stays silent (the next is 10 minutes away), so each stream is open and idle on both sides. RSS is sampled 1 s after the last stream got its first event, then CPU over a 5 s hold.",
        );
        line("");
        line("| measure | value |\n|---|---|");
        for (n, mem) in &self.idle_rss {
            line(&format!(
                "| idle RSS, {n} (fresh) | {:.1} MB |",
                mb(mem.rss_kib)
            ));
        }
        for (n, mem) in &self.after_load_rss {
            line(&format!(
                "| RSS / peak after all load runs, {n} | {:.1} / {:.1} MB |",
                mb(mem.rss_kib),
                mb(mem.hwm_kib)
            ));
        }
        if let Some(s) = &self.streams {
            let per = (s.at.rss_kib.saturating_sub(s.before.rss_kib)) as f64 * 1024.0
                / s.opened.max(1) as f64;
            line(&format!(
                "| idle streams open | {} of {} (in {:.1} s) |",
                s.opened,
                s.wanted,
                s.took.as_secs_f64()
            ));
            line(&format!(
                "| gateway RSS before / with streams open / after closing | {:.1} / {:.1} / {:.1} MB |",
                mb(s.before.rss_kib),
                mb(s.at.rss_kib),
                mb(s.after.rss_kib)
            ));
            line(&format!(
                "| gateway peak (VmHWM) | {:.1} MB |",
                mb(s.at.hwm_kib)
            ));
            line(&format!(
                "| per open stream (client + upstream connection) | {:.1} KiB |",
                per / 1024.0
            ));
            line(&format!(
                "| gateway CPU while {} streams sit idle (5 s) | {:.0} ms |",
                s.opened,
                s.hold_cpu.as_secs_f64() * 1e3
            ));
            line(&format!(
                "| gateway CPU to open them | {:.2} s ({:.0} µs per stream) |",
                s.open_cpu.as_secs_f64(),
                s.open_cpu.as_secs_f64() * 1e6 / s.opened.max(1) as f64
            ));
            line(&format!(
                "| upstream RSS with streams open | {:.1} MB |",
                mb(s.upstream_at.rss_kib)
            ));
            line(&format!("| load average | {:.2} |", s.load));
        }
        self.cel_section(&mut line);
        self.viewer_section(&mut line);
        self.guard_section(&mut line);
        self.spend_section(&mut line);
        line("");
        line("**Targets.**");
        line("");
        line("| target | measured | met |\n|---|---|---|");
        for (t, v, ok) in self.targets() {
            line(&format!(
                "| {t} | {v} | {} |",
                if ok { "yes" } else { "**no**" }
            ));
        }
        line("");
        line(&format!(
            "Reproduce: `cargo xtask bench` (prints this section; `--write BENCHMARKS.md` replaces it here; raw figures in `target/loadbench/results.json`). Options: `--rate {}`, `--duration {}`, `--rounds {}`, `--connections {}`, `--streams {}`, `--quick`, `--with-litellm`.",
            o.rate, o.fixed_secs, o.rounds, o.wrk_connections, o.idle_streams
        ));
        m
    }

    /// Per request, gateway CPU in µs of a fixed-rate and a saturation row.
    fn cpu_per_req(&self, k: PathKind) -> (f64, f64) {
        let f = self.fixed_of(k).map_or(f64::NAN, |r| {
            r.usage.gw_cpu.as_secs_f64() * 1e6 / r.requests().max(1.0)
        });
        let s = self.sat_of(k).map_or(f64::NAN, |r| {
            r.usage.gw_cpu.as_secs_f64() * 1e6 / r.requests().max(1.0)
        });
        (f, s)
    }

    /// CEL evaluation per request for the seeds' `fields` blocks.
    fn cel_section(&self, line: &mut impl FnMut(&str)) {
        if self.cel.is_empty() {
            return;
        }
        line("");
        line(
            "**CEL.** The seeds' `fields.add` blocks, compiled once, evaluated as the telemetry thread does per request (one `Executor` with the variables the block reads, then every field into attributes) against a chat request record with a two-message prompt and one completion; 20,000 requests per block on one thread, in process (`loadbench/celbench.rs`; `target/release/xtask __celbench` runs it alone).",
        );
        line("");
        line("| block | fields → attributes | µs per request | compile µs |\n|---|---|---|---|");
        for r in &self.cel {
            line(&format!(
                "| {} | {} → {} | {:.2} | {:.0} |",
                r.block,
                r.fields,
                r.attrs,
                r.per_request.as_secs_f64() * 1e6,
                r.compile.as_secs_f64() * 1e6
            ));
        }
    }

    /// What prompt guards cost per request and per stream event.
    fn guard_section(&self, line: &mut impl FnMut(&str)) {
        let Some(g) = &self.guard else { return };
        line("");
        line(
            "**Prompt guards.** In process (`loadbench/guardbench.rs`; `target/release/xtask __guardbench` runs it alone). Request: a chat body with a 600 B system prompt and a user message (about 4 KB in all) through the request guards: agentgateway's example set (two `reject` regex guards: custom patterns `SSN` / `Social Security`, builtin `email`) plus a `mask` guard over `ssn`, `creditCard`, `phoneNumber`, `caSin`, `promptInjection`; 4,000 requests each way. Stream: a 4 KB completion as OpenAI chat chunks of 4 characters through the SSE transform with and without a response `mask` guard over the five PII builtins, per-event timings over 20 interleaved rounds.",
        );
        line("");
        line("| case | measured |\n|---|---|");
        line(&format!(
            "| request guards, {} B body, nothing matches | {:.2} µs |",
            g.prompt_bytes, g.request_clean_us
        ));
        line(&format!(
            "| request guards, 3 items masked, body re-serialised | {:.2} µs ({:.2} µs in the guards) |",
            g.request_masked_us, g.request_masked_guards_us
        ));
        line(&format!(
            "| stream guard, added per event ({} events) | p50 {:.2} µs, p99 {:.2} µs, mean {:.2} µs |",
            g.events, g.event_p50_us, g.event_p99_us, g.event_mean_us
        ));
        line(&format!(
            "| text held back (could still become a match) | {:.0}% of events, at most {} B at once |",
            g.held_events * 100.0,
            g.max_held_bytes
        ));
    }

    /// What cost, limits and budgets add per request.
    fn spend_section(&self, line: &mut impl FnMut(&str)) {
        let Some(s) = &self.spend else { return };
        line("");
        line(
            "**Cost, limits and budgets.** In process, one thread (`loadbench/spendbench.rs`; `target/release/xtask __spendbench` runs it alone), 200,000 requests each: pricing a finished request (1,200 input and 300 output tokens) against an inline catalog; a route's `localRateLimit` with a request bucket and a token bucket (charged with the estimate, settled with the usage), plain and keyed by `apiKey.id` over 1,000 callers; a per-process token budget checked and settled. Redis: a real `redis-server` on loopback; one `globalRateLimit` charge of a request's request and token buckets (one script call, as the proxy's LLM phase sends it) against a bare `PING` from the same client thread, 4,000 each, then the same with a Redis-backed budget pipelined with it; script calls counted by Redis (`INFO commandstats`).",
        );
        line("");
        line("| case | measured |\n|---|---|");
        line(&format!(
            "| cost (price one request) | {:.2} µs |",
            s.cost_us
        ));
        line(&format!(
            "| localRateLimit, request + token bucket, charged and settled | {:.2} µs |",
            s.local_limit_us
        ));
        line(&format!(
            "| **cost + local limit per request** (target ≤ 5 µs) | **{:.2} µs** |",
            s.cost_us + s.local_limit_us
        ));
        line(&format!(
            "| the same limits keyed by `apiKey.id` (1,000 callers) | {:.2} µs |",
            s.keyed_limit_us
        ));
        line(&format!(
            "| per-process token budget, checked and settled | {:.2} µs |",
            s.budget_us
        ));
        match &s.redis {
            Some(r) => {
                line(&format!(
                    "| globalRateLimit charge vs a bare PING, one client | {:.1} µs vs {:.1} µs |",
                    r.charge_us, r.ping_us
                ));
                line(&format!(
                    "| **Redis round trips per request** (target ≤ 1 on the request path) | **{:.2}** script call on the path (request and token buckets together), {:.2} after the response (token settlement, off the path) |",
                    r.calls_per_request, r.settle_calls_per_request
                ));
                line(&format!(
                    "| with a Redis-backed budget too, both scripts in one pipelined batch (one round trip) | {:.1} µs; {:.2} script calls per request |",
                    r.with_budget_us, r.with_budget_calls
                ));
            }
            None => line("| Redis | not measured (no `redis-server`) |"),
        }
    }

    /// What the built-in viewer costs: its ring on the request path and in memory, and a page
    /// left open during load.
    fn viewer_section(&self, line: &mut impl FnMut(&str)) {
        let Some(v) = &self.viewer else { return };
        line("");
        line(
            "**Viewer (`/ui`).** `gw-plain` keeps the default ring of 1,000 requests; `gw-noring` is the same gateway with `config.ui.recentRequests: 0`; *`/ui` open* is `gw-plain` while a client polls its API as an open page does (the newest 200 rows every second, the overview every 2 s). In process (`loadbench/viewer.rs`): 200,000 bench-shaped records, built on another thread, moved into a full ring of 1,000 (each also frees the evicted one); memory per kept record from the RSS growth while a ring of 10,000 fills.",
        );
        line("");
        line("| measure | value |\n|---|---|");
        line(&format!(
            "| recording one request (ring full), in process | {:.2} µs |",
            v.record_ns / 1e3
        ));
        let (pf, ps) = self.cpu_per_req(PathKind::Gateway);
        let (nf, ns) = self.cpu_per_req(PathKind::NoRing);
        line(&format!(
            "| gateway CPU µs/req, ring 1,000 vs ring 0, fixed rate | {pf:.1} vs {nf:.1} ({:+.1}) |",
            pf - nf
        ));
        line(&format!(
            "| gateway CPU µs/req, ring 1,000 vs ring 0, saturation | {ps:.1} vs {ns:.1} ({:+.1}) |",
            ps - ns
        ));
        if let (Some(p), Some(n), Some(u)) = (
            self.sat_of(PathKind::Gateway),
            self.sat_of(PathKind::NoRing),
            self.sat_of(PathKind::UiOpen),
        ) {
            line(&format!(
                "| saturation req/s: ring 1,000 / ring 0 / `/ui` open | {:.0} / {:.0} / {:.0} |",
                p.rps(),
                n.rps(),
                u.rps()
            ));
        }
        if let (Some(p), Some(u)) = (
            self.fixed_of(PathKind::Gateway),
            self.fixed_of(PathKind::UiOpen),
        ) {
            line(&format!(
                "| {} req/s p50 / p99, `/ui` closed vs open | {} / {} ms vs {} / {} ms |",
                self.opts.rate,
                ms(p.p(50.0)),
                ms(p.p(99.0)),
                ms(u.p(50.0)),
                ms(u.p(99.0))
            ));
        }
        line(&format!(
            "| memory per kept request: RSS growth / the ring's estimate | {:.0} / {:.0} bytes (a full default ring ≈ {:.1} MB) |",
            v.rss_bytes_per_record,
            v.approx_bytes_per_record,
            v.rss_bytes_per_record * 1000.0 / 1e6
        ));
        let rss = |n: &str| {
            self.after_load_rss
                .iter()
                .find(|(k, _)| *k == n)
                .map_or(f64::NAN, |(_, m)| mb(m.rss_kib))
        };
        line(&format!(
            "| RSS after all load runs, ring 1,000 vs ring 0 | {:.1} vs {:.1} MB |",
            rss("gw-plain"),
            rss("gw-noring")
        ));
        line(&format!(
            "| admin thread: formatting one poll (200 rows) | {:.0} µs |",
            v.list_200_us
        ));
    }

    /// Raw figures for `target/loadbench/results.json`.
    pub fn json(&self) -> Value {
        let fixed: Vec<Value> = self
            .fixed
            .iter()
            .map(|r| {
                json!({
                    "path": r.kind.label(), "rps": r.samples.achieved_rps,
                    "p50_us": r.p(50.0), "p90_us": r.p(90.0), "p99_us": r.p(99.0), "p999_us": r.p(99.9),
                    "service_p50_us": percentile(&r.samples.service_us, 50.0),
                    "service_p99_us": percentile(&r.samples.service_us, 99.0),
                    "samples": r.samples.latency_us.len(), "errors": r.samples.errors,
                    "gateway_cpu_s": r.usage.gw_cpu.as_secs_f64(), "upstream_cpu_s": r.usage.up_cpu.as_secs_f64(),
                    "wall_s": r.usage.wall.as_secs_f64(), "loads": r.usage.loads,
                })
            })
            .collect();
        let sat: Vec<Value> = self
            .sat
            .iter()
            .map(|r| {
                json!({
                    "path": r.kind.label(),
                    "runs": r.runs.iter().map(|x| json!({"rps": x.rps, "p50_us": x.p50_us, "p99_us": x.p99_us, "requests": x.requests, "errors": x.errors})).collect::<Vec<_>>(),
                    "gateway_cpu_s": r.usage.gw_cpu.as_secs_f64(), "wall_s": r.usage.wall.as_secs_f64(), "loads": r.usage.loads,
                })
            })
            .collect();
        let sse: Vec<Value> = self
            .sse
            .iter()
            .map(|r| {
                json!({
                    "path": r.kind.label(), "streams": r.delays.streams,
                    "rest_p50_us": percentile(&r.delays.rest_us, 50.0), "rest_p99_us": percentile(&r.delays.rest_us, 99.0),
                    "first_p50_us": percentile(&r.delays.first_us, 50.0), "first_p99_us": percentile(&r.delays.first_us, 99.0),
                    "errors": r.delays.errors, "wall_s": r.wall.as_secs_f64(),
                })
            })
            .collect();
        json!({
            "machine": self.machine.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "fixed": fixed, "saturation": sat, "sse": sse,
            "idle_rss_kib": self.idle_rss.iter().map(|(n, m)| json!({"name": n, "rss": m.rss_kib})).collect::<Vec<_>>(),
            "streams": self.streams.as_ref().map(|s| json!({"opened": s.opened, "before_kib": s.before.rss_kib, "at_kib": s.at.rss_kib, "after_kib": s.after.rss_kib, "hwm_kib": s.at.hwm_kib})),
            "cel": self.cel.iter().map(|r| json!({
                "block": r.block, "fields": r.fields, "attributes": r.attrs,
                "per_request_us": r.per_request.as_secs_f64() * 1e6, "compile_us": r.compile.as_secs_f64() * 1e6,
            })).collect::<Vec<_>>(),
            "guard": self.guard.as_ref().map(|g| json!({
                "prompt_bytes": g.prompt_bytes,
                "request_clean_us": g.request_clean_us,
                "request_masked_us": g.request_masked_us,
                "request_masked_guards_us": g.request_masked_guards_us,
                "events": g.events,
                "event_p50_us": g.event_p50_us,
                "event_p99_us": g.event_p99_us,
                "event_mean_us": g.event_mean_us,
                "held_events": g.held_events,
                "max_held_bytes": g.max_held_bytes,
            })),
            "spend": self.spend.as_ref().map(|s| json!({
                "cost_us": s.cost_us, "local_limit_us": s.local_limit_us,
                "keyed_limit_us": s.keyed_limit_us, "budget_us": s.budget_us,
                "redis": s.redis.as_ref().map(|r| json!({
                    "charge_us": r.charge_us, "ping_us": r.ping_us,
                    "calls_per_request": r.calls_per_request,
                    "settle_calls_per_request": r.settle_calls_per_request,
                    "with_budget_us": r.with_budget_us, "with_budget_calls": r.with_budget_calls,
                })),
            })),
            "viewer": self.viewer.as_ref().map(|v| json!({
                "record_ns": v.record_ns, "rss_bytes_per_record": v.rss_bytes_per_record,
                "approx_bytes_per_record": v.approx_bytes_per_record, "list_200_us": v.list_200_us,
            })),
            "targets": self.targets().into_iter().map(|(t, v, ok)| json!({"target": t, "measured": v, "met": ok})).collect::<Vec<_>>(),
        })
    }
}

/// Replaces the text between the gateway markers in `path`, or inserts the marked section
/// after the title when the file has none; everything else in the file is kept.
pub fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(path, splice(&old, section))
        .with_context(|| format!("writing {}", path.display()))
}

fn splice(old: &str, section: &str) -> String {
    let block = format!(
        "{SECTION_START}\n{}{SECTION_END}\n",
        section.trim_end().to_owned() + "\n"
    );
    if let (Some(a), Some(b)) = (old.find(SECTION_START), old.find(SECTION_END))
        && a < b
    {
        let rest = &old[b + SECTION_END.len()..];
        return format!(
            "{}{block}{}",
            &old[..a],
            rest.strip_prefix('\n').unwrap_or(rest)
        );
    }
    // After the first line (the title), before everything else.
    match old.split_once('\n') {
        Some((title, rest)) if title.starts_with("# ") => format!("{title}\n{block}{rest}"),
        _ => format!("{block}{old}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_inserts_after_title_then_replaces() {
        let ebpf = "<!-- bench-ebpf:start -->\nE\n<!-- bench-ebpf:end -->\n";
        let old = format!("# Benchmarks\n{ebpf}");
        let once = splice(&old, "G1\n");
        assert_eq!(
            once,
            format!("# Benchmarks\n{SECTION_START}\nG1\n{SECTION_END}\n{ebpf}")
        );
        let twice = splice(&once, "G2");
        assert_eq!(
            twice,
            format!("# Benchmarks\n{SECTION_START}\nG2\n{SECTION_END}\n{ebpf}")
        );
        // Text after the section (hand-written analysis) survives a rewrite.
        let with_notes = once.replace(
            &format!("{SECTION_END}\n"),
            &format!("{SECTION_END}\nnotes\n"),
        );
        assert!(splice(&with_notes, "G3").contains(&format!("G3\n{SECTION_END}\nnotes\n{ebpf}")));
    }

    #[test]
    fn units() {
        assert_eq!(ms(1500.0), "1.500");
        assert_eq!(ms(f64::NAN), "–");
        assert_eq!(mb(1_000_000), 1024.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(median(vec![]).is_nan());
    }
}
