#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| intake_fuzz::exercise("zendesk", data));
