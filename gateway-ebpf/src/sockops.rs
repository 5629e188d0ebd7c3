//! sock_ops: per-flow records of the gateway's TCP connections, and re-keying of steered
//! connections by client address.
//!
//! The program is attached at the steered (pods) cgroup and, when that does not cover it, at
//! the gateway's own cgroup: sock_ops only runs for sockets of processes in an attached cgroup,
//! and the gateway's accepted sockets belong to the gateway. Every write below is idempotent
//! (snapshots, `BPF_NOEXIST` inserts), so a socket seen by both links ends up the same.
//!
//! - `TCP_CONNECT_CB` by the gateway (its cgroup id): active flow record (upstream connection).
//! - `PASSIVE_ESTABLISHED_CB` on a gateway port in the gateway's netns: passive flow record.
//! - `ACTIVE_ESTABLISHED_CB` of a steered socket: original destination keyed by client address.
//! - `RTT_CB` / `RETRANS_CB` / `STATE_CB` (enabled per recorded socket): live counters, close.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_RETRANS_CB, BPF_SOCK_OPS_RETRANS_CB_FLAG, BPF_SOCK_OPS_RTT_CB,
        BPF_SOCK_OPS_RTT_CB_FLAG, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB, bpf_sock_ops,
    },
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_ns,
    },
    macros::sock_ops,
    programs::SockOpsContext,
};
use aya_log_ebpf::debug;
use gateway_common::{
    AF_INET, AF_INET6, CONFIG_F_ACCELERATE, FLOW_F_ACCELERATED, FLOW_F_ACTIVE, FLOW_F_CLOSED,
    FLOW_F_ESTABLISHED, FLOW_F_PASSIVE, FlowRecord, SockAddrKey, SockPairKey, stats::Stat,
};

use crate::maps::{
    ACCEL_SOCKS, FLOWS, ORIG_BY_COOKIE, ORIG_BY_SRC, config, count, is_gateway_port,
};

/// `BPF_TCP_CLOSE` from the kernel's tcp state enum.
const TCP_CLOSE: u32 = 7;
/// Callbacks every recorded flow asks for.
const FLOW_CB_FLAGS: u32 =
    BPF_SOCK_OPS_RTT_CB_FLAG | BPF_SOCK_OPS_RETRANS_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG;

#[sock_ops]
pub fn gateway_sockops(ctx: SockOpsContext) -> u32 {
    let _ = try_sockops(&ctx);
    1
}

/// The socket's 4-tuple, IPv4-mapped IPv6 folded to IPv4.
struct Tuple {
    family: u16,
    local: [u32; 4],
    remote: [u32; 4],
    /// Host order.
    local_port: u16,
    /// Host order.
    remote_port: u16,
}

#[inline(always)]
pub(crate) fn read4(p: *const u32) -> [u32; 4] {
    // SAFETY: p points at a [u32; 4] of the context; the verifier wants 4-byte loads.
    unsafe {
        [
            core::ptr::read_volatile(p),
            core::ptr::read_volatile(p.add(1)),
            core::ptr::read_volatile(p.add(2)),
            core::ptr::read_volatile(p.add(3)),
        ]
    }
}

#[inline(always)]
pub(crate) fn fold_mapped(a: [u32; 4]) -> Option<[u32; 4]> {
    if a[0] == 0 && a[1] == 0 && a[2] == 0xffffu32.to_be() {
        Some([a[3], 0, 0, 0])
    } else {
        None
    }
}

#[inline(always)]
fn tuple(ctx: &SockOpsContext) -> Option<Tuple> {
    let family = ctx.family();
    let local_port = ctx.local_port() as u16;
    // remote_port: network order in the high 16 bits.
    let remote_port = u32::from_be(ctx.remote_port()) as u16;
    if family == u32::from(AF_INET) {
        return Some(Tuple {
            family: AF_INET,
            local: [ctx.local_ip4(), 0, 0, 0],
            remote: [ctx.remote_ip4(), 0, 0, 0],
            local_port,
            remote_port,
        });
    }
    if family != u32::from(AF_INET6) {
        return None;
    }
    // SAFETY: ops is the program's context.
    let ops = unsafe { &*ctx.ops };
    let local = read4(ops.local_ip6.as_ptr());
    let remote = read4(ops.remote_ip6.as_ptr());
    match (fold_mapped(local), fold_mapped(remote)) {
        (Some(local), Some(remote)) => Some(Tuple {
            family: AF_INET,
            local,
            remote,
            local_port,
            remote_port,
        }),
        _ => Some(Tuple {
            family: AF_INET6,
            local,
            remote,
            local_port,
            remote_port,
        }),
    }
}

fn try_sockops(ctx: &SockOpsContext) -> Option<()> {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => on_connect(ctx),
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => on_active_established(ctx),
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => on_passive_established(ctx),
        BPF_SOCK_OPS_RTT_CB | BPF_SOCK_OPS_RETRANS_CB => on_update(ctx, false),
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == TCP_CLOSE => {
            forget_client(ctx);
            on_update(ctx, true)
        }
        _ => None,
    }
}

#[inline(always)]
fn cookie(ctx: &SockOpsContext) -> u64 {
    // SAFETY: ctx is the program's context.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// Copies the socket's live counters into `rec`.
#[inline(always)]
fn snapshot(ops: &bpf_sock_ops, rec: &mut FlowRecord) {
    rec.srtt_us = ops.srtt_us >> 3;
    rec.rtt_min_us = ops.rtt_min;
    rec.total_retrans = ops.total_retrans;
    rec.bytes_received = ops.bytes_received;
    rec.bytes_acked = ops.bytes_acked;
}

#[inline(always)]
fn new_record(t: &Tuple, flags: u32) -> FlowRecord {
    FlowRecord {
        flags,
        local_addr: t.local,
        remote_addr: t.remote,
        local_port: t.local_port,
        remote_port: t.remote_port,
        family: t.family,
        ..FlowRecord::default()
    }
}

#[inline(always)]
fn enable_callbacks(ctx: &SockOpsContext) {
    let _ = ctx.set_cb_flags((ctx.cb_flags() | FLOW_CB_FLAGS) as i32);
}

/// Adds the socket to the acceleration sockhash (keyed by its own 4-tuple).
#[inline(always)]
fn accelerate(ctx: &SockOpsContext, t: &Tuple) -> bool {
    let mut key = SockPairKey {
        local_addr: t.local,
        remote_addr: t.remote,
        local_port: u32::from(t.local_port),
        remote_port: u32::from(t.remote_port),
    };
    // SAFETY: ops is the program's context, as bpf_sock_hash_update expects.
    let ops = unsafe { &mut *ctx.ops };
    if ACCEL_SOCKS.update(&mut key, ops, 0).is_ok() {
        count(Stat::AccelSockets);
        true
    } else {
        count(Stat::MapErrors);
        false
    }
}

fn on_connect(ctx: &SockOpsContext) -> Option<()> {
    let cfg = config()?;
    // TCP_CONNECT_CB runs in the connecting task's context, so this is the caller's cgroup.
    // SAFETY: helper without arguments.
    if unsafe { bpf_get_current_cgroup_id() } != cfg.gateway_cgroup_id {
        return None;
    }
    let t = tuple(ctx)?;
    let mut rec = new_record(&t, FLOW_F_ACTIVE);
    rec.connect_ns = now();
    if FLOWS
        .insert(&cookie(ctx), &rec, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        count(Stat::Flows);
    }
    enable_callbacks(ctx);
    Some(())
}

fn on_active_established(ctx: &SockOpsContext) -> Option<()> {
    let c = cookie(ctx);
    let t = tuple(ctx)?;
    let ts = now();
    let mut steered = false;
    if let Some(orig) = ORIG_BY_COOKIE.get_ptr_mut(&c) {
        // SAFETY: pointer from a successful lookup, valid for this program run.
        let mut o = unsafe { *orig };
        o.established_ns = ts;
        let key = SockAddrKey {
            addr: t.local,
            port: t.local_port,
            family: t.family,
        };
        if ORIG_BY_SRC.insert(&key, &o, 0).is_ok() {
            count(Stat::OrigRekeyed);
        } else {
            count(Stat::MapErrors);
        }
        let _ = ORIG_BY_COOKIE.remove(&c);
        steered = true;
        // Only the close is needed from a client socket: its entry goes with it, so a later
        // connection reusing the address is never mistaken for this one.
        let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
        debug!(
            ctx,
            "sock_ops: steered flow cookie={} client port {}", c, t.local_port
        );
    }
    let mut accel_flag = 0;
    let cfg = config()?;
    if cfg.flags & CONFIG_F_ACCELERATE != 0
        && (steered || is_gateway_port(t.remote_port))
        && accelerate(ctx, &t)
    {
        accel_flag = FLOW_F_ACCELERATED;
    }
    if let Some(rec) = FLOWS.get_ptr_mut(&c) {
        // SAFETY: pointer from a successful lookup; ops is the context.
        unsafe {
            if (*rec).established_ns == 0 {
                (*rec).established_ns = ts;
            }
            (*rec).flags |= FLOW_F_ESTABLISHED | accel_flag;
            snapshot(&*ctx.ops, &mut *rec);
        }
    }
    Some(())
}

fn on_passive_established(ctx: &SockOpsContext) -> Option<()> {
    let t = tuple(ctx)?;
    if !is_gateway_port(t.local_port) {
        return None;
    }
    let cfg = config()?;
    // A pod may listen on the same port in its own netns: only the gateway's netns counts.
    // SAFETY: ctx is the program's context.
    if unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } != cfg.gateway_netns_cookie {
        return None;
    }
    let mut flags = FLOW_F_PASSIVE | FLOW_F_ESTABLISHED;
    if cfg.flags & CONFIG_F_ACCELERATE != 0 && accelerate(ctx, &t) {
        flags |= FLOW_F_ACCELERATED;
    }
    let mut rec = new_record(&t, flags);
    rec.established_ns = now();
    // On one host the client's ACTIVE_ESTABLISHED (which re-keyed the original destination)
    // runs before the gateway's PASSIVE_ESTABLISHED: copy it so one lookup answers both.
    let client = SockAddrKey {
        addr: t.remote,
        port: t.remote_port,
        family: t.family,
    };
    // SAFETY: the value is copied out at once.
    if let Some(o) = unsafe { ORIG_BY_SRC.get(&client) }
        && o.bind_port == t.local_port
    {
        rec.orig_addr = o.addr;
        rec.orig_port = o.port;
        rec.orig_family = o.family;
    }
    // SAFETY: ops is the context.
    snapshot(unsafe { &*ctx.ops }, &mut rec);
    if FLOWS
        .insert(&cookie(ctx), &rec, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        count(Stat::Flows);
    }
    enable_callbacks(ctx);
    Some(())
}

/// A steered client socket closes: drop its original-destination entry if it still owns it.
fn forget_client(ctx: &SockOpsContext) -> Option<()> {
    let t = tuple(ctx)?;
    let key = SockAddrKey {
        addr: t.local,
        port: t.local_port,
        family: t.family,
    };
    // SAFETY: the value is read at once.
    let owner = unsafe { ORIG_BY_SRC.get(&key) }?.cookie;
    if owner == cookie(ctx) {
        let _ = ORIG_BY_SRC.remove(&key);
    }
    Some(())
}

fn on_update(ctx: &SockOpsContext, closing: bool) -> Option<()> {
    let rec = FLOWS.get_ptr_mut(&cookie(ctx))?;
    // SAFETY: pointer from a successful lookup; ops is the context.
    unsafe {
        snapshot(&*ctx.ops, &mut *rec);
        if closing && (*rec).closed_ns == 0 {
            (*rec).closed_ns = now();
            (*rec).flags |= FLOW_F_CLOSED;
        }
    }
    Some(())
}
