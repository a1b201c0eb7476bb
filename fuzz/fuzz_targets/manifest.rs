//! cargo-fuzz target: `decoders::manifest` (see tests/common/decoders.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/common/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::manifest(data));
