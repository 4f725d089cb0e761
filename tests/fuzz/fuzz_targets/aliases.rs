//! `Aliases::parse` on any text up to the first newline; the rest is a
//! reference looked up through the aliases (see `hoist::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzzing::aliases(data));
