//! The kernel's export caches (nfsd.fh and nfsd.export content): any text gives entries and
//! a count of skipped lines, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (entries, skipped) = nasflow_enrich::exports::parse_fh_content(text);
        assert!(entries.len() + skipped <= text.lines().count());
        let numbered = nasflow_enrich::exports::parse_export_content(text);
        assert!(numbered.len() <= text.lines().count());
        let mut t = nasflow_enrich::exports::ExportTable::default();
        t.update(text, text);
    }
});
