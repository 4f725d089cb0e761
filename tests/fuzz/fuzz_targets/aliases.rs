//! `Aliases::parse` on any text (up to the first newline; the rest is a
//! reference looked up through the aliases).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hoist_fuzz::check_aliases_text(&hoist_fuzz::text(data));
});
