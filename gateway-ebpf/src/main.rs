//! Kernel programs of the gateway. One module per attach point; maps live in `maps.rs`.
//!
//! - `connect.rs`: cgroup/connect4 and cgroup/connect6 steer connections to virtual addresses
//!   into the gateway and remember where they were going.
//! - `sockops.rs`: sock_ops keeps a per-flow record of the gateway's connections and re-keys
//!   steered connections by client address once established.
//! - `skmsg.rs`: optional sk_msg redirect between a local app socket and the gateway socket.
#![no_std]
#![no_main]

mod connect;
mod maps;
mod skmsg;
mod sockops;

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
