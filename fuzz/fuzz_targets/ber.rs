#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11smime_fuzz::ber(data));
