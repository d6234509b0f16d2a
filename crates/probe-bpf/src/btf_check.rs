//! A test that holds the compiled BPF object to the Rust ABI types: every member of every
//! shared struct, as the object's BTF records it (what the programs were compiled against),
//! sits at the offset the generated Rust type has. bindgen's own asserts compare the Rust
//! types with libclang's reading of `nasflow.h`; this closes the loop with the object itself,
//! which clang (maybe another version, `CLANG=...`) built separately.

use std::collections::BTreeMap;

use object::{Object, ObjectSection};

/// Struct name to its members' (name, byte offset), from a BPF object's `.BTF` section.
fn btf_structs(obj: &[u8]) -> BTreeMap<String, Vec<(String, u32)>> {
    let file = object::File::parse(obj).expect("a BPF ELF");
    let btf = file.section_by_name(".BTF").expect(".BTF section").data().expect("BTF bytes");
    let u32_at = |o: usize| u32::from_le_bytes(btf[o..o + 4].try_into().expect("4 bytes"));
    assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), 0xeb9f, "BTF magic");
    let hdr_len = u32_at(4) as usize;
    let (type_off, type_len, str_off) = (u32_at(8) as usize, u32_at(12) as usize, u32_at(16) as usize);
    let strings = &btf[hdr_len + str_off..];
    let name = |off: u32| {
        let s = &strings[off as usize..];
        String::from_utf8_lossy(&s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]).into_owned()
    };
    let mut out = BTreeMap::new();
    let (mut at, end) = (hdr_len + type_off, hdr_len + type_off + type_len);
    while at < end {
        let (name_off, info) = (u32_at(at), u32_at(at + 4));
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31 == 1);
        at += 12;
        // Bytes that follow each kind's fixed part (linux/btf.h).
        let extra = match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => vlen * 12, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => vlen * 8,           // ENUM, FUNC_PROTO
            _ => 0,
        };
        if kind == 4 {
            let members = (0..vlen)
                .map(|i| {
                    let m = at + i * 12;
                    let bits = if kind_flag { u32_at(m + 8) & 0x00ff_ffff } else { u32_at(m + 8) };
                    (name(u32_at(m)), bits / 8)
                })
                .collect();
            out.insert(name(name_off), members);
        }
        at += extra;
    }
    out
}

/// (struct, [(member, Rust offset)]) of every shared struct, from the generated types.
macro_rules! layouts {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {
        vec![$((
            stringify!($ty),
            vec![$((stringify!($field), u32::try_from(core::mem::offset_of!(crate::abi::$ty, $field)).expect("small"))),*],
        )),*]
    };
}

#[test]
fn the_objects_and_the_rust_types_agree_on_every_offset() {
    for object in [crate::probe_object(), crate::compat_object()] {
        let btf = btf_structs(object);
        let rust = layouts! {
            nasflow_proc_name { name }
            nasflow_rpc_task_key { client_id, task_id }
            nasflow_rpc_task { cgroup, start_ns, dev, op, err, state, dir, slow }
            nasflow_slow_op { cgroup, start_ns, duration_ns, bytes, fileid, offset, dev, op, err, dir, has_rpc, xid, rtt_us, pad }
            nasflow_io_key { cgroup, dev, op, err, dir, pad }
            nasflow_dir_key { dev, pad, ino }
            nasflow_io_counters { ops, bytes }
            nasflow_io_hist { slots, sum_ns }
            nasflow_inflight_key { dev, op, pad, fileid, offset }
            nasflow_inflight_val { cgroup, start_ns, pending, dir, pad }
            nasflow_field { offset, size }
            nasflow_tp_fields { dev, fileid, offset, count, arg_count, eof, error }
            nasflow_layout { read_init, read_done, write_init, write_done, commit_init, commit_done }
            nasflow_rpc_layout {
                begin_task_id, begin_client_id, req_task_id, req_client_id, req_progname, req_procname,
                end_task_id, end_client_id, end_status, lat_task_id, lat_client_id, lat_rtt, lat_xid,
                rtx_task_id, rtx_client_id, hint_dev,
            }
        };
        for (name, fields) in rust {
            let members = btf.get(name).unwrap_or_else(|| panic!("{name} is not in the object's BTF"));
            let expected: Vec<(String, u32)> = fields.iter().map(|(f, o)| ((*f).to_owned(), *o)).collect();
            assert_eq!(members, &expected, "{name}: the BPF object and the Rust type disagree");
        }
    }
}
