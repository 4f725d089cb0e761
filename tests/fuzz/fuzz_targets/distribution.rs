//! `hoist::source::distribution::parse` on any bytes, then `into_update` on every event.
#![no_main]

use hoist::event::SourceKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match hoist::source::distribution::parse(data) {
        Ok(events) => hoist_fuzz::check_events(&events, SourceKind::Distribution),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
