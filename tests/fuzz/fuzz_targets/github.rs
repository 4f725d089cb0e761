//! `hoist::source::github::parse` on any bytes (JSON or form-encoded), then
//! `into_update`/`into_push` on every event (see `hoist::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hoist::fuzzing::github(data));
