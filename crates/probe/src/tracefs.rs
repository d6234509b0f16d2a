//! tracefs: finding (or mounting) it, and reading tracepoint format files into the field
//! layouts the BPF programs are given before load.

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use nasflow_probe_bpf::{
    programs::{self, Program},
    Field, Layout, RpcLayout, TpFields, HINT_EVENT_COUNT,
};

pub use nasflow_probe_bpf::RECORD_BYTES;

use crate::ProbeError;

/// Where aya (and so nasflow) looks for tracefs, in order.
pub const TRACEFS_PATHS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// One `field:` line of a tracepoint format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatField {
    /// The field's name, without any array suffix.
    pub name: String,
    /// Byte offset in the raw record.
    pub offset: u16,
    /// Size in bytes.
    pub size: u16,
    /// Whether the field is signed.
    pub signed: bool,
}

/// Parses a tracefs `format` file into its fields (common_* included).
///
/// Lines that are not `field:` lines are skipped; a `field:` line that cannot be parsed is
/// an error, so that a changed format is noticed instead of misread.
pub fn parse_format(text: &str) -> Result<Vec<FormatField>, String> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        let mut signed = false;
        for part in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<u16>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u16>().ok();
            } else if let Some(v) = part.strip_prefix("signed:") {
                signed = v.trim() == "1";
            } else if decl.is_none() {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            return Err(format!("unparsable format line: {line}"));
        };
        let last = decl.split_whitespace().last().unwrap_or_default();
        let name = last.split('[').next().unwrap_or_default().trim_start_matches('*');
        if name.is_empty() {
            return Err(format!("unparsable field declaration: {line}"));
        }
        fields.push(FormatField { name: name.to_owned(), offset, size, signed });
    }
    Ok(fields)
}

/// (layout slot, accepted names in order of preference, required) of the fields nasflow
/// reads from one event.
type FieldSpec = &'static [(Slot, &'static [&'static str], bool)];

#[derive(Clone, Copy)]
enum Slot {
    Dev,
    FileId,
    Offset,
    Count,
    ArgCount,
    Eof,
    Error,
}

const INITIATE: &[(Slot, &[&str], bool)] = &[
    (Slot::Dev, &["dev"], true),
    (Slot::FileId, &["fileid"], true),
    (Slot::Offset, &["offset"], true),
    (Slot::Count, &["count"], true),
];
const IO_DONE: &[(Slot, &[&str], bool)] = &[
    (Slot::Dev, &["dev"], true),
    (Slot::FileId, &["fileid"], true),
    (Slot::Offset, &["offset"], true),
    (Slot::Count, &["res_count", "count"], true),
    (Slot::ArgCount, &["arg_count"], false),
    (Slot::Eof, &["eof"], false),
    (Slot::Error, &["error", "status"], true),
];
const COMMIT_DONE: &[(Slot, &[&str], bool)] = &[
    (Slot::Dev, &["dev"], true),
    (Slot::FileId, &["fileid"], true),
    (Slot::Offset, &["offset"], true),
    (Slot::Error, &["error", "status"], true),
];

/// The fields of each data-path event, in `programs::DATA_PATH` (and `Layout`) order.
const DATA_PATH_FIELDS: [FieldSpec; 6] = [INITIATE, IO_DONE, INITIATE, IO_DONE, INITIATE, COMMIT_DONE];

/// The event of a tracepoint program (every data-path, RPC and hint program is one).
fn event_of(p: &Program) -> &'static str {
    p.hook.event().unwrap_or(p.name)
}

/// The tracepoint names (category `nfs`) of the data path, in `Layout` order.
#[must_use]
pub fn probe_events() -> [&'static str; 6] {
    programs::DATA_PATH.map(|p| event_of(&p))
}

fn expected_size(slot: Slot) -> &'static [u16] {
    match slot {
        Slot::Dev => &[4],
        Slot::FileId | Slot::Offset => &[8],
        Slot::Count | Slot::ArgCount | Slot::Error => &[4, 8],
        Slot::Eof => &[1, 4],
    }
}

/// Builds the layout of one event from its parsed format.
fn event_fields(event: &str, fields: &[FormatField], spec: &[(Slot, &[&str], bool)]) -> Result<TpFields, ProbeError> {
    let mut out = TpFields::default();
    for &(slot, names, required) in spec {
        let found = names.iter().find_map(|n| fields.iter().find(|f| f.name == *n));
        let Some(f) = found else {
            if required {
                return Err(ProbeError::MissingField { event: event.to_owned(), field: names.join(" or ") });
            }
            continue;
        };
        if !expected_size(slot).contains(&f.size) || f.offset % f.size != 0 || f.offset + 8 > RECORD_BYTES {
            return Err(ProbeError::UnsupportedField {
                event: event.to_owned(),
                field: f.name.clone(),
                offset: f.offset,
                size: f.size,
            });
        }
        let field = Field { offset: f.offset, size: f.size };
        match slot {
            Slot::Dev => out.dev = field,
            Slot::FileId => out.fileid = field,
            Slot::Offset => out.offset = field,
            Slot::Count => out.count = field,
            Slot::ArgCount => out.arg_count = field,
            Slot::Eof => out.eof = field,
            Slot::Error => out.error = field,
        }
    }
    Ok(out)
}

/// Builds the probe's layout from the six format files' texts, in `probe_events()` order.
pub fn layout_from_formats(texts: &[String; 6]) -> Result<Layout, ProbeError> {
    let mut parts = [TpFields::default(); 6];
    for (((event, spec), text), part) in probe_events().iter().zip(DATA_PATH_FIELDS).zip(texts).zip(parts.iter_mut()) {
        let fields =
            parse_format(text).map_err(|detail| ProbeError::BadFormat { event: (*event).to_owned(), detail })?;
        *part = event_fields(event, &fields, spec)?;
    }
    let [read_init, read_done, write_init, write_done, commit_init, commit_done] = parts;
    Ok(Layout { read_init, read_done, write_init, write_done, commit_init, commit_done })
}

/// The sunrpc events the RPC programs attach to, in the order [`rpc_layout_from_formats`]
/// takes their format texts. `xprt_retransmit` (5.12 and later) is optional: without it
/// retransmissions are not counted.
#[must_use]
pub fn rpc_events() -> [&'static str; 5] {
    programs::RPC.map(|p| event_of(&p))
}

/// The nfs events that hint which mount a thread works on, in `hint_dev` order.
#[must_use]
pub fn hint_events() -> [&'static str; HINT_EVENT_COUNT] {
    programs::HINTS.map(|p| event_of(&p))
}

/// One field of an RPC or hint event: its place, if it has the size nasflow reads.
fn rpc_field(event: &str, fields: &[FormatField], name: &str, sizes: &[u16]) -> Result<Field, ProbeError> {
    let f = fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ProbeError::MissingField { event: event.to_owned(), field: name.to_owned() })?;
    if !sizes.contains(&f.size) || f.offset % f.size != 0 || f.offset + 8 > RECORD_BYTES {
        return Err(ProbeError::UnsupportedField {
            event: event.to_owned(),
            field: f.name.clone(),
            offset: f.offset,
            size: f.size,
        });
    }
    Ok(Field { offset: f.offset, size: f.size })
}

/// Builds the RPC programs' layout from the format texts of [`rpc_events`] and of the hint
/// events ([`hint_events`]), `None` where an event does not exist on this kernel. The first
/// four sunrpc events are required; a missing retransmit or hint event leaves its fields
/// zero-sized (its program is not attached).
pub fn rpc_layout_from_formats(
    rpc: &[Option<String>; 5],
    hints: &[Option<String>; HINT_EVENT_COUNT],
) -> Result<RpcLayout, ProbeError> {
    let events = rpc_events();
    let mut parsed: Vec<Vec<FormatField>> = Vec::with_capacity(5);
    for (event, text) in events.iter().zip(rpc) {
        let fields = match text {
            Some(t) => {
                parse_format(t).map_err(|detail| ProbeError::BadFormat { event: (*event).to_owned(), detail })?
            }
            None if *event == "xprt_retransmit" => Vec::new(),
            None => {
                return Err(ProbeError::MissingField { event: (*event).to_owned(), field: "(the event itself)".into() })
            }
        };
        parsed.push(fields);
    }
    let id = |i: usize, name: &str| rpc_field(events[i], &parsed[i], name, &[4]);
    let mut out = RpcLayout {
        begin_task_id: id(0, "task_id")?,
        begin_client_id: id(0, "client_id")?,
        req_task_id: id(1, "task_id")?,
        req_client_id: id(1, "client_id")?,
        req_progname: id(1, "progname")?,
        req_procname: id(1, "procname")?,
        end_task_id: id(2, "task_id")?,
        end_client_id: id(2, "client_id")?,
        end_status: id(2, "status")?,
        lat_task_id: id(3, "task_id")?,
        lat_client_id: id(3, "client_id")?,
        lat_rtt: rpc_field(events[3], &parsed[3], "rtt", &[4, 8])?,
        // Slow operations carry it where the kernel has it; none is no reason to fail.
        lat_xid: id(3, "xid").unwrap_or_default(),
        ..RpcLayout::default()
    };
    if rpc[4].is_some() {
        out.rtx_task_id = id(4, "task_id")?;
        out.rtx_client_id = id(4, "client_id")?;
    }
    for ((slot, event), text) in out.hint_dev.iter_mut().zip(hint_events()).zip(hints) {
        if let Some(t) = text {
            let fields = parse_format(t).map_err(|detail| ProbeError::BadFormat { event: event.to_owned(), detail })?;
            *slot = rpc_field(event, &fields, "dev", &[4])?;
        }
    }
    Ok(out)
}

/// A mounted tracefs.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds tracefs where aya looks for it, mounting it at the first place when absent.
    pub fn find_or_mount() -> Result<Self, ProbeError> {
        if let Some(t) = crate::preflight::mounted_tracefs() {
            return Ok(t);
        }
        let target = TRACEFS_PATHS[0];
        if let Err(source) = mount_tracefs(target) {
            // Another agent (or `nasflow check`) starting at the same time may have mounted it
            // first, and ours then fails with EBUSY: use theirs.
            return crate::preflight::mounted_tracefs().ok_or(ProbeError::Tracefs { target: target.into(), source });
        }
        tracing::info!(path = target, "mounted tracefs");
        Ok(Self { root: PathBuf::from(target) })
    }

    /// tracefs mounted at `root` (for checks that must not mount anything).
    #[must_use]
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// Where it is mounted.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The format file of `category:event`.
    #[must_use]
    pub fn format_path(&self, category: &str, event: &str) -> PathBuf {
        self.root.join("events").join(category).join(event).join("format")
    }

    /// Whether `category:event` exists now (its module is loaded).
    #[must_use]
    pub fn has_event(&self, category: &str, event: &str) -> bool {
        self.format_path(category, event).is_file()
    }

    /// Reads the RPC programs' layout from the sunrpc and hint events' formats.
    pub fn read_rpc_layout(&self) -> Result<RpcLayout, ProbeError> {
        let read = |category: &str, event: &str| -> Result<Option<String>, ProbeError> {
            let path = self.format_path(category, event);
            match fs::read_to_string(&path) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(ProbeError::Io { path, source }),
            }
        };
        let mut rpc: [Option<String>; 5] = Default::default();
        for (event, text) in rpc_events().iter().zip(rpc.iter_mut()) {
            *text = read("sunrpc", event)?;
        }
        let mut hints: [Option<String>; HINT_EVENT_COUNT] = Default::default();
        for (event, text) in hint_events().iter().zip(hints.iter_mut()) {
            *text = read("nfs", event)?;
        }
        rpc_layout_from_formats(&rpc, &hints)
    }

    /// Reads the layout of the probe's six events; `None` while the nfs module is absent.
    pub fn read_layout(&self) -> Result<Option<Layout>, ProbeError> {
        let mut texts: [String; 6] = Default::default();
        for (event, text) in probe_events().iter().zip(texts.iter_mut()) {
            let path = self.format_path("nfs", event);
            match fs::read_to_string(&path) {
                Ok(t) => *text = t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(ProbeError::Io { path, source }),
            }
        }
        layout_from_formats(&texts).map(Some)
    }
}

fn mount_tracefs(target: &str) -> io::Result<()> {
    let src = CString::new("tracefs").map_err(io::Error::other)?;
    let dst = CString::new(target).map_err(io::Error::other)?;
    // SAFETY: all pointers are valid NUL-terminated strings or null for data.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_DONE_61: &str = include_str!("../tests/fixtures/formats/6.1/nfs_readpage_done");

    fn formats(dir: &str) -> [String; 6] {
        probe_events().map(|e| {
            fs::read_to_string(format!("{}/tests/fixtures/formats/{dir}/{e}", env!("CARGO_MANIFEST_DIR")))
                .expect("fixture")
        })
    }

    #[test]
    fn parses_debian_6_1_readpage_done() {
        let fields = parse_format(READ_DONE_61).expect("parse");
        let names: Vec<_> = fields.iter().map(|f| f.name.as_str()).collect();
        assert!(names.starts_with(&["common_type", "common_flags", "common_preempt_count", "common_pid"]));
        let err = fields.iter().find(|f| f.name == "error").expect("error field");
        assert_eq!((err.offset, err.size, err.signed), (44, 4, true));
        let eof = fields.iter().find(|f| f.name == "eof").expect("eof");
        assert_eq!((eof.offset, eof.size), (40, 1));
    }

    #[test]
    fn layout_of_debian_6_1() {
        let layout = layout_from_formats(&formats("6.1")).expect("layout");
        assert_eq!(layout.read_init.count, Field { offset: 32, size: 4 });
        assert_eq!(layout.read_done.count, Field { offset: 36, size: 4 });
        assert_eq!(layout.read_done.error, Field { offset: 44, size: 4 });
        assert_eq!(layout.write_done.error, Field { offset: 40, size: 4 });
        assert_eq!(layout.commit_done.error, Field { offset: 32, size: 4 });
        assert_eq!(layout.commit_done.count, Field::default());
        assert_eq!(layout.write_init.fileid, Field { offset: 16, size: 8 });
    }

    #[test]
    fn old_kernel_without_res_count_is_refused_by_name() {
        // 4.19: fields in another order, `count` as unsigned long, and no byte count on the
        // done side (only `status`): nasflow cannot count READ bytes there and says so.
        let msg = layout_from_formats(&formats("4.19")).expect_err("must fail").to_string();
        assert!(msg.contains("nfs_readpage_done") && msg.contains("res_count or count"), "{msg}");
        let read_init = parse_format(&formats("4.19")[0]).expect("parse");
        let fields = event_fields("nfs_initiate_read", &read_init, INITIATE).expect("initiate");
        assert_eq!(fields.count, Field { offset: 16, size: 8 });
        assert_eq!(fields.dev, Field { offset: 24, size: 4 });
    }

    #[test]
    fn missing_field_names_event_and_field() {
        let mut texts = formats("6.1");
        texts[1] = texts[1].replace("int error;", "int oops;");
        let err = layout_from_formats(&texts).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("nfs_readpage_done"), "{msg}");
        assert!(msg.contains("error or status"), "{msg}");
    }

    #[test]
    fn field_beyond_record_is_refused() {
        let mut texts = formats("6.1");
        texts[0] = texts[0].replace("offset:32;\tsize:4;", "offset:96;\tsize:4;");
        let msg = layout_from_formats(&texts).expect_err("must fail").to_string();
        assert!(msg.contains("nfs_initiate_read") && msg.contains("count"), "{msg}");
    }

    fn fixture(dir: &str, event: &str) -> Option<String> {
        fs::read_to_string(format!("{}/tests/fixtures/formats/{dir}/{event}", env!("CARGO_MANIFEST_DIR"))).ok()
    }

    fn rpc_formats(dir: &str) -> ([Option<String>; 5], [Option<String>; HINT_EVENT_COUNT]) {
        (rpc_events().map(|e| fixture(dir, e)), hint_events().map(|e| fixture(dir, e)))
    }

    #[test]
    fn rpc_layout_of_debian_6_1() {
        let (rpc, hints) = rpc_formats("6.1");
        let l = rpc_layout_from_formats(&rpc, &hints).expect("layout");
        assert_eq!((l.req_task_id, l.req_client_id), (Field { offset: 8, size: 4 }, Field { offset: 12, size: 4 }));
        assert_eq!((l.req_progname, l.req_procname), (Field { offset: 24, size: 4 }, Field { offset: 28, size: 4 }));
        assert_eq!(l.end_status, Field { offset: 32, size: 4 });
        assert_eq!(l.lat_rtt, Field { offset: 40, size: 8 });
        assert_eq!(l.lat_xid, Field { offset: 16, size: 4 });
        assert_eq!(l.rtx_client_id, Field { offset: 12, size: 4 });
        // dev moves with the event class: 8 in inode events, 16 in lookups, 24 in atomic_open.
        let devs: Vec<u16> = l.hint_dev.iter().map(|f| f.offset).collect();
        assert_eq!(devs, [8, 8, 16, 16, 8, 24]);
    }

    #[test]
    fn rpc_layout_degrades_without_optional_events_and_names_missing_ones() {
        let (mut rpc, mut hints) = rpc_formats("6.1");
        rpc[4] = None;
        hints[5] = None;
        let l = rpc_layout_from_formats(&rpc, &hints).expect("optional events may be missing");
        assert_eq!((l.rtx_task_id, l.hint_dev[5]), (Field::default(), Field::default()));
        rpc[2] = None;
        let msg = rpc_layout_from_formats(&rpc, &hints).expect_err("rpc_task_end is required").to_string();
        assert!(msg.contains("rpc_task_end"), "{msg}");
        let (mut rpc, hints) = rpc_formats("6.1");
        rpc[1] = rpc[1].as_ref().map(|t| t.replace("procname", "procedure"));
        let msg = rpc_layout_from_formats(&rpc, &hints).expect_err("procname is required").to_string();
        assert!(msg.contains("rpc_request") && msg.contains("procname"), "{msg}");
    }

    #[test]
    fn garbage_line_is_an_error_not_a_panic() {
        assert!(parse_format("\tfield:int x;\toffset:zz;\tsize:4;").is_err());
        assert_eq!(parse_format("name: x\nID: 1\nprint fmt: \"\"").expect("ok"), vec![]);
    }
}
