//! Types shared between the kernel programs (`gateway-ebpf`) and the daemon (`gateway-user`).
//!
//! Every struct is `#[repr(C)]` with explicit padding and a compile-time size assert, so both
//! sides agree on the layout byte for byte. Addresses are stored as four `u32` words in network
//! byte order (IPv4 uses word 0, the rest zero); ports are host order unless a field says `_be`.
#![no_std]

pub mod maps;
pub mod stats;

pub use maps::*;

/// `AF_INET`, as the kernel reports it in `bpf_sock_ops.family`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
