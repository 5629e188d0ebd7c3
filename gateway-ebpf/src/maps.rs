//! Every BPF map of the gateway, with its bound. Types and names come from `gateway-common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, SockHash},
};
use gateway_common::{
    FlowRecord, GlobalConfig, MAX_ACCEL_SOCKS, MAX_FLOWS, MAX_GATEWAY_PORTS, MAX_STEER_RULES,
    OrigDst, SockAddrKey, SockPairKey, SteerKey4, SteerKey6, SteerTarget,
    stats::{STATS_LEN, Stat},
};

#[map]
pub static STEER_V4: LpmTrie<SteerKey4, SteerTarget> =
    LpmTrie::with_max_entries(MAX_STEER_RULES, 0);

#[map]
pub static STEER_V6: LpmTrie<SteerKey6, SteerTarget> =
    LpmTrie::with_max_entries(MAX_STEER_RULES, 0);

#[map]
pub static CONFIG: Array<GlobalConfig> = Array::with_max_entries(1, 0);

#[map]
pub static GATEWAY_PORTS: HashMap<u16, u32> = HashMap::with_max_entries(MAX_GATEWAY_PORTS, 0);

#[map]
pub static ORIG_BY_COOKIE: LruHashMap<u64, OrigDst> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub static ORIG_BY_SRC: LruHashMap<SockAddrKey, OrigDst> =
    LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub static FLOWS: LruHashMap<u64, FlowRecord> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub static ACCEL_SOCKS: SockHash<SockPairKey> = SockHash::with_max_entries(MAX_ACCEL_SOCKS, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Bumps a per-CPU event counter.
#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *p += 1 };
    }
}

/// The single global config entry, if userspace wrote it.
#[inline(always)]
pub fn config() -> Option<&'static GlobalConfig> {
    CONFIG.get(0)
}

/// Whether `port` (host order) is one of the gateway's listeners.
#[inline(always)]
pub fn is_gateway_port(port: u16) -> bool {
    // SAFETY: the value is only read for presence.
    unsafe { GATEWAY_PORTS.get(&port) }.is_some()
}
