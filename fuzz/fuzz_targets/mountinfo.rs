//! A mountinfo text: any text gives mounts and a count of skipped lines, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (mounts, skipped) = nasflow_enrich::mountinfo::parse_mountinfo(text);
        assert!(skipped <= text.lines().count());
        for m in mounts.values() {
            // Each mount's attributes can be built.
            let _ = m.mount_points.len();
        }
    }
});
