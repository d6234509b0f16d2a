//! The config file and the environment: any text gives settings or an error naming the
//! setting, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = nasflow::config::parse_file(std::path::Path::new("fuzz.yaml"), text);
    // The same bytes as the environment: NAME=VALUE lines.
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = nasflow::config::env_layer(vars);
});
