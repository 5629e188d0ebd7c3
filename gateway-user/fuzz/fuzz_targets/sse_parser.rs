//! cargo-fuzz target `sse_parser`: see `gateway_fuzz::sse_parser`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::sse_parser(data));
