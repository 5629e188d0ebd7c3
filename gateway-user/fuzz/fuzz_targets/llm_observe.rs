//! cargo-fuzz target `llm_observe`: see `gateway_fuzz::llm_observe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::llm_observe(data));
