//! The health port's request head: any bytes give a path or a refusal, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let head = String::from_utf8_lossy(data);
    if let Some(path) = nasflow::health::request_path(&head) {
        assert!(!path.contains('?'));
    }
});
