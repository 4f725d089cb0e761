//! `hoist::source::signature::verify` on `SECRET\nSIGNATURE\nBODY`: never panics,
//! accepts only the HMAC (see `hoist::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzzing::signature(data));
