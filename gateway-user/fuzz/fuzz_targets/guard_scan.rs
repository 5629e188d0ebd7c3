//! cargo-fuzz target `guard_scan`: see `gateway_fuzz::guard_scan`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::guard_scan(data));
