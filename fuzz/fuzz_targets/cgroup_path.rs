//! A cgroup path from the walk: any path gives a (maybe empty) workload, never a panic; ids
//! found are hex of container-id length.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        let w = nasflow_enrich::container::parse_cgroup_path(path);
        if let Some(id) = &w.container_id {
            assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
        }
    }
});
