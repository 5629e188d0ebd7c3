//! cgroup/connect4 and cgroup/connect6: steer connections to configured virtual addresses into
//! the gateway's listener and record the original destination under the socket cookie.
//!
//! The gateway's own connects are never steered: they are recognised by the gateway's cgroup id
//! (`GlobalConfig::gateway_cgroup_id`), which needs no cooperation from the proxy code.
//! Clients in the gateway's network namespace go to loopback; clients in other namespaces
//! (pods) go to the configured node address, or are left alone when there is none.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_ns,
    },
    macros::cgroup_sock_addr,
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use gateway_common::{
    AF_INET, AF_INET6, CONFIG_F_NODE_IP4, CONFIG_F_NODE_IP6, OrigDst, STEER_KEY_PORT_BITS,
    SteerKey4, SteerKey6, SteerTarget, stats::Stat,
};

use crate::maps::{ORIG_BY_COOKIE, STEER_V4, STEER_V6, config, count};

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
/// Verdict: let the connect() go on (with the possibly rewritten address).
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn steer_connect4(ctx: SockAddrContext) -> i32 {
    let _ = try_connect4(&ctx);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn steer_connect6(ctx: SockAddrContext) -> i32 {
    let _ = try_connect6(&ctx);
    ALLOW
}

/// Same-netns clients are steered to loopback, others to the node address (if configured).
enum Where {
    Loopback,
    Node,
}

/// Checks that apply to both families; `None` means "leave the connect alone".
#[inline(always)]
fn should_steer(ctx: &SockAddrContext, node_flag: u32) -> Option<Where> {
    let cfg = config()?;
    // SAFETY: helper without arguments.
    if unsafe { bpf_get_current_cgroup_id() } == cfg.gateway_cgroup_id {
        count(Stat::SkipGateway);
        return None;
    }
    // SAFETY: ctx is the program's context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    if netns == cfg.gateway_netns_cookie {
        Some(Where::Loopback)
    } else if cfg.flags & node_flag != 0 {
        Some(Where::Node)
    } else {
        count(Stat::SkipNoNodeAddr);
        None
    }
}

#[inline(always)]
fn remember(ctx: &SockAddrContext, addr: [u32; 4], port: u16, family: u16, t: &SteerTarget) {
    // SAFETY: ctx is the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let orig = OrigDst {
        addr,
        port,
        family,
        bind_port: t.bind_port,
        _pad: 0,
        // SAFETY: helper without arguments.
        connect_ns: unsafe { bpf_ktime_get_ns() },
        established_ns: 0,
        cookie,
    };
    if ORIG_BY_COOKIE.insert(&cookie, &orig, 0).is_err() {
        count(Stat::MapErrors);
    }
}

fn try_connect4(ctx: &SockAddrContext) -> Option<()> {
    // SAFETY: the kernel hands a valid bpf_sock_addr to the program.
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.type_ != SOCK_STREAM || sa.protocol != IPPROTO_TCP {
        return None;
    }
    // user_port holds the port in network order in its low 16 bits.
    let port_be = sa.user_port as u16;
    let dst = sa.user_ip4;
    let key = Key::new(
        STEER_KEY_PORT_BITS + 32,
        SteerKey4 {
            port_be,
            _pad: 0,
            addr: dst,
        },
    );
    let target = *STEER_V4.get(&key)?;
    let new_ip = match should_steer(ctx, CONFIG_F_NODE_IP4)? {
        Where::Loopback => 0x7f00_0001u32.to_be(),
        Where::Node => config()?.node_ip4,
    };
    let port = u16::from_be(port_be);
    remember(ctx, [dst, 0, 0, 0], port, AF_INET, &target);
    sa.user_ip4 = new_ip;
    sa.user_port = u32::from(target.bind_port.to_be());
    count(Stat::Steered);
    debug!(
        ctx,
        "connect4: steer {:i}:{} -> {:i}:{} (rule {})",
        u32::from_be(dst),
        port,
        u32::from_be(new_ip),
        target.bind_port,
        target.rule
    );
    Some(())
}

fn try_connect6(ctx: &SockAddrContext) -> Option<()> {
    // SAFETY: the kernel hands a valid bpf_sock_addr to the program.
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.type_ != SOCK_STREAM || sa.protocol != IPPROTO_TCP {
        return None;
    }
    let port_be = sa.user_port as u16;
    // The verifier only accepts 4-byte accesses to user_ip6: read word by word.
    let p = sa.user_ip6.as_ptr();
    // SAFETY: indexes 0..4 of a [u32; 4] inside the context.
    let dst = unsafe {
        [
            core::ptr::read_volatile(p),
            core::ptr::read_volatile(p.add(1)),
            core::ptr::read_volatile(p.add(2)),
            core::ptr::read_volatile(p.add(3)),
        ]
    };
    let key = Key::new(
        STEER_KEY_PORT_BITS + 128,
        SteerKey6 {
            port_be,
            _pad: 0,
            addr: dst,
        },
    );
    let target = *STEER_V6.get(&key)?;
    let new_ip = match should_steer(ctx, CONFIG_F_NODE_IP6)? {
        Where::Loopback => [0, 0, 0, 1u32.to_be()],
        Where::Node => config()?.node_ip6,
    };
    let port = u16::from_be(port_be);
    remember(ctx, dst, port, AF_INET6, &target);
    let w = sa.user_ip6.as_mut_ptr();
    // SAFETY: as above, word-sized writes into the context.
    unsafe {
        core::ptr::write_volatile(w, new_ip[0]);
        core::ptr::write_volatile(w.add(1), new_ip[1]);
        core::ptr::write_volatile(w.add(2), new_ip[2]);
        core::ptr::write_volatile(w.add(3), new_ip[3]);
    }
    sa.user_port = u32::from(target.bind_port.to_be());
    count(Stat::Steered);
    debug!(
        ctx,
        "connect6: steer port {} -> port {} (rule {})", port, target.bind_port, target.rule
    );
    Some(())
}
