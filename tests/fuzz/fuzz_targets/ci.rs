//! `hoist::source::ci::parse` (the `POST /v1/update` body) and `parse_query` on
//! any bytes: what parses is a push of a valid reference (see `hoist::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzzing::ci(data));
