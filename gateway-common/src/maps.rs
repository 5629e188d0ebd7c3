//! Keys and values of every BPF map, with their names and sizes.
//!
//! Map names are the symbol names in `gateway-ebpf/src/maps.rs`; userspace looks maps up by
//! these constants, so a rename breaks the build instead of the start-up.

// === map names and bounds ===

/// `LpmTrie<SteerKey4, SteerTarget>`: IPv4 virtual addresses (`cidr:port`) to steer.
pub const MAP_STEER_V4: &str = "STEER_V4";
/// `LpmTrie<SteerKey6, SteerTarget>`: IPv6 virtual addresses to steer.
pub const MAP_STEER_V6: &str = "STEER_V6";
/// `Array<GlobalConfig>` with one entry: who the gateway is and which features are on.
pub const MAP_CONFIG: &str = "CONFIG";
/// `HashMap<u16, u32>`: the gateway's listening ports (host order), value unused (1).
pub const MAP_GATEWAY_PORTS: &str = "GATEWAY_PORTS";
/// `LruHashMap<u64, OrigDst>`: socket cookie of a steered client socket -> original destination.
pub const MAP_ORIG_BY_COOKIE: &str = "ORIG_BY_COOKIE";
/// `LruHashMap<SockAddrKey, OrigDst>`: client (ip, port) -> original destination.
pub const MAP_ORIG_BY_SRC: &str = "ORIG_BY_SRC";
/// `LruHashMap<u64, FlowRecord>`: socket cookie -> kernel timing of a gateway flow.
pub const MAP_FLOWS: &str = "FLOWS";
/// `SockHash<SockPairKey>`: sockets eligible for sk_msg acceleration.
pub const MAP_ACCEL_SOCKS: &str = "ACCEL_SOCKS";
/// `PerCpuArray<u64>`: event counters, indexed by [`crate::stats::Stat`].
pub const MAP_STATS: &str = "STATS";

/// Maximum number of `steer` rules per address family.
pub const MAX_STEER_RULES: u32 = 1024;
/// Maximum number of gateway listening ports.
pub const MAX_GATEWAY_PORTS: u32 = 256;
/// Bound of each LRU map keyed by connection (cookie or client address). At 65536 entries a
/// node can have that many connections in flight before the oldest records are evicted.
pub const MAX_FLOWS: u32 = 65536;
/// Bound of the acceleration sockhash.
pub const MAX_ACCEL_SOCKS: u32 = 65536;

// === flags ===

/// `GlobalConfig::flags`: put gateway <-> local app sockets into the sockhash for sk_msg redirect.
pub const CONFIG_F_ACCELERATE: u32 = 1;
/// `GlobalConfig::flags`: `node_ip4` is set (steer clients in other network namespaces to it).
pub const CONFIG_F_NODE_IP4: u32 = 2;
/// `GlobalConfig::flags`: `node_ip6` is set.
pub const CONFIG_F_NODE_IP6: u32 = 4;

/// `FlowRecord::flags`: the gateway accepted this connection (client side of the gateway).
pub const FLOW_F_PASSIVE: u32 = 1;
/// `FlowRecord::flags`: the gateway opened this connection (upstream side).
pub const FLOW_F_ACTIVE: u32 = 2;
/// `FlowRecord::flags`: the connection reached ESTABLISHED.
pub const FLOW_F_ESTABLISHED: u32 = 4;
/// `FlowRecord::flags`: the connection reached CLOSE.
pub const FLOW_F_CLOSED: u32 = 8;
/// `FlowRecord::flags`: the socket was put into the acceleration sockhash.
pub const FLOW_F_ACCELERATED: u32 = 16;

// === types ===

/// Data part of an IPv4 LPM key. The trie matches bits from the first byte on, so the port
/// (network order) comes first and `prefix_len = 32 + cidr_len`: the port always matches
/// exactly and the address by prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerKey4 {
    pub port_be: u16,
    pub _pad: u16,
    /// Network order.
    pub addr: u32,
}

/// Data part of an IPv6 LPM key (`prefix_len = 32 + cidr_len`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerKey6 {
    pub port_be: u16,
    pub _pad: u16,
    /// Network order.
    pub addr: [u32; 4],
}

/// Bits of the LPM key before the address (port + padding).
pub const STEER_KEY_PORT_BITS: u32 = 32;

/// Where a steered connection goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerTarget {
    /// The gateway listener port (host order) the connection is rewritten to.
    pub bind_port: u16,
    pub _pad: u16,
    /// Index of the rule in `config.ebpf.steer`, for logs.
    pub rule: u32,
}

/// Global settings written by userspace before the programs are attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// cgroup v2 id of the gateway: its own connects are never steered, and only its active
    /// connections get a flow record.
    pub gateway_cgroup_id: u64,
    /// Network namespace cookie of the gateway. Clients in that netns are steered to loopback;
    /// clients elsewhere to `node_ip4`/`node_ip6`.
    pub gateway_netns_cookie: u64,
    /// Network order.
    pub node_ip4: u32,
    /// `CONFIG_F_*`.
    pub flags: u32,
    /// Network order.
    pub node_ip6: [u32; 4],
}

/// A socket address as a map key: a client's `(ip, port)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockAddrKey {
    /// Network order; IPv4 in word 0.
    pub addr: [u32; 4],
    /// Host order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6` (IPv4-mapped IPv6 addresses are stored as `AF_INET`).
    pub family: u16,
}

/// Original destination of a steered connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigDst {
    /// Network order; IPv4 in word 0.
    pub addr: [u32; 4],
    /// Host order.
    pub port: u16,
    pub family: u16,
    /// The gateway listener port the connection was steered to.
    pub bind_port: u16,
    pub _pad: u16,
    /// `bpf_ktime_get_ns` at connect(): when the client started connecting.
    pub connect_ns: u64,
    /// `bpf_ktime_get_ns` when the client's side reached ESTABLISHED (0 until then).
    pub established_ns: u64,
    /// Cookie of the client socket: its close removes the entry only if it still owns it.
    pub cookie: u64,
}

/// Kernel record of one TCP flow of the gateway, keyed by socket cookie.
///
/// Counters are snapshots of the socket's own totals (not increments), so a program that runs
/// twice for the same event (two sock_ops links on nested cgroups) writes the same values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowRecord {
    /// `bpf_ktime_get_ns` at `TCP_CONNECT_CB` (active flows only, else 0).
    pub connect_ns: u64,
    /// `bpf_ktime_get_ns` at ESTABLISHED.
    pub established_ns: u64,
    /// `bpf_ktime_get_ns` when the socket entered CLOSE (0 while open).
    pub closed_ns: u64,
    pub bytes_received: u64,
    /// Bytes the peer acknowledged (what was sent and arrived).
    pub bytes_acked: u64,
    /// Smoothed RTT in microseconds (the kernel keeps it `<< 3`; this is already shifted).
    pub srtt_us: u32,
    /// Minimum RTT seen, microseconds.
    pub rtt_min_us: u32,
    pub total_retrans: u32,
    /// `FLOW_F_*`.
    pub flags: u32,
    /// Network order.
    pub local_addr: [u32; 4],
    /// Network order.
    pub remote_addr: [u32; 4],
    /// Host order.
    pub local_port: u16,
    /// Host order.
    pub remote_port: u16,
    pub family: u16,
    pub _pad: u16,
    /// Original destination of a steered connection the gateway accepted (copied from
    /// `ORIG_BY_SRC` at PASSIVE_ESTABLISHED, so one lookup by cookie answers both). Network
    /// order; `orig_family == 0` when the connection was not steered.
    pub orig_addr: [u32; 4],
    /// Host order.
    pub orig_port: u16,
    pub orig_family: u16,
    pub _pad2: u32,
}

/// Key of the acceleration sockhash: a socket by its own 4-tuple. The sk_msg program looks up
/// the peer by swapping local and remote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockPairKey {
    /// Network order.
    pub local_addr: [u32; 4],
    /// Network order.
    pub remote_addr: [u32; 4],
    /// Host order.
    pub local_port: u32,
    /// Host order.
    pub remote_port: u32,
}

// === layout asserts: a change here must be made on both sides at once ===

const _: () = assert!(core::mem::size_of::<SteerKey4>() == 8);
const _: () = assert!(core::mem::size_of::<SteerKey6>() == 20);
const _: () = assert!(core::mem::size_of::<SteerTarget>() == 8);
const _: () = assert!(core::mem::size_of::<GlobalConfig>() == 40);
const _: () = assert!(core::mem::size_of::<SockAddrKey>() == 20);
const _: () = assert!(core::mem::size_of::<OrigDst>() == 48);
const _: () = assert!(core::mem::size_of::<FlowRecord>() == 120);
const _: () = assert!(core::mem::size_of::<SockPairKey>() == 40);
const _: () = assert!(core::mem::align_of::<FlowRecord>() == 8);
const _: () = assert!(core::mem::align_of::<OrigDst>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is repr(C), Copy, has no implicit padding (the asserts above pin the
    // sizes to the sum of the fields) and every bit pattern is a valid value.
    unsafe impl aya::Pod for super::SteerKey4 {}
    unsafe impl aya::Pod for super::SteerKey6 {}
    unsafe impl aya::Pod for super::SteerTarget {}
    unsafe impl aya::Pod for super::GlobalConfig {}
    unsafe impl aya::Pod for super::SockAddrKey {}
    unsafe impl aya::Pod for super::OrigDst {}
    unsafe impl aya::Pod for super::FlowRecord {}
    unsafe impl aya::Pod for super::SockPairKey {}
}
