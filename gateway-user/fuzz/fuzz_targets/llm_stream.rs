//! cargo-fuzz target `llm_stream`: see `gateway_fuzz::llm_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::llm_stream(data));
