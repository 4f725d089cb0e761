//! `ImageRef::parse` and `Digest::parse` on any text: no panic, and a parsed
//! reference's Display parses back to the same reference (see `hoist::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzzing::reference(data));
