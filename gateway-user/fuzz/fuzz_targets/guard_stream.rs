//! cargo-fuzz target `guard_stream`: see `gateway_fuzz::guard_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::guard_stream(data));
