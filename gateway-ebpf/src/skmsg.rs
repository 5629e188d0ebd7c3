//! sk_msg: when acceleration is on, a message sent on a socket in the sockhash is handed
//! straight to the peer socket's receive queue (`BPF_F_INGRESS`), skipping the TCP/IP stack.
//! A socket whose peer is not in the sockhash takes the normal path.

use aya_ebpf::{
    bindings::{BPF_F_INGRESS, sk_action::SK_PASS},
    macros::sk_msg,
    programs::SkMsgContext,
};
use gateway_common::{AF_INET, SockPairKey, stats::Stat};

use crate::{
    maps::{ACCEL_SOCKS, count},
    sockops::{fold_mapped, read4},
};

#[sk_msg]
pub fn accel_skmsg(ctx: SkMsgContext) -> u32 {
    // SAFETY: the kernel hands a valid sk_msg_md to the program.
    let md = unsafe { &*ctx.msg };
    let (local, remote) = if md.family == u32::from(AF_INET) {
        ([md.local_ip4, 0, 0, 0], [md.remote_ip4, 0, 0, 0])
    } else {
        let local = read4(md.local_ip6.as_ptr());
        let remote = read4(md.remote_ip6.as_ptr());
        // Keys of IPv4-mapped sockets are stored as IPv4 (see sockops).
        match (fold_mapped(local), fold_mapped(remote)) {
            (Some(l), Some(r)) => (l, r),
            _ => (local, remote),
        }
    };
    // The peer's key: its local side is our remote side.
    let mut peer = SockPairKey {
        local_addr: remote,
        remote_addr: local,
        local_port: u32::from_be(md.remote_port),
        remote_port: md.local_port,
    };
    if ACCEL_SOCKS.redirect_msg(&ctx, &mut peer, u64::from(BPF_F_INGRESS)) == i64::from(SK_PASS) {
        count(Stat::AccelRedirects);
    } else {
        count(Stat::AccelPassed);
    }
    // Always pass: the redirect helper answers SK_DROP when the peer is unknown, and the
    // message must then go the normal way.
    SK_PASS
}
