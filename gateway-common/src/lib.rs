//! Types shared between the kernel programs (`gateway-ebpf`) and the daemon (`gateway-user`).
//!
//! Every struct is `#[repr(C)]` with explicit padding and a compile-time size assert, so both
//! sides agree on the layout byte for byte.
#![no_std]
