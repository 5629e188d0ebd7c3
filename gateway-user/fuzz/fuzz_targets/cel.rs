//! cargo-fuzz target `cel`: see `gateway_fuzz::cel`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::cel(data));
