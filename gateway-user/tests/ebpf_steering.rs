//! eBPF integration tests: load and attach the real kernel programs, steer a client in a test
//! cgroup into a local "gateway" listener, recover the original destination, read sock_ops
//! flow records, check acceleration and that nothing stays attached after drop.
//!
//! Runs as root on a kernel with BPF (CI does) and FAILS when the programs do not load. Only a
//! non-root run may skip, and only with `GATEWAY_EBPF_TESTS_ALLOW_SKIP=1`.
//!
//! cgroup v2 moves whole processes, so clients are separate processes: this binary re-execs
//! itself with `EBPF_TEST_ROLE` set, and the child writes its pid into its cgroup's
//! `cgroup.procs` before any network I/O (harness = false, see Cargo.toml).

mod ebpf_support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::time::Duration;

use ebpf_support::{Cgroups, TestResult, bpftool_cgroup_progs, run_main, spawn_client};
use gateway::config::ebpf::{RawEbpf, RawEbpfMode, RawSteer};
use gateway::ebpf::{self, Ebpf, EbpfStatus, socket_cookie};
use gateway_common::stats::Stat;
use gateway_common::{FLOW_F_ACCELERATED, FLOW_F_ACTIVE, FLOW_F_ESTABLISHED, FLOW_F_PASSIVE};

fn main() -> std::process::ExitCode {
    run_main(
        &[
            ("steering_flows_and_cleanup", steering_flows_and_cleanup),
            ("gateway_inside_steered_tree", gateway_inside_steered_tree),
            ("accelerated_pair", accelerated_pair),
            ("fallback_when_unavailable", fallback_when_unavailable),
            ("kernel_logs_reach_tracing", kernel_logs_reach_tracing),
        ],
        &[("fallback", fallback_child), ("logs", logs_child)],
    )
}

/// What the fake gateway learned about one accepted connection.
#[derive(Debug)]
struct Accepted {
    peer: SocketAddr,
    orig: Option<SocketAddr>,
    /// `Ebpf::accepted` at accept time.
    at_accept: Option<ebpf::AcceptedFlow>,
    record: Option<gateway_common::FlowRecord>,
    lines: usize,
}

/// A fake gateway: answers each line with `gw orig=<original dst> line=<line>`, and reports
/// the original destination and the flow record of each connection when the client closes.
fn serve_gateway(
    listener: TcpListener,
    ebpf: Arc<Ebpf>,
    conns: usize,
) -> std::thread::JoinHandle<Vec<Accepted>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        for _ in 0..conns {
            let Ok((sock, peer)) = listener.accept() else {
                break;
            };
            let orig = ebpf.original_dst(peer);
            let at_accept = ebpf.accepted(sock.as_fd());
            sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut reader = BufReader::new(sock.try_clone().expect("clone"));
            let mut w = sock.try_clone().expect("clone");
            let mut lines = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let orig_s = orig.map(|o| o.to_string()).unwrap_or_else(|| "none".into());
                let _ = w.write_all(format!("gw orig={orig_s} line={}\n", line.trim()).as_bytes());
                lines += 1;
                line.clear();
            }
            let record = socket_cookie(sock.as_fd()).and_then(|c| ebpf.flow_record(c));
            out.push(Accepted {
                peer,
                orig,
                at_accept,
                record,
                lines,
            });
        }
        out
    })
}

/// A plain server at the virtual address: what an unsteered client reaches.
fn serve_direct(listener: TcpListener) {
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(sock.try_clone().expect("clone"));
                let mut w = sock;
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    let _ = w.write_all(format!("direct line={}\n", line.trim()).as_bytes());
                    line.clear();
                }
            });
        }
    });
}

fn raw(direct_port: u16, gw_port: u16, accelerate: bool, cgroup: &Cgroups) -> RawEbpf {
    RawEbpf {
        mode: RawEbpfMode::Required,
        cgroup: Some(cgroup.pods.clone()),
        steer: vec![
            RawSteer {
                address: format!("127.0.0.2:{direct_port}"),
                bind: gw_port,
            },
            RawSteer {
                address: format!("127.0.3.0/24:{direct_port}"),
                bind: gw_port,
            },
        ],
        node_address: vec![],
        accelerate,
    }
}

fn steering_flows_and_cleanup() -> TestResult {
    let cg = Cgroups::create("steer")?;
    cg.enter_gateway()?;
    let gw = TcpListener::bind("127.0.0.1:0")?;
    let gw_port = gw.local_addr()?.port();
    let direct = TcpListener::bind("127.0.0.2:0")?;
    let direct_port = direct.local_addr()?.port();
    serve_direct(direct);

    let registry = prometheus::Registry::new();
    let (ebpf, status) = ebpf::start(
        Some(&raw(direct_port, gw_port, false, &cg)),
        &[gw_port],
        &registry,
    )?;
    if status != EbpfStatus::Enabled {
        return Err(format!("status {status:?}").into());
    }
    let ebpf = ebpf.ok_or("no Ebpf handle")?;

    // Attached where we asked: the pods cgroup (connect4 + sock_ops) and the gateway's own.
    let progs = bpftool_cgroup_progs(&cg.pods)?;
    check(
        progs.iter().any(|p| p.contains("connect4"))
            && progs.iter().any(|p| p.contains("sock_ops")),
        format!("programs on pods cgroup: {progs:?}"),
    )?;
    let gw_progs = bpftool_cgroup_progs(&cg.gateway)?;
    check(
        gw_progs.iter().any(|p| p.contains("sock_ops")),
        format!("programs on gateway cgroup: {gw_progs:?}"),
    )?;

    let server = serve_gateway(gw, ebpf.clone(), 2);

    // 1. A client in the steered cgroup, exact ip:port rule.
    let out = spawn_client(&cg.app("app1")?, &format!("127.0.0.2:{direct_port}"), 3)?;
    check(
        out.lines
            .iter()
            .all(|l| l.starts_with(&format!("gw orig=127.0.0.2:{direct_port} "))),
        format!("steered client output: {out:?}"),
    )?;
    // 2. CIDR rule, an address where nothing listens.
    let out2 = spawn_client(&cg.app("app2")?, &format!("127.0.3.7:{direct_port}"), 1)?;
    check(
        out2.lines
            .first()
            .is_some_and(|l| l.starts_with(&format!("gw orig=127.0.3.7:{direct_port} "))),
        format!("cidr client output: {out2:?}"),
    )?;
    // 3. A process outside the attached cgroup goes direct.
    let out3 = spawn_client(&cg.outside, &format!("127.0.0.2:{direct_port}"), 1)?;
    check(
        out3.lines.first().is_some_and(|l| l.starts_with("direct ")),
        format!("outside client output: {out3:?}"),
    )?;

    let accepted = server.join().map_err(|_| "gateway thread panicked")?;
    check(accepted.len() == 2, format!("accepted {accepted:?}"))?;
    for a in &accepted {
        check(a.orig.is_some(), format!("original dst recovered: {a:?}"))?;
        let at_accept = a
            .at_accept
            .ok_or_else(|| format!("no record at accept: {a:?}"))?;
        check(
            at_accept.original_dst == a.orig,
            format!("accepted() and original_dst() disagree: {a:?}"),
        )?;
        check(
            at_accept.flow.srtt.is_some(),
            format!("no handshake RTT at accept: {a:?}"),
        )?;
        let r = a
            .record
            .ok_or_else(|| format!("no passive flow record for {a:?}"))?;
        check(
            r.flags & FLOW_F_PASSIVE != 0 && r.flags & FLOW_F_ESTABLISHED != 0,
            format!("passive flags {r:?}"),
        )?;
        check(r.established_ns > 0, format!("established time {r:?}"))?;
        check(r.srtt_us > 0, format!("srtt {r:?}"))?;
        check(
            r.bytes_received >= 7 * a.lines as u64 && r.bytes_acked > 0,
            format!("bytes {r:?}"),
        )?;
        check(
            r.remote_port == a.peer.port(),
            format!("4-tuple {r:?} vs {a:?}"),
        )?;
        // The client has closed: its original-destination entry went with it.
        check(
            ebpf.original_dst(a.peer).is_none(),
            format!("stale original dst after client close: {a:?}"),
        )?;
    }
    check(
        accepted.iter().any(|a| a.peer.port() == out.local_port),
        format!("peer of client 1 ({}) among {accepted:?}", out.local_port),
    )?;

    // 4. The gateway's own connection to the virtual address is not steered, and gets an
    //    active flow record with the kernel connect time.
    let mut up = TcpStream::connect(format!("127.0.0.2:{direct_port}"))?;
    up.set_read_timeout(Some(Duration::from_secs(5)))?;
    up.write_all(b"upstream\n")?;
    let mut line = String::new();
    BufReader::new(up.try_clone()?).read_line(&mut line)?;
    check(
        line.starts_with("direct "),
        format!("gateway's own connect was steered: {line:?}"),
    )?;
    let mut timing = None;
    for _ in 0..50 {
        timing = ebpf.flow(up.as_fd());
        if timing.is_some_and(|t| t.srtt.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let timing = timing.ok_or("no active flow record for the gateway's upstream socket")?;
    let cookie = socket_cookie(up.as_fd()).ok_or("SO_COOKIE")?;
    let rec = ebpf.flow_record(cookie).ok_or("record")?;
    check(
        rec.flags & FLOW_F_ACTIVE != 0,
        format!("active flags {rec:?}"),
    )?;
    check(
        timing
            .connect
            .is_some_and(|c| c > Duration::ZERO && c < Duration::from_secs(1)),
        format!("connect time {timing:?}"),
    )?;
    check(timing.srtt.is_some(), format!("srtt {timing:?}"))?;
    ebpf.record_upstream(&timing);

    // Counters and metrics.
    check(
        ebpf.stat(Stat::Steered) >= 2,
        format!("steered {}", ebpf.stat(Stat::Steered)),
    )?;
    check(ebpf.stat(Stat::OrigRekeyed) >= 2, "re-key not counted")?;
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather())?;
    for needle in [
        "agentgateway_ebpf_enabled{reason=\"enabled\"} 1",
        "agentgateway_upstream_tcp_connect_seconds_count 1",
        "agentgateway_upstream_tcp_retransmits_total 0",
        "agentgateway_ebpf_events_total{event=\"steered\"}",
    ] {
        check(
            text.contains(needle),
            format!("metrics lack {needle:?}:\n{text}"),
        )?;
    }

    // 5. Cleanup: dropping the handle detaches everything.
    drop(up);
    drop(registry);
    let attached = ebpf.attached_cgroups().to_vec();
    Arc::try_unwrap(ebpf).map_err(|_| "Ebpf still shared")?;
    for path in attached {
        let left = bpftool_cgroup_progs(&path)?;
        check(
            left.is_empty(),
            format!("still attached to {}: {left:?}", path.display()),
        )?;
    }
    // And the client is not steered any more.
    let out4 = spawn_client(&cg.app("app3")?, &format!("127.0.0.2:{direct_port}"), 1)?;
    check(
        out4.lines.first().is_some_and(|l| l.starts_with("direct ")),
        format!("client after drop: {out4:?}"),
    )?;
    Ok(())
}

/// The attached cgroup covers the gateway too (as when attaching at the cgroup root): the
/// gateway's own connects are excluded by its cgroup id, apps are still steered, and one
/// sock_ops link suffices.
fn gateway_inside_steered_tree() -> TestResult {
    let cg = Cgroups::create("inside")?;
    cg.enter_gateway()?;
    let gw = TcpListener::bind("127.0.0.1:0")?;
    let gw_port = gw.local_addr()?.port();
    let direct = TcpListener::bind("127.0.0.2:0")?;
    let direct_port = direct.local_addr()?.port();
    serve_direct(direct);
    let mut cfg = raw(direct_port, gw_port, false, &cg);
    cfg.cgroup = Some(cg.root.clone());
    let (ebpf, _) = ebpf::start(Some(&cfg), &[gw_port], &prometheus::Registry::new())?;
    let ebpf = ebpf.ok_or("no Ebpf handle")?;
    check(
        ebpf.attached_cgroups() == [cg.root.clone()],
        format!("attached {:?}", ebpf.attached_cgroups()),
    )?;
    let server = serve_gateway(gw, ebpf.clone(), 1);
    let out = spawn_client(&cg.app("app1")?, &format!("127.0.0.2:{direct_port}"), 1)?;
    check(
        out.lines
            .first()
            .is_some_and(|l| l.starts_with(&format!("gw orig=127.0.0.2:{direct_port} "))),
        format!("steered client output: {out:?}"),
    )?;
    let accepted = server.join().map_err(|_| "gateway thread panicked")?;
    check(
        accepted.first().and_then(|a| a.record).is_some(),
        format!("passive record with a single link: {accepted:?}"),
    )?;
    let mut up = TcpStream::connect(format!("127.0.0.2:{direct_port}"))?;
    up.set_read_timeout(Some(Duration::from_secs(5)))?;
    up.write_all(b"upstream\n")?;
    let mut line = String::new();
    BufReader::new(up.try_clone()?).read_line(&mut line)?;
    check(
        line.starts_with("direct "),
        format!("gateway's own connect was steered: {line:?}"),
    )?;
    check(
        ebpf.stat(Stat::SkipGateway) >= 1,
        "gateway connect not counted as skipped",
    )?;
    check(
        ebpf.flow(up.as_fd()).is_some(),
        "no active record for the gateway's socket",
    )?;
    Ok(())
}

fn accelerated_pair() -> TestResult {
    let cg = Cgroups::create("accel")?;
    cg.enter_gateway()?;
    let gw = TcpListener::bind("127.0.0.1:0")?;
    let gw_port = gw.local_addr()?.port();
    let direct = TcpListener::bind("127.0.0.2:0")?;
    let direct_port = direct.local_addr()?.port();
    serve_direct(direct);
    let registry = prometheus::Registry::new();
    let (ebpf, _) = ebpf::start(
        Some(&raw(direct_port, gw_port, true, &cg)),
        &[gw_port],
        &registry,
    )?;
    let ebpf = ebpf.ok_or("no Ebpf handle")?;
    let server = serve_gateway(gw, ebpf.clone(), 1);
    let rounds = 200;
    let out = spawn_client(
        &cg.app("app1")?,
        &format!("127.0.0.2:{direct_port}"),
        rounds,
    )?;
    check(
        out.lines.len() == rounds,
        format!("lines {}", out.lines.len()),
    )?;
    for (i, l) in out.lines.iter().enumerate() {
        let want = format!("gw orig=127.0.0.2:{direct_port} line=ping {i}");
        check(*l == want, format!("round {i}: {l:?} != {want:?}"))?;
    }
    let accepted = server.join().map_err(|_| "gateway thread panicked")?;
    let rec = accepted
        .first()
        .and_then(|a| a.record)
        .ok_or("no passive record")?;
    check(
        rec.flags & FLOW_F_ACCELERATED != 0,
        format!("not accelerated: {rec:?}"),
    )?;
    let redirected = ebpf.stat(Stat::AccelRedirects);
    check(
        redirected >= rounds as u64,
        format!("sk_msg redirected {redirected} messages, want >= {rounds}"),
    )?;
    let attached = ebpf.attached_cgroups().to_vec();
    Arc::try_unwrap(ebpf).map_err(|_| "Ebpf still shared")?;
    for path in attached {
        let left = bpftool_cgroup_progs(&path)?;
        check(
            left.is_empty(),
            format!("still attached to {}: {left:?}", path.display()),
        )?;
    }
    Ok(())
}

/// `mode: auto` with BPF unavailable runs without and says why; `required` fails. Runs in a
/// child so the environment override stays out of the other tests.
fn fallback_when_unavailable() -> TestResult {
    let out = std::process::Command::new(std::env::current_exe()?)
        .env("EBPF_TEST_ROLE", "fallback")
        .env(ebpf::FORCE_UNAVAILABLE_ENV, "simulated-by-test")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(
        out.status.success(),
        format!(
            "fallback child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    check(
        stdout.contains("FALLBACK-OK"),
        format!("fallback child: {stdout}"),
    )
}

/// Child side of [`fallback_when_unavailable`].
pub fn fallback_child() -> TestResult {
    let registry = prometheus::Registry::new();
    let auto = RawEbpf::default();
    let (handle, status) = ebpf::start(Some(&auto), &[8080], &registry)?;
    check(handle.is_none(), "auto mode returned a handle")?;
    let EbpfStatus::Disabled { reason } = status else {
        return Err("auto mode reported Enabled".into());
    };
    check(
        reason.contains("simulated-by-test"),
        format!("reason {reason:?}"),
    )?;
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather())?;
    check(
        text.contains("agentgateway_ebpf_enabled{reason=\"GATEWAY_EBPF_FORCE_UNAVAILABLE=simulated-by-test\"} 0"),
        format!("metric: {text}"),
    )?;
    let required = RawEbpf {
        mode: RawEbpfMode::Required,
        ..RawEbpf::default()
    };
    match ebpf::start(Some(&required), &[8080], &prometheus::Registry::new()) {
        Err(e) if e.to_string().contains("simulated-by-test") => {}
        other => return Err(format!("required mode: {other:?}").into()),
    }
    println!("FALLBACK-OK");
    Ok(())
}

/// aya-log records from connect4 arrive as `tracing` debug events.
fn kernel_logs_reach_tracing() -> TestResult {
    let out = std::process::Command::new(std::env::current_exe()?)
        .env("EBPF_TEST_ROLE", "logs")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        out.status.success(),
        format!("logs child failed: {stdout}\n{stderr}"),
    )?;
    check(
        stderr.contains(ebpf::KERNEL_LOG_TARGET) && stderr.contains("connect4: steer 127.0.0.2:"),
        format!("no kernel log line in child stderr:\n{stderr}"),
    )
}

/// Child side of [`kernel_logs_reach_tracing`]: debug logging on, one steered connect.
pub fn logs_child() -> TestResult {
    tracing_subscriber::fmt()
        .with_env_filter("gateway::ebpf=debug")
        .with_writer(std::io::stderr)
        .init();
    let cg = Cgroups::create("logs")?;
    cg.enter_gateway()?;
    let gw = TcpListener::bind("127.0.0.1:0")?;
    let gw_port = gw.local_addr()?.port();
    let (ebpf, _) = ebpf::start(
        Some(&raw(4321, gw_port, false, &cg)),
        &[gw_port],
        &prometheus::Registry::new(),
    )?;
    let ebpf = ebpf.ok_or("no Ebpf handle")?;
    let server = serve_gateway(gw, ebpf.clone(), 1);
    spawn_client(&cg.app("app1")?, "127.0.0.2:4321", 1)?;
    server.join().map_err(|_| "gateway thread panicked")?;
    // The log thread polls every 100 ms; give it time before the handle drops.
    std::thread::sleep(Duration::from_millis(400));
    drop(ebpf);
    Ok(())
}

fn check(cond: bool, what: impl Into<String>) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}
