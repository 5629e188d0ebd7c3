//! Loads the kernel object, fills the maps from the settings and attaches the programs with
//! bpf_links (never pinned): dropping the returned [`Loaded`] detaches everything.
//!
//! Attach points:
//! - connect4 at the steered cgroup (`config.ebpf.cgroup`, default the cgroup v2 mount found in
//!   `/proc/self/mountinfo`: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts) when
//!   there are IPv4 rules, connect6 when there are any rules (IPv4 rules also match
//!   IPv4-mapped destinations of dual-stack sockets);
//! - sock_ops at the steered cgroup, and a second link at the gateway's own cgroup unless the
//!   first already covers it (sock_ops runs only for sockets of processes in the cgroup);
//! - sk_msg on the acceleration sockhash when `accelerate` is on.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, SockHash};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SkMsg, SockOps};
use aya::{Ebpf as AyaEbpf, EbpfLoader};
use aya_log::EbpfLogger;
use gateway_common::{
    CONFIG_F_ACCELERATE, CONFIG_F_NODE_IP4, CONFIG_F_NODE_IP6, FlowRecord, GlobalConfig,
    MAP_ACCEL_SOCKS, MAP_CONFIG, MAP_FLOWS, MAP_GATEWAY_PORTS, MAP_ORIG_BY_SRC, MAP_STATS,
    MAP_STEER_V4, MAP_STEER_V6, OrigDst, STEER_KEY_PORT_BITS, SockAddrKey, SockPairKey, SteerKey4,
    SteerKey6, SteerTarget,
};

use super::settings::Settings;
use super::{EbpfError, probe};

/// `tracing` target of records logged by the kernel programs (at debug level).
pub const KERNEL_LOG_TARGET: &str = "gateway::ebpf::kernel";

/// aya-log level numbers (`aya_log_common::Level`): 0 turns kernel logging off.
const AYA_LOG_OFF: u8 = 0;
const AYA_LOG_DEBUG: u8 = 4;

/// Everything that must live as long as the programs stay attached.
pub struct Loaded {
    pub orig_by_src: HashMap<MapData, SockAddrKey, OrigDst>,
    pub flows: HashMap<MapData, u64, FlowRecord>,
    pub stats: PerCpuArray<MapData, u64>,
    /// cgroups the programs are attached to.
    pub attached: Vec<PathBuf>,
    pub log_pump: Option<LogPump>,
    /// Owns programs and links; dropped last.
    pub bpf: AyaEbpf,
}

fn err(what: impl Into<String>) -> impl FnOnce(String) -> EbpfError {
    let what = what.into();
    move |detail| EbpfError::Load { what, detail }
}

/// Shorthand: turn any displayable error into `EbpfError::Load`.
macro_rules! ctx {
    ($e:expr, $($what:tt)+) => {
        $e.map_err(|e| err(format!($($what)+))(e.to_string()))
    };
}

pub fn load(object: &[u8], s: &Settings, listen_ports: &[u16]) -> Result<Loaded, EbpfError> {
    let mount = probe::find_cgroup2_mount().map_err(err("cgroup v2"))?;
    // Unset: the whole cgroup v2 hierarchy, wherever the mount table says it is.
    let target = s.cgroup.clone().unwrap_or_else(|| mount.clone());
    // Not required to sit under `mount`: a containerised gateway may see the host's cgroup
    // tree at another mount point (e.g. /host/sys/fs/cgroup).
    if !target.join("cgroup.procs").exists() {
        return Err(err("config.ebpf.cgroup")(format!(
            "{} is not a cgroup v2 directory (no cgroup.procs); cgroup v2 is mounted at {} \
             here, which is the default when config.ebpf.cgroup is unset",
            target.display(),
            mount.display()
        )));
    }
    let own = probe::own_cgroup()
        .ok_or_else(|| err("gateway cgroup")("no cgroup v2 entry in /proc/self/cgroup".into()))?;
    let gateway_cgroup_id = ctx!(probe::cgroup_id(&own), "gateway cgroup {}", own.display())?;
    let netns_cookie = ctx!(probe::own_netns_cookie(), "SO_NETNS_COOKIE")?;

    let log_level = if tracing::enabled!(target: KERNEL_LOG_TARGET, tracing::Level::DEBUG) {
        AYA_LOG_DEBUG
    } else {
        AYA_LOG_OFF
    };
    let mut bpf = ctx!(
        EbpfLoader::new()
            .override_global("AYA_LOG_LEVEL", &log_level, false)
            .load(object),
        "loading the eBPF object"
    )?;

    write_maps(&mut bpf, s, listen_ports, gateway_cgroup_id, netns_cookie)?;

    let log_pump = if log_level == AYA_LOG_OFF {
        None
    } else {
        let logger = ctx!(
            EbpfLogger::init_with_logger(&mut bpf, TracingLog),
            "aya-log ring buffer"
        )?;
        Some(ctx!(LogPump::start(logger), "aya-log thread")?)
    };

    let mut attached = vec![target.clone()];
    let cg = ctx!(File::open(&target), "opening cgroup {}", target.display())?;
    let has_v4 = s.steer.iter().any(|r| r.addr.is_ipv4());
    // connect6 also serves IPv4 rules: dual-stack sockets connect to `::ffff:a.b.c.d`.
    let has_v6 = !s.steer.is_empty();
    for (name, wanted) in [("steer_connect4", has_v4), ("steer_connect6", has_v6)] {
        if !wanted {
            continue;
        }
        let prog: &mut CgroupSockAddr = program(&mut bpf, name)?;
        ctx!(prog.load(), "loading {name}")?;
        ctx!(
            prog.attach(&cg, CgroupAttachMode::Single),
            "attaching {name} to {}",
            target.display()
        )?;
    }
    let sockops: &mut SockOps = program(&mut bpf, "gateway_sockops")?;
    ctx!(sockops.load(), "loading gateway_sockops")?;
    ctx!(
        sockops.attach(&cg, CgroupAttachMode::Single),
        "attaching gateway_sockops to {}",
        target.display()
    )?;
    if !probe::is_within(&own, &target) {
        let gw = ctx!(File::open(&own), "opening gateway cgroup {}", own.display())?;
        ctx!(
            sockops.attach(&gw, CgroupAttachMode::Single),
            "attaching gateway_sockops to the gateway cgroup {}",
            own.display()
        )?;
        attached.push(own.clone());
    }
    if s.accelerate {
        let fd = {
            let map = bpf
                .map(MAP_ACCEL_SOCKS)
                .ok_or_else(|| err("map")(MAP_ACCEL_SOCKS.into()))?;
            let socks = ctx!(
                SockHash::<_, SockPairKey>::try_from(map),
                "{MAP_ACCEL_SOCKS}"
            )?;
            ctx!(socks.fd().try_clone(), "{MAP_ACCEL_SOCKS} fd")?
        };
        let skmsg: &mut SkMsg = program(&mut bpf, "accel_skmsg")?;
        ctx!(skmsg.load(), "loading accel_skmsg")?;
        ctx!(skmsg.attach(&fd), "attaching accel_skmsg")?;
    }

    let orig_by_src = ctx!(
        HashMap::try_from(take(&mut bpf, MAP_ORIG_BY_SRC)?),
        "{MAP_ORIG_BY_SRC}"
    )?;
    let flows = ctx!(HashMap::try_from(take(&mut bpf, MAP_FLOWS)?), "{MAP_FLOWS}")?;
    let stats = ctx!(
        PerCpuArray::try_from(take(&mut bpf, MAP_STATS)?),
        "{MAP_STATS}"
    )?;
    tracing::info!(
        cgroups = ?attached,
        cgroup_from_mount_table = s.cgroup.is_none(),
        gateway_cgroup = %own.display(),
        steer_rules = s.steer.len(),
        accelerate = s.accelerate,
        "eBPF programs attached"
    );
    Ok(Loaded {
        orig_by_src,
        flows,
        stats,
        attached,
        log_pump,
        bpf,
    })
}

fn program<'a, T>(bpf: &'a mut AyaEbpf, name: &str) -> Result<&'a mut T, EbpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = bpf
        .program_mut(name)
        .ok_or_else(|| err("program")(format!("{name} missing from the object")))?;
    let r: Result<&'a mut T, aya::programs::ProgramError> = p.try_into();
    ctx!(r, "program {name}")
}

fn take(bpf: &mut AyaEbpf, name: &str) -> Result<aya::maps::Map, EbpfError> {
    bpf.take_map(name)
        .ok_or_else(|| err("map")(format!("{name} missing from the object")))
}

fn map<'a>(bpf: &'a mut AyaEbpf, name: &str) -> Result<&'a mut aya::maps::Map, EbpfError> {
    bpf.map_mut(name)
        .ok_or_else(|| err("map")(format!("{name} missing from the object")))
}

fn write_maps(
    bpf: &mut AyaEbpf,
    s: &Settings,
    listen_ports: &[u16],
    gateway_cgroup_id: u64,
    gateway_netns_cookie: u64,
) -> Result<(), EbpfError> {
    let mut flags = 0;
    if s.accelerate {
        flags |= CONFIG_F_ACCELERATE;
    }
    if s.node_ip4.is_some() {
        flags |= CONFIG_F_NODE_IP4;
    }
    if s.node_ip6.is_some() {
        flags |= CONFIG_F_NODE_IP6;
    }
    let cfg = GlobalConfig {
        gateway_cgroup_id,
        gateway_netns_cookie,
        node_ip4: s.node_ip4.map(|a| u32::from(a).to_be()).unwrap_or(0),
        flags,
        node_ip6: s.node_ip6.map(|a| words6(a.octets())).unwrap_or_default(),
    };
    let mut config: Array<_, GlobalConfig> =
        ctx!(Array::try_from(map(bpf, MAP_CONFIG)?), "{MAP_CONFIG}")?;
    ctx!(config.set(0, cfg, 0), "writing {MAP_CONFIG}")?;

    let mut ports: HashMap<_, u16, u32> = ctx!(
        HashMap::try_from(map(bpf, MAP_GATEWAY_PORTS)?),
        "{MAP_GATEWAY_PORTS}"
    )?;
    let mut all_ports: Vec<u16> = listen_ports.to_vec();
    all_ports.extend(s.steer.iter().map(|r| r.bind));
    all_ports.sort_unstable();
    all_ports.dedup();
    for p in all_ports {
        ctx!(ports.insert(p, 1, 0), "writing {MAP_GATEWAY_PORTS}")?;
    }

    let mut v4: LpmTrie<_, SteerKey4, SteerTarget> =
        ctx!(LpmTrie::try_from(map(bpf, MAP_STEER_V4)?), "{MAP_STEER_V4}")?;
    for (i, r) in s.steer.iter().enumerate() {
        let target = SteerTarget {
            bind_port: r.bind,
            _pad: 0,
            rule: i as u32,
        };
        if let IpAddr::V4(a) = r.addr {
            let key = Key::new(
                STEER_KEY_PORT_BITS + u32::from(r.prefix_len),
                SteerKey4 {
                    port_be: r.port.to_be(),
                    _pad: 0,
                    addr: u32::from(a).to_be(),
                },
            );
            ctx!(v4.insert(&key, target, 0), "writing {MAP_STEER_V4}")?;
        }
    }
    let mut v6: LpmTrie<_, SteerKey6, SteerTarget> =
        ctx!(LpmTrie::try_from(map(bpf, MAP_STEER_V6)?), "{MAP_STEER_V6}")?;
    for (i, r) in s.steer.iter().enumerate() {
        if let IpAddr::V6(a) = r.addr {
            let key = Key::new(
                STEER_KEY_PORT_BITS + u32::from(r.prefix_len),
                SteerKey6 {
                    port_be: r.port.to_be(),
                    _pad: 0,
                    addr: words6(a.octets()),
                },
            );
            let target = SteerTarget {
                bind_port: r.bind,
                _pad: 0,
                rule: i as u32,
            };
            ctx!(v6.insert(&key, target, 0), "writing {MAP_STEER_V6}")?;
        }
    }
    Ok(())
}

/// IPv6 octets as four network-order words, the layout of `bpf_sock_addr.user_ip6`.
pub fn words6(o: [u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// Inverse of [`words6`].
pub fn octets6(w: [u32; 4]) -> [u8; 16] {
    let mut o = [0u8; 16];
    for (i, word) in w.iter().enumerate() {
        o[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    o
}

// === impl TracingLog ===

/// Forwards aya-log records from the kernel to `tracing` at debug level.
struct TracingLog;

impl log::Log for TracingLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        tracing::debug!(target: KERNEL_LOG_TARGET, "{}", record.args());
    }

    fn flush(&self) {}
}

// === impl LogPump ===

/// A thread that drains the aya-log ring buffer; stopped and joined on drop.
pub struct LogPump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogPump {
    fn start(mut logger: EbpfLogger<TracingLog>) -> std::io::Result<LogPump> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ebpf-log".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd: std::os::fd::AsRawFd::as_raw_fd(&logger.as_fd()),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; the timeout bounds how long drop waits.
                    unsafe { libc::poll(&mut pfd, 1, 100) };
                    logger.flush();
                }
            })?;
        Ok(LogPump {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_words_round_trip_in_network_order() {
        let a: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
        let w = words6(a.octets());
        assert_eq!(u32::from_be(w[0]), 0xfd00_0000);
        assert_eq!(u32::from_be(w[3]), 1);
        assert_eq!(octets6(w), a.octets());
    }
}
