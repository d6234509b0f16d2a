//! The same series as OTLP, in the Prometheus text format (0.0.4), for `/metrics`: rendered
//! from the very requests the encoder builds, with the names Prometheus gives OTLP metrics
//! ([`crate::schema::prometheus_name`]), so dashboards and rules serve both paths.
//! Exponential histograms (scale 0, the kernel's power-of-two slots) become classic ones on
//! the same bounds.

use std::{collections::BTreeMap, fmt::Write as _};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{any_value, KeyValue},
    metrics::v1::{metric::Data, number_data_point, Metric},
};
use prost::Message as _;

use nasflow_probe::LATENCY_SLOTS;

use crate::schema::{prometheus_name, Instrument};

/// The exponential bucket index (scale 0) just below the kernel's slot 1: the zero bucket's
/// bound is 2^(index + 1) = 2^-30 s, slot 0's; slot `s >= 1` is bucket `s - 31`.
const FIRST_SLOT_INDEX: i64 = -31;

/// One metric family: its type, help, and sample lines in order.
#[derive(Default)]
struct Family {
    kind: &'static str,
    help: String,
    lines: Vec<String>,
}

/// Renders encoded OTLP metrics requests as one Prometheus text exposition. Families keep the
/// order they first appear in; a family split over several requests is rendered once.
/// Requests that do not decode are skipped (they are the agent's own, so this does not
/// happen) and counted in the second value.
#[must_use]
pub fn render(requests: &[std::sync::Arc<Vec<u8>>]) -> (String, usize) {
    let mut families: BTreeMap<String, (usize, Family)> = BTreeMap::new();
    let mut bad = 0;
    let mut info: Vec<String> = Vec::new();
    for body in requests {
        let Ok(req) = ExportMetricsServiceRequest::decode(body.as_slice()) else {
            bad += 1;
            continue;
        };
        for rm in &req.resource_metrics {
            if let Some(r) = &rm.resource {
                let line = format!("target_info{} 1", labels(&r.attributes, None));
                if !info.contains(&line) {
                    info.push(line);
                }
            }
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    add(&mut families, m);
                }
            }
        }
    }
    let mut out = String::new();
    if !info.is_empty() {
        out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
        for l in info {
            out.push_str(&l);
            out.push('\n');
        }
    }
    let mut ordered: Vec<(String, (usize, Family))> = families.into_iter().collect();
    ordered.sort_by_key(|(_, (order, _))| *order);
    for (name, (_, f)) in ordered {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {name} {}", f.kind);
        for l in f.lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    (out, bad)
}

fn add(families: &mut BTreeMap<String, (usize, Family)>, m: &Metric) {
    let (instrument, kind) = match &m.data {
        Some(Data::Sum(s)) if s.is_monotonic => (Instrument::Counter, "counter"),
        Some(Data::Sum(_) | Data::Gauge(_)) => (Instrument::Gauge, "gauge"),
        Some(Data::Histogram(_) | Data::ExponentialHistogram(_)) => (Instrument::Histogram, "histogram"),
        _ => return,
    };
    let name = prometheus_name(&m.name, &m.unit, instrument);
    let next = families.len();
    let (_, f) = families.entry(name.clone()).or_insert_with(|| (next, Family::default()));
    f.kind = kind;
    if f.help.is_empty() {
        f.help.clone_from(&m.description);
    }
    match &m.data {
        Some(Data::Sum(s)) => {
            for p in &s.data_points {
                f.lines.push(format!("{name}{} {}", labels(&p.attributes, None), number(p.value.as_ref())));
            }
        }
        Some(Data::Gauge(g)) => {
            for p in &g.data_points {
                f.lines.push(format!("{name}{} {}", labels(&p.attributes, None), number(p.value.as_ref())));
            }
        }
        Some(Data::Histogram(h)) => {
            for p in &h.data_points {
                let mut cumulative = 0;
                for (i, c) in p.bucket_counts.iter().enumerate() {
                    cumulative += c;
                    let le = p.explicit_bounds.get(i).map_or_else(|| "+Inf".to_owned(), |b| float(*b));
                    f.lines.push(format!("{name}_bucket{} {cumulative}", labels(&p.attributes, Some(&le))));
                }
                if p.bucket_counts.len() <= p.explicit_bounds.len() {
                    f.lines.push(format!("{name}_bucket{} {}", labels(&p.attributes, Some("+Inf")), p.count));
                }
                push_sum_count(f, &name, &p.attributes, p.sum.unwrap_or(0.0), p.count);
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            for p in &h.data_points {
                // Bucket `i` at scale `s` holds (base^i, base^(i+1)], base = 2^(2^-s); the zero
                // bucket is below the first bound. At scale 0 (the kernel's slots) every series
                // gets the same bounds, every slot's, as explicit histograms do: series summed
                // by `le` must share them, or the sums go down as `le` rises.
                let counts = |index: i64| -> u64 {
                    p.positive.as_ref().map_or(0, |pos| {
                        usize::try_from(index - i64::from(pos.offset))
                            .ok()
                            .and_then(|j| pos.bucket_counts.get(j).copied())
                            .unwrap_or(0)
                    })
                };
                let (first, last) = if p.scale == 0 {
                    (FIRST_SLOT_INDEX, FIRST_SLOT_INDEX + i64::try_from(LATENCY_SLOTS).unwrap_or(0) - 1)
                } else {
                    let pos = p.positive.as_ref();
                    let lo = pos.map_or(0, |b| i64::from(b.offset));
                    (lo - 1, lo + pos.map_or(0, |b| i64::try_from(b.bucket_counts.len()).unwrap_or(0)) - 1)
                };
                let base = 2f64.powf(2f64.powi(-p.scale));
                let mut cumulative = p.zero_count;
                for index in first..=last {
                    if index > first {
                        cumulative += counts(index);
                    }
                    let le = base.powf((index + 1) as f64);
                    f.lines.push(format!("{name}_bucket{} {cumulative}", labels(&p.attributes, Some(&float(le)))));
                }
                f.lines.push(format!("{name}_bucket{} {}", labels(&p.attributes, Some("+Inf")), p.count));
                push_sum_count(f, &name, &p.attributes, p.sum.unwrap_or(0.0), p.count);
            }
        }
        _ => {}
    }
}

fn push_sum_count(f: &mut Family, name: &str, attrs: &[KeyValue], sum: f64, count: u64) {
    let l = labels(attrs, None);
    f.lines.push(format!("{name}_sum{l} {}", float(sum)));
    f.lines.push(format!("{name}_count{l} {count}"));
}

fn number(v: Option<&number_data_point::Value>) -> String {
    match v {
        Some(number_data_point::Value::AsInt(i)) => i.to_string(),
        Some(number_data_point::Value::AsDouble(d)) => float(*d),
        None => "0".into(),
    }
}

/// A sample value or bound as Prometheus writes it (`+Inf`, `NaN`, shortest round trip).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:?}").trim_end_matches(".0").to_owned()
    }
}

/// `{a="x",b="y"}` from attributes (names with dots and other signs made `_`), with `le` last
/// when given; empty when there is nothing.
fn labels(attrs: &[KeyValue], le: Option<&str>) -> String {
    let mut parts: Vec<String> = attrs
        .iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::DoubleValue(d) => float(*d),
                any_value::Value::BoolValue(b) => b.to_string(),
                _ => return None,
            };
            Some(format!("{}=\"{}\"", label_name(&kv.key), escape_value(&v)))
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// An attribute name as a Prometheus label name: `[a-zA-Z0-9_]`, not starting with a digit.
fn label_name(key: &str) -> String {
    let mut s: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    s
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}
