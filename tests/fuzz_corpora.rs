//! Replays every input the fuzz targets kept (`fuzz/corpus/<target>/`, seeds and what the
//! runs recorded in RELIABILITY.md found interesting) through the same parsers, with the same
//! checks, on the stable toolchain: a parser change that panics on a known input fails here,
//! in CI, without nightly or cargo-fuzz. Crashes found by fuzzing are kept as inputs here too.

use std::{fs, path::PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let bytes = fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{} is empty", dir.display());
    out
}

#[test]
fn podlist_corpus() {
    let labels = ["app".to_owned(), "team.example.com/task".to_owned()];
    let mut parsed = 0;
    for (_, data) in corpus("podlist") {
        parsed += usize::from(nasflow_enrich::kubelet::parse_pod_list(&data, &labels).is_ok());
    }
    assert!(parsed > 0, "the seed PodList parses");
}

#[test]
fn mountinfo_corpus() {
    for (_, data) in corpus("mountinfo") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let (_, skipped) = nasflow_enrich::mountinfo::parse_mountinfo(text);
            assert!(skipped <= text.lines().count());
        }
    }
}

#[test]
fn cgroup_path_corpus() {
    for (p, data) in corpus("cgroup_path") {
        if let Ok(path) = std::str::from_utf8(&data) {
            if let Some(id) = nasflow_enrich::container::parse_cgroup_path(path).container_id {
                assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{}: {id}", p.display());
            }
        }
    }
}

#[test]
fn tracefs_format_corpus() {
    use nasflow_probe::tracefs::{layout_from_formats, parse_format, RECORD_BYTES};
    for (p, data) in corpus("tracefs_format") {
        let Ok(text) = std::str::from_utf8(&data) else { continue };
        let _ = parse_format(text);
        let texts: [String; 6] = std::array::from_fn(|_| text.to_owned());
        if let Ok(l) = layout_from_formats(&texts) {
            for f in [l.read_init, l.read_done, l.write_init, l.write_done, l.commit_init, l.commit_done] {
                for field in [f.dev, f.fileid, f.offset, f.count, f.arg_count, f.eof, f.error] {
                    assert!(field.size == 0 || field.offset + 8 <= RECORD_BYTES, "{}: {field:?}", p.display());
                }
            }
        }
    }
}

#[test]
fn config_corpus() {
    for (_, data) in corpus("config") {
        let Ok(text) = std::str::from_utf8(&data) else { continue };
        let _ = nasflow::config::parse_file(std::path::Path::new("fuzz.yaml"), text);
        let vars: Vec<(String, String)> =
            text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let _ = nasflow::config::env_layer(vars);
    }
}

#[test]
fn health_request_corpus() {
    for (_, data) in corpus("health_request") {
        let head = String::from_utf8_lossy(&data);
        if let Some(path) = nasflow::health::request_path(&head) {
            assert!(!path.contains('?'));
        }
    }
}

#[test]
fn nfsd_exports_corpus() {
    let mut named = 0;
    for (_, data) in corpus("nfsd_exports") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let (entries, skipped) = nasflow_enrich::exports::parse_fh_content(text);
            assert!(entries.len() + skipped <= text.lines().count());
            named += entries.len() + nasflow_enrich::exports::parse_export_content(text).len();
        }
    }
    assert!(named > 0, "the seeds name exports");
}
