//! `hoist::source::distribution::parse` on any bytes, then `into_update` on
//! every event (see `hoist::fuzzing` for the properties checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzzing::distribution(data));
