//! `ImageRef::parse` and `Digest::parse` on any text: no panic, and a parsed
//! reference's Display parses back to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hoist_fuzz::check_reference_text(&hoist_fuzz::text(data));
});
