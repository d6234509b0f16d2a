//! Attribute sets, encoded once and reused: the workload and NAS attributes per (cgroup,
//! device) while the enricher hands out the same objects, and the few attributes of a series'
//! own (operation, error type, direction, overflow).

use std::{collections::HashMap, sync::Arc};

use nasflow_enrich::{
    errno::errno_name,
    names::{Names, NasView, Workload},
};
use nasflow_probe::Operation;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

use crate::schema;

/// A string attribute.
pub(crate) fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        key_strindex: 0,
    }
}

/// Attribute sets encoded once and reused: per (cgroup, device) while the enricher hands
/// out the same workload and NAS objects, and the few attributes of a series' own.
#[derive(Debug, Default)]
pub(crate) struct AttrCache {
    base: HashMap<(u64, u32), CachedBase>,
    own: HashMap<(u32, Own), Arc<[u8]>>,
    /// `nfs.directory` by (tag, directory id).
    dirs: HashMap<(u32, u16), Arc<[u8]>>,
}

#[derive(Debug)]
struct CachedBase {
    workload: Option<Arc<Workload>>,
    nas: Option<Arc<NasView>>,
    /// Encoded attributes, by the field tag of the data point type they go into.
    by_tag: HashMap<u32, Arc<[u8]>>,
}

/// A series' own attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Own {
    /// `nfs.operation.name`.
    Op(Operation),
    /// `error.type` of a failed operation.
    Error(u16),
    /// `nfs.io.direction` of a READ/WRITE or application read/write.
    Direction(Operation),
    /// `otel.metric.overflow=true`.
    Overflow,
}

fn same<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl AttrCache {
    /// The workload and NAS attributes of (cgroup, device), encoded as field `tag` of a data
    /// point; shared by every series of the pair until the names change.
    pub(crate) fn base(&mut self, cg: u64, dev: u32, names: &Names, tag: u32) -> Arc<[u8]> {
        let workload = names.workloads.get(&cg);
        let nas = names.nas_of(dev, cg);
        let entry = self.base.entry((cg, dev)).or_insert_with(|| CachedBase {
            workload: None,
            nas: None,
            by_tag: HashMap::new(),
        });
        if entry.by_tag.is_empty() || !same(entry.workload.as_ref(), workload) || !same(entry.nas.as_ref(), nas) {
            entry.workload = workload.cloned();
            entry.nas = nas.cloned();
            entry.by_tag.clear();
        }
        let bytes = entry.by_tag.entry(tag).or_insert_with(|| {
            let mut buf = Vec::new();
            let attrs = workload
                .map(|w| w.attributes())
                .unwrap_or_default()
                .into_iter()
                .chain(nas.map(|n| n.attributes()).unwrap_or_default());
            for (k, v) in attrs {
                prost::encoding::message::encode(tag, &kv(k, v), &mut buf);
            }
            // A device no mount names (an RPC client not learned yet, a super block that
            // lived only during a mount) still gets series of its own.
            if nas.is_none() {
                prost::encoding::message::encode(
                    tag,
                    &kv(schema::ATTR_DEVICE, nasflow_probe::dev_string(dev)),
                    &mut buf,
                );
            }
            buf.into()
        });
        Arc::clone(bytes)
    }

    /// One attribute of a series' own, encoded as field `tag` of a data point.
    /// `nfs.directory` of watched directory `id`, named `name` (fixed for the process).
    pub(crate) fn directory(&mut self, tag: u32, id: u16, name: &str) -> Arc<[u8]> {
        let bytes = self.dirs.entry((tag, id)).or_insert_with(|| {
            let mut buf = Vec::new();
            prost::encoding::message::encode(tag, &kv(schema::ATTR_DIRECTORY, name), &mut buf);
            buf.into()
        });
        Arc::clone(bytes)
    }

    pub(crate) fn own(&mut self, tag: u32, own: Own) -> Arc<[u8]> {
        let bytes = self.own.entry((tag, own)).or_insert_with(|| {
            let a = match own {
                Own::Op(op) => kv(schema::ATTR_OPERATION, op.name()),
                Own::Error(e) => kv(schema::ATTR_ERROR_TYPE, errno_name(e)),
                Own::Direction(op) => {
                    let read = matches!(op, Operation::Read | Operation::AppRead);
                    kv(schema::ATTR_IO_DIRECTION, if read { "read" } else { "write" })
                }
                Own::Overflow => KeyValue {
                    key: schema::ATTR_OVERFLOW.to_owned(),
                    value: Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
                    key_strindex: 0,
                },
            };
            let mut buf = Vec::new();
            prost::encoding::message::encode(tag, &a, &mut buf);
            buf.into()
        });
        Arc::clone(bytes)
    }

    /// Keeps only the entries of origins still exported.
    pub(crate) fn retain(&mut self, seen: &std::collections::HashSet<(u64, u32)>) {
        self.base.retain(|k, _| seen.contains(k));
    }
}
