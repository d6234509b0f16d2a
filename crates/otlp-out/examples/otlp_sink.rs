//! An OTLP/gRPC receiver for the VM suite: `otlp_sink <listen addr> <out.jsonl>`. Writes every
//! data point it receives as one JSON line (request number, resource, scope, metric,
//! attributes, value or histogram), so tests can assert on what a collector passed on.

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        metrics_service_server::{MetricsService, MetricsServiceServer},
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    common::v1::{any_value, KeyValue},
    metrics::v1::{metric::Data, number_data_point},
};
use serde_json::{json, Value};

struct Sink {
    out: Arc<Mutex<std::fs::File>>,
    requests: Arc<Mutex<u64>>,
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => json!(s),
                Some(any_value::Value::BoolValue(b)) => json!(b),
                Some(any_value::Value::IntValue(i)) => json!(i),
                Some(any_value::Value::DoubleValue(d)) => json!(d),
                _ => Value::Null,
            };
            (kv.key.clone(), v)
        })
        .collect()
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
        // One write per request: slow file systems (9p under emulation) see few, large writes.
        let mut buf = Vec::new();
        for l in lines(n, req.get_ref()) {
            writeln!(buf, "{l}").map_err(|e| tonic::Status::internal(e.to_string()))?;
        }
        let mut f = self.out.lock().map_err(|_| tonic::Status::internal("lock"))?;
        f.write_all(&buf).map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: otlp_sink <listen addr> <out.jsonl>");
        std::process::exit(2);
    };
    let file = std::fs::OpenOptions::new().create(true).append(true).open(out)?;
    let sink = Sink { out: Arc::new(Mutex::new(file)), requests: Arc::default() };
    let svc = MetricsServiceServer::new(sink)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    println!("listening on {addr}");
    tonic::transport::Server::builder().add_service(svc).serve(addr.parse()?).await?;
    Ok(())
}
