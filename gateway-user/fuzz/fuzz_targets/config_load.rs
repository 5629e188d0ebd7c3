//! cargo-fuzz target `config_load`: see `gateway_fuzz::config_load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::config_load(data));
