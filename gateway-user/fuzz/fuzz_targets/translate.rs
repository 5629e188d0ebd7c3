//! cargo-fuzz target `translate`: see `gateway_fuzz::translate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::translate(data));
