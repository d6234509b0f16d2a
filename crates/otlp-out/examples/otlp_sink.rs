//! An OTLP/gRPC receiver for the VM suite:
//! `otlp_sink <listen addr> <out.jsonl> [<logs.jsonl> [<traces.jsonl>]]`.
//! Writes every data point it receives as one JSON line (request number, resource, scope,
//! metric, attributes, value or histogram with its exemplars), every log record as one line of
//! the logs file (resource, scope, event name, severity, body, attributes), and every span as
//! one line of the traces file (resource, scope, ids, name, kind, times, status, attributes),
//! so tests can assert on what a collector passed on.

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        logs_service_server::{LogsService, LogsServiceServer},
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    collector::metrics::v1::{
        metrics_service_server::{MetricsService, MetricsServiceServer},
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value, KeyValue},
    metrics::v1::{exemplar, metric::Data, number_data_point, Exemplar},
};
use serde_json::{json, Value};

struct Sink {
    out: Arc<Mutex<std::fs::File>>,
    requests: Arc<Mutex<u64>>,
}

fn any(v: Option<&any_value::Value>) -> Value {
    match v {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(|v| any(v.value.as_ref())).collect()),
        _ => Value::Null,
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), any(kv.value.as_ref().and_then(|v| v.value.as_ref())))).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::with_capacity(2 * b.len()), |mut s, x| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{x:02x}"));
        s
    })
}

fn exemplars(e: &[Exemplar]) -> Value {
    Value::Array(
        e.iter()
            .map(|x| {
                let value = match x.value {
                    Some(exemplar::Value::AsDouble(d)) => json!(d),
                    Some(exemplar::Value::AsInt(i)) => json!(i),
                    None => Value::Null,
                };
                json!({"trace_id": hex(&x.trace_id), "span_id": hex(&x.span_id), "value": value,
                       "time": x.time_unix_nano})
            })
            .collect(),
    )
}

/// The spans of a request, one JSON line each.
fn span_lines(req: &ExportTraceServiceRequest) -> Vec<Value> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let resource = rs.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            for s in &ss.spans {
                let (code, message) = s.status.as_ref().map_or((0, String::new()), |st| (st.code, st.message.clone()));
                out.push(json!({"resource": resource, "scope": scope, "trace_id": hex(&s.trace_id),
                    "span_id": hex(&s.span_id), "parent_span_id": hex(&s.parent_span_id), "name": s.name,
                    "kind": s.kind, "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                    "status_code": code, "status_message": message, "attrs": attrs(&s.attributes)}));
            }
        }
    }
    out
}

/// The log records of a request, one JSON line each.
fn log_lines(req: &ExportLogsServiceRequest) -> Vec<Value> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let resource = rl.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            for r in &sl.log_records {
                out.push(json!({"resource": resource, "scope": scope, "event_name": r.event_name,
                    "severity": r.severity_text, "severity_number": r.severity_number, "time": r.time_unix_nano,
                    "body": any(r.body.as_ref().and_then(|b| b.value.as_ref())), "attrs": attrs(&r.attributes)}));
            }
        }
    }
    out
}

fn lines(n: u64, req: &ExportMetricsServiceRequest) -> Vec<Value> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        let resource = rm.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
        for sm in &rm.scope_metrics {
            let scope = sm.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            for m in &sm.metrics {
                let base = |a: &[KeyValue], start: u64, time: u64| {
                    json!({"req": n, "resource": resource, "scope": scope, "metric": m.name, "unit": m.unit,
                           "attrs": attrs(a), "start": start, "time": time})
                };
                match &m.data {
                    Some(Data::Sum(s)) => {
                        for p in &s.data_points {
                            let mut l = base(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            l["value"] = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => json!(i),
                                Some(number_data_point::Value::AsDouble(d)) => json!(d),
                                None => Value::Null,
                            };
                            l["temporality"] = json!(s.aggregation_temporality);
                            out.push(l);
                        }
                    }
                    Some(Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let mut l = base(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            l["value"] = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => json!(i),
                                Some(number_data_point::Value::AsDouble(d)) => json!(d),
                                None => Value::Null,
                            };
                            out.push(l);
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let mut l = base(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            let (offset, buckets) =
                                p.positive.as_ref().map_or((0, vec![]), |b| (b.offset, b.bucket_counts.clone()));
                            l["count"] = json!(p.count);
                            l["sum"] = json!(p.sum);
                            l["scale"] = json!(p.scale);
                            l["zero_count"] = json!(p.zero_count);
                            l["offset"] = json!(offset);
                            l["buckets"] = json!(buckets);
                            l["exemplars"] = exemplars(&p.exemplars);
                            out.push(l);
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            let mut l = base(&p.attributes, p.start_time_unix_nano, p.time_unix_nano);
                            l["count"] = json!(p.count);
                            l["sum"] = json!(p.sum);
                            l["bounds"] = json!(p.explicit_bounds);
                            l["bucket_counts"] = json!(p.bucket_counts);
                            l["exemplars"] = exemplars(&p.exemplars);
                            out.push(l);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let n = {
            let mut r = self.requests.lock().map_err(|_| tonic::Status::internal("lock"))?;
            *r += 1;
            *r
        };
        append(&self.out, &lines(n, req.get_ref()))?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

/// Appends lines to a file in one write: slow file systems (9p under emulation) see few,
/// large writes.
fn append(out: &Mutex<std::fs::File>, lines: &[Value]) -> Result<(), tonic::Status> {
    let mut buf = Vec::new();
    for l in lines {
        writeln!(buf, "{l}").map_err(|e| tonic::Status::internal(e.to_string()))?;
    }
    let mut f = out.lock().map_err(|_| tonic::Status::internal("lock"))?;
    f.write_all(&buf).map_err(|e| tonic::Status::internal(e.to_string()))
}

struct LogSink {
    out: Arc<Mutex<std::fs::File>>,
}

#[tonic::async_trait]
impl LogsService for LogSink {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        append(&self.out, &log_lines(req.get_ref()))?;
        Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

struct TraceSink {
    out: Arc<Mutex<std::fs::File>>,
}

#[tonic::async_trait]
impl TraceService for TraceSink {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        append(&self.out, &span_lines(req.get_ref()))?;
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: otlp_sink <listen addr> <out.jsonl> [<logs.jsonl> [<traces.jsonl>]]");
        std::process::exit(2);
    };
    let open = |p: &str| std::fs::OpenOptions::new().create(true).append(true).open(p);
    let sink = Sink { out: Arc::new(Mutex::new(open(out)?)), requests: Arc::default() };
    let logs_path = args.get(3).cloned().unwrap_or_else(|| format!("{out}.logs"));
    let logs = LogSink { out: Arc::new(Mutex::new(open(&logs_path)?)) };
    let traces_path = args.get(4).cloned().unwrap_or_else(|| format!("{out}.traces"));
    let traces = TraceServiceServer::new(TraceSink { out: Arc::new(Mutex::new(open(&traces_path)?)) })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    let svc = MetricsServiceServer::new(sink)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    let logs = LogsServiceServer::new(logs)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    println!("listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(svc)
        .add_service(logs)
        .add_service(traces)
        .serve(addr.parse()?)
        .await?;
    Ok(())
}
