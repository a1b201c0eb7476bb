//! cargo-fuzz target: `decoders::npy` (see testkit/src/decoders.rs).
#![no_main]

#[allow(dead_code)]
use grape_testkit::decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::npy(data));
