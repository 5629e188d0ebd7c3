//! eBPF subsystem: loads the kernel programs, steers app connections into the gateway and
//! reads kernel flow timing back.
//!
//! The proxy calls [`start`] once at start-up and keeps the returned [`Ebpf`]; dropping it
//! detaches every program (bpf_links, nothing pinned). Per connection the proxy may call:
//!
//! - [`Ebpf::accepted`] at accept: one `getsockopt(SO_COOKIE)` and one `BPF_MAP_LOOKUP_ELEM`
//!   on `FLOWS`, giving the handshake timing and the original destination of a steered
//!   connection (or [`Ebpf::original_dst`] by peer address, one lookup on `ORIG_BY_SRC`);
//! - [`Ebpf::flow`] after a response completes: one `getsockopt(SO_COOKIE)` and one
//!   `BPF_MAP_LOOKUP_ELEM` on `FLOWS` (a few microseconds, off the response path);
//! - for upstream connections, wrap the TCP connector in [`CookieConnector`]: each response
//!   then carries an [`UpstreamCookie`] extension; after the response completes call
//!   [`Ebpf::flow_by_cookie`] (one lookup) and [`Ebpf::record_upstream_conn`], which feeds
//!   the upstream connect histogram once per connection ([`Ebpf::record_upstream`] is the
//!   variant for callers that see each connection once).
//!
//! Choices worth knowing:
//! - The gateway's own connects are excluded from steering by its **cgroup id** (read from
//!   `/proc/self/cgroup` at start-up), so no socket option is needed on upstream sockets; the
//!   gateway must therefore not share its cgroup with the apps it steers.
//! - sock_ops sees only sockets of processes in an attached cgroup, so it is attached at the
//!   steered cgroup and at the gateway's own cgroup when the first does not cover it.
//! - The original destination is stored by socket cookie at connect() and re-keyed by client
//!   `(ip, port)` at ESTABLISHED, because connect4 runs before the source port is chosen.

pub mod connector;
mod loader;
pub mod metrics;
mod mountinfo;
pub mod probe;
pub mod settings;

// build.rs's toolchain detection, compiled into the library only so its unit tests run.
#[cfg(test)]
#[path = "../../build/ebpf_toolchain.rs"]
mod build_toolchain;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aya::maps::{HashMap, MapData};
use gateway_common::{AF_INET, AF_INET6, FlowRecord, OrigDst, SockAddrKey, stats::Stat};
use prometheus::Registry;

use crate::config::ebpf::{RawEbpf, RawEbpfMode};
use crate::ctx::FlowTiming;

pub use connector::{CookieConnector, UpstreamCookie};
pub use loader::KERNEL_LOG_TARGET;
pub use probe::FORCE_UNAVAILABLE_ENV;
pub use settings::Settings;

/// The kernel object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1` or without
/// the eBPF toolchain; `probe` then reports why).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gateway"));

/// Errors of the eBPF subsystem.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("{path}: invalid value {value:?}: {why}")]
    Config {
        path: String,
        value: String,
        why: String,
    },
    #[error("eBPF is required (config.ebpf.mode: required) but unavailable: {0}")]
    Unavailable(String),
    #[error("eBPF {what}: {detail}")]
    Load { what: String, detail: String },
    #[error("registering eBPF metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Whether the kernel programs run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EbpfStatus {
    Enabled,
    Disabled { reason: String },
}

/// Loads and attaches the kernel programs according to `config.ebpf` (absent: `mode: auto`,
/// no steering, flow timing only). `gateway_listen_ports` are the ports the gateway accepts
/// on: their accepted sockets get flow records. Registers the subsystem's metrics in
/// `registry`.
///
/// In `auto` mode a machine that cannot run BPF yields `Ok((None, Disabled { reason }))`
/// after one warning line; `required` turns that into `Err(Unavailable)`; `off` skips.
/// Configuration errors fail in every mode.
pub fn start(
    raw: Option<&RawEbpf>,
    gateway_listen_ports: &[u16],
    registry: &Registry,
) -> Result<(Option<Arc<Ebpf>>, EbpfStatus), EbpfError> {
    let default = RawEbpf::default();
    let settings = Settings::compile(raw.unwrap_or(&default), gateway_listen_ports)?;
    if settings.mode == RawEbpfMode::Off {
        return disabled(
            &settings,
            registry,
            "disabled by config (config.ebpf.mode: off)".into(),
        );
    }
    if let Some(reason) = probe::unavailable_reason(OBJECT) {
        return disabled(&settings, registry, reason);
    }
    let loaded = match loader::load(OBJECT, &settings, gateway_listen_ports) {
        Ok(l) => l,
        Err(e) => return disabled(&settings, registry, e.to_string()),
    };
    let upstream = metrics::UpstreamMetrics::register(registry)?;
    let stats = Arc::new(metrics::KernelStats::new(loaded.stats)?);
    registry.register(Box::new(SharedStats(stats.clone())))?;
    metrics::register_enabled(registry, true, "enabled")?;
    let ebpf = Ebpf {
        orig_by_src: loaded.orig_by_src,
        flows: loaded.flows,
        stats,
        upstream,
        attached: loaded.attached,
        _log_pump: loaded.log_pump,
        _bpf: Mutex::new(loaded.bpf),
    };
    Ok((Some(Arc::new(ebpf)), EbpfStatus::Enabled))
}

fn disabled(
    settings: &Settings,
    registry: &Registry,
    reason: String,
) -> Result<(Option<Arc<Ebpf>>, EbpfStatus), EbpfError> {
    if settings.mode == RawEbpfMode::Required {
        return Err(EbpfError::Unavailable(reason));
    }
    if settings.mode == RawEbpfMode::Off {
        tracing::info!(%reason, "eBPF disabled");
    } else {
        tracing::warn!(%reason, "eBPF disabled, running without kernel steering and flow timing");
    }
    metrics::register_enabled(registry, false, &reason)?;
    Ok((None, EbpfStatus::Disabled { reason }))
}

/// The loaded kernel programs and the maps the proxy reads. Dropping it detaches everything.
pub struct Ebpf {
    orig_by_src: HashMap<MapData, SockAddrKey, OrigDst>,
    flows: HashMap<MapData, u64, FlowRecord>,
    stats: Arc<metrics::KernelStats>,
    upstream: metrics::UpstreamMetrics,
    attached: Vec<PathBuf>,
    // Drop order: the log thread stops first, the programs and links go last.
    _log_pump: Option<loader::LogPump>,
    /// Owns programs and links. Never locked on a request path; the Mutex only makes the
    /// struct `Sync`.
    _bpf: Mutex<aya::Ebpf>,
}

impl std::fmt::Debug for Ebpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ebpf")
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl Ebpf {
    /// Original destination of a steered client connection, by the accepted socket's peer
    /// address. `None` when the connection was not steered (or its record was evicted).
    pub fn original_dst(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.original(peer).map(|o| orig_to_addr(&o))
    }

    /// Like [`Ebpf::original_dst`], with the full kernel record (steer target, client-side
    /// connect and established times).
    pub fn original(&self, peer: SocketAddr) -> Option<OrigDst> {
        self.orig_by_src.get(&sock_addr_key(peer), 0).ok()
    }

    /// Everything the kernel knows about a connection the gateway just accepted, in one map
    /// lookup: its flow timing so far (handshake RTT) and, when it was steered, its original
    /// destination. Call it at accept. Prefer it to [`Ebpf::original_dst`], whose entry goes
    /// away when the client closes.
    pub fn accepted(&self, fd: BorrowedFd<'_>) -> Option<AcceptedFlow> {
        let r = self.flow_record(socket_cookie(fd)?)?;
        Some(AcceptedFlow {
            flow: flow_timing(&r),
            original_dst: (r.orig_family != 0).then(|| {
                orig_to_addr(&OrigDst {
                    addr: r.orig_addr,
                    port: r.orig_port,
                    family: r.orig_family,
                    ..OrigDst::default()
                })
            }),
        })
    }

    /// Kernel flow timing for a socket (accepted or upstream), by its fd (uses `SO_COOKIE`).
    pub fn flow(&self, fd: BorrowedFd<'_>) -> Option<FlowTiming> {
        self.flow_by_cookie(socket_cookie(fd)?)
    }

    pub fn flow_by_cookie(&self, cookie: u64) -> Option<FlowTiming> {
        self.flow_record(cookie).map(|r| flow_timing(&r))
    }

    /// The raw kernel record of a flow.
    pub fn flow_record(&self, cookie: u64) -> Option<FlowRecord> {
        self.flows.get(&cookie, 0).ok()
    }

    /// Feeds `agentgateway_upstream_tcp_connect_seconds` and
    /// `agentgateway_upstream_tcp_retransmits_total`. Call once per upstream connection (its
    /// flow read after its last response, or when it closes): the retransmit count is the
    /// connection's total.
    pub fn record_upstream(&self, flow: &FlowTiming) {
        self.upstream.record(flow);
    }

    /// Per-request variant for pooled upstream connections: pass the [`UpstreamCookie`] of the
    /// response and its flow. The connect time is observed once per connection, retransmits
    /// as the increase since the connection's previous request.
    pub fn record_upstream_conn(&self, cookie: u64, flow: Option<&FlowTiming>) {
        if let Some(f) = flow {
            self.upstream.record_conn(cookie, f);
        }
    }

    /// A kernel event counter, summed over CPUs.
    pub fn stat(&self, stat: Stat) -> u64 {
        self.stats.get(stat)
    }

    /// cgroup directories the programs are attached to.
    pub fn attached_cgroups(&self) -> &[PathBuf] {
        &self.attached
    }

    /// Kernel run statistics of each loaded program. The kernel only counts while run-time
    /// stats are on (see [`enable_run_stats`]); otherwise the numbers stay at zero.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let Ok(bpf) = self._bpf.lock() else {
            return Vec::new();
        };
        bpf.programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(ProgramStats {
                    name: name.to_owned(),
                    run_count: info.run_count(),
                    run_time: info.run_time(),
                })
            })
            .collect()
    }
}

/// What [`Ebpf::accepted`] returns.
#[derive(Clone, Copy, Debug)]
pub struct AcceptedFlow {
    pub flow: FlowTiming,
    /// Where the client meant to connect, when the kernel steered it to the gateway.
    pub original_dst: Option<SocketAddr>,
}

/// Run statistics of one kernel program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time: Duration,
}

/// Turns on the kernel's BPF run-time accounting (`BPF_ENABLE_STATS`) for as long as the
/// returned fd is open. It costs two clock reads per program run: for benchmarks and
/// debugging, not for production.
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd, EbpfError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| EbpfError::Load {
        what: "BPF_ENABLE_STATS".into(),
        detail: e.to_string(),
    })
}

/// Socket cookie of `fd` (`SO_COOKIE`), the key of the kernel's per-socket records.
pub fn socket_cookie(fd: BorrowedFd<'_>) -> Option<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd for the borrow's lifetime; out pointer and length of a u64.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cookie)
}

/// Converts a kernel record into the proxy's vocabulary.
pub fn flow_timing(r: &FlowRecord) -> FlowTiming {
    let connect = (r.connect_ns != 0 && r.established_ns >= r.connect_ns)
        .then(|| Duration::from_nanos(r.established_ns - r.connect_ns));
    FlowTiming {
        connect,
        srtt: (r.srtt_us != 0).then(|| Duration::from_micros(u64::from(r.srtt_us))),
        retransmits: Some(r.total_retrans),
        bytes_sent: Some(r.bytes_acked),
        bytes_received: Some(r.bytes_received),
    }
}

/// Map key of a client address; IPv4-mapped IPv6 is folded to IPv4 as the kernel side does.
pub fn sock_addr_key(a: SocketAddr) -> SockAddrKey {
    let ip = match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => SockAddrKey {
            addr: [u32::from(v4).to_be(), 0, 0, 0],
            port: a.port(),
            family: AF_INET,
        },
        IpAddr::V6(v6) => SockAddrKey {
            addr: loader::words6(v6.octets()),
            port: a.port(),
            family: AF_INET6,
        },
    }
}

fn orig_to_addr(o: &OrigDst) -> SocketAddr {
    let ip = if o.family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(loader::octets6(o.addr)))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::from_be(o.addr[0])))
    };
    SocketAddr::new(ip, o.port)
}

/// Registry adapter: the registry owns a collector, the `Ebpf` keeps reading the same map.
struct SharedStats(Arc<metrics::KernelStats>);

impl prometheus::core::Collector for SharedStats {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_ipv4_mapped_addresses() {
        let v4: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        assert_eq!(sock_addr_key(v4), sock_addr_key(mapped));
        assert_eq!(
            sock_addr_key(v4).addr[0],
            u32::from_ne_bytes([127, 0, 0, 1])
        );
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(sock_addr_key(v6).family, AF_INET6);
    }

    #[test]
    fn orig_dst_round_trips() {
        for s in ["10.96.0.10:80", "[fd00::1]:443"] {
            let a: SocketAddr = s.parse().unwrap();
            let k = sock_addr_key(a);
            let o = OrigDst {
                addr: k.addr,
                port: k.port,
                family: k.family,
                ..OrigDst::default()
            };
            assert_eq!(orig_to_addr(&o), a);
        }
    }

    #[test]
    fn flow_timing_from_record() {
        let r = FlowRecord {
            connect_ns: 1_000,
            established_ns: 251_000,
            srtt_us: 40,
            total_retrans: 2,
            bytes_acked: 10,
            bytes_received: 20,
            ..FlowRecord::default()
        };
        let t = flow_timing(&r);
        assert_eq!(t.connect, Some(Duration::from_micros(250)));
        assert_eq!(t.srtt, Some(Duration::from_micros(40)));
        assert_eq!(
            (t.retransmits, t.bytes_sent, t.bytes_received),
            (Some(2), Some(10), Some(20))
        );
        let passive = FlowRecord {
            established_ns: 5,
            ..FlowRecord::default()
        };
        assert_eq!(flow_timing(&passive).connect, None);
        assert_eq!(flow_timing(&passive).srtt, None);
    }

    #[test]
    fn auto_mode_without_bpf_reports_reason() {
        // The env override is process-wide; this unit test only checks the `off` path, which
        // needs no privileges. Forced-unavailable and required mode are in tests/ebpf_*.rs.
        let registry = Registry::new();
        let raw = RawEbpf {
            mode: RawEbpfMode::Off,
            ..RawEbpf::default()
        };
        let (ebpf, status) = start(Some(&raw), &[], &registry).expect("off never fails");
        assert!(ebpf.is_none());
        assert!(matches!(status, EbpfStatus::Disabled { reason } if reason.contains("off")));
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("agentgateway_ebpf_enabled{reason=\"disabled by config"),
            "{text}"
        );
    }
}
