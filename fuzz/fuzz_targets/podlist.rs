//! The kubelet's `/pods` body: any bytes give an index or an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nasflow_enrich::kubelet::parse_pod_list(data, &["app".to_owned(), "team.example.com/task".to_owned()]);
});
