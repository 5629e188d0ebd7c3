//! cargo-fuzz target `mcp_jsonrpc`: see `gateway_fuzz::mcp_jsonrpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_fuzz::mcp_jsonrpc(data));
