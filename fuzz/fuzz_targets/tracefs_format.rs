//! A tracefs `format` file: parsed fields, and the layouts built from them, or an error that
//! names the event; never a panic, and no accepted field beyond the bytes the programs read.
#![no_main]
use nasflow_probe::tracefs::{layout_from_formats, parse_format, RECORD_BYTES};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_format(text);
    let texts: [String; 6] = std::array::from_fn(|_| text.to_owned());
    if let Ok(l) = layout_from_formats(&texts) {
        for f in [l.read_init, l.read_done, l.write_init, l.write_done, l.commit_init, l.commit_done] {
            for field in [f.dev, f.fileid, f.offset, f.count, f.arg_count, f.eof, f.error] {
                assert!(field.size == 0 || field.offset + 8 <= RECORD_BYTES, "{field:?}");
            }
        }
    }
});
