//! Anomaly events as OpenTelemetry log records (`event.name` `nfs.anomaly`), sent by the
//! OpenTelemetry SDK's batch processor and OTLP exporter over the agent's own connection to
//! the collector (same endpoint, TLS, headers and compression as the metrics).

use std::{fmt::Write as _, time::SystemTime};

use opentelemetry::{
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
    InstrumentationScope, KeyValue, StringValue,
};
use opentelemetry_sdk::{
    logs::{log_processor_with_async_runtime::BatchLogProcessor, SdkLogger, SdkLoggerProvider},
    runtime::Tokio,
    Resource,
};

use nasflow_otlp_out::{sdk, transport::Transport};

use crate::detector::{AnomalyEvent, CloseReason, Direction, EventState, Signal};

/// The event name (also the `event.name` attribute, for collectors that predate the field).
pub const EVENT_NAME: &str = "nfs.anomaly";

/// Why events cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The OTLP log exporter could not be built.
    #[error("building the OTLP log exporter for {endpoint}: {detail}")]
    Exporter {
        /// Where the events would go.
        endpoint: String,
        /// Why not.
        detail: String,
    },
}

/// Sends anomaly events to the collector.
#[derive(Debug)]
pub struct EventSink {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
}

impl EventSink {
    /// An SDK logger provider with a batch processor on the tokio runtime (so export never
    /// blocks the pipe) exporting over `transport`. Must be called inside the runtime.
    pub fn new(transport: &Transport, resource: &[(String, String)], version: &str) -> Result<Self, EventsError> {
        let err = |detail: String| EventsError::Exporter { endpoint: transport.endpoint().to_owned(), detail };
        let exporter = nasflow_otlp_out::sdk_exporter!(opentelemetry_otlp::LogExporter, transport, |url: &str| {
            sdk::signal_url(url, "logs")
        })
        .map_err(|e| err(e.to_string()))?;
        let resource = Resource::builder_empty()
            .with_attributes(resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
            .build();
        let provider = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_log_processor(BatchLogProcessor::builder(exporter, Tokio).build())
            .build();
        let scope = InstrumentationScope::builder("nasflow.anomaly").with_version(version.to_owned()).build();
        let logger = provider.logger_with_scope(scope);
        Ok(Self { provider, logger })
    }

    /// Hands one event to the batch processor (never waits on the network).
    pub fn emit(&self, e: &AnomalyEvent) {
        let mut r = self.logger.create_log_record();
        r.set_event_name(EVENT_NAME);
        r.set_timestamp(e.at);
        r.set_observed_timestamp(SystemTime::now());
        let (severity, text) = match e.state {
            EventState::Open => (Severity::Warn, "WARN"),
            EventState::Close => (Severity::Info, "INFO"),
        };
        r.set_severity_number(severity);
        r.set_severity_text(text);
        r.set_body(AnyValue::from(message(e)));
        for (k, v) in attributes(e) {
            r.add_attribute(k, v);
        }
        self.logger.emit(r);
    }

    /// Sends what is queued and stops (on shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "anomaly events shutdown");
        }
    }
}

/// An event attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A number.
    F64(f64),
    /// A list of strings.
    List(Vec<String>),
}

impl From<Value> for AnyValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Str(s) => AnyValue::String(StringValue::from(s)),
            Value::F64(f) => AnyValue::Double(f),
            Value::List(l) => AnyValue::ListAny(Box::new(l.into_iter().map(|s| AnyValue::String(s.into())).collect())),
        }
    }
}

/// Every attribute of an event, in a stable order: the event name, the NAS, the signal and
/// its values, the times, then the top contributor's own attributes and the list of the
/// others (`namespace/pod=share`).
#[must_use]
pub fn attributes(e: &AnomalyEvent) -> Vec<(&'static str, Value)> {
    let mut a = vec![
        ("event.name", Value::Str(EVENT_NAME.into())),
        ("server.address", Value::Str(e.nas.server.clone())),
        ("nfs.export.path", Value::Str(e.nas.export.clone())),
        ("nfs.anomaly.signal", Value::Str(e.signal.as_str().into())),
        ("nfs.anomaly.direction", Value::Str(e.direction.as_str().into())),
        ("nfs.anomaly.state", Value::Str(e.state.as_str().into())),
        ("nfs.anomaly.observed", Value::F64(e.observed)),
        ("nfs.anomaly.expected", Value::F64(e.expected)),
        ("nfs.anomaly.unit", Value::Str(unit(e.signal).into())),
        ("nfs.anomaly.score", Value::F64(e.score)),
        ("nfs.anomaly.start_time", Value::Str(humantime::format_rfc3339_seconds(e.started).to_string())),
    ];
    if e.state == EventState::Close {
        a.push(("nfs.anomaly.end_time", Value::Str(humantime::format_rfc3339_seconds(e.at).to_string())));
        if let Some(r) = e.close_reason {
            a.push(("nfs.anomaly.close_reason", Value::Str(r.as_str().into())));
        }
    }
    if let Some(top) = e.contributors.first() {
        a.extend(top.who.attributes.iter().map(|(k, v)| (*k, Value::Str(v.clone()))));
        a.push(("nfs.anomaly.contributor.share", Value::F64(round3(top.share))));
    }
    if e.contributors.len() > 1 {
        let rest = e.contributors[1..].iter().map(|s| format!("{}={}", s.who.label(), round3(s.share))).collect();
        a.push(("nfs.anomaly.contributors", Value::List(rest)));
    }
    a
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The unit of a signal's observed and expected values.
#[must_use]
pub fn unit(signal: Signal) -> &'static str {
    match signal {
        Signal::Operations => "{operation}/s",
        Signal::Bytes => "By/s",
        Signal::Errors => "1",
        Signal::Latency => "s",
    }
}

/// The event's body: one sentence for a human.
#[must_use]
pub fn message(e: &AnomalyEvent) -> String {
    let what = match (e.signal, e.direction) {
        (Signal::Operations, Direction::Up) => "operations surged",
        (Signal::Operations, Direction::Down) => "operations collapsed",
        (Signal::Bytes, Direction::Up) => "bytes surged",
        (Signal::Bytes, Direction::Down) => "bytes collapsed",
        (Signal::Errors, _) => "the error ratio rose",
        (Signal::Latency, _) => "latency rose",
    };
    let mut m = match e.state {
        EventState::Open => format!(
            "NAS {}:{}: {what} since {}: {:.4} against {:.4} {} expected (score {:.1})",
            e.nas.server,
            e.nas.export,
            humantime::format_rfc3339_seconds(e.started),
            e.observed,
            e.expected,
            unit(e.signal),
            e.score
        ),
        EventState::Close => {
            let how = match e.close_reason {
                Some(CloseReason::AgentStopped) => "the agent stopped".to_owned(),
                Some(CloseReason::ExportGone) => "no series of the export on this node".to_owned(),
                _ => format!("back to {:.4} {}", e.observed, unit(e.signal)),
            };
            format!(
                "NAS {}:{}: {what} from {} to {}; {how} (peak score {:.1})",
                e.nas.server,
                e.nas.export,
                humantime::format_rfc3339_seconds(e.started),
                humantime::format_rfc3339_seconds(e.at),
                e.score
            )
        }
    };
    if !e.contributors.is_empty() {
        m.push_str("; moved by ");
        for (i, s) in e.contributors.iter().enumerate() {
            let _ = write!(m, "{}{} ({:.0}%)", if i > 0 { ", " } else { "" }, s.who.label(), s.share * 100.0);
        }
    } else if e.state == EventState::Open {
        m.push_str("; no workload on this node moved it");
    }
    m
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::detector::{Contributor, NasKey, Share};

    #[test]
    fn an_open_event_names_the_nas_the_signal_and_the_pods() {
        let who = |ns: &str, pod: &str| {
            Arc::new(Contributor {
                key: format!("uid-{pod}"),
                attributes: vec![
                    ("k8s.namespace.name", ns.into()),
                    ("k8s.pod.name", pod.into()),
                    ("nasflow.task", "t".into()),
                ],
            })
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let e = AnomalyEvent {
            nas: NasKey { server: "10.0.0.5".into(), export: "/export".into() },
            signal: Signal::Operations,
            direction: Direction::Up,
            state: EventState::Open,
            observed: 440.0,
            expected: 40.0,
            score: 120.0,
            started: t - Duration::from_secs(10),
            at: t,
            contributors: vec![
                Share { who: who("ml", "trainer-0"), share: 0.9 },
                Share { who: who("ci", "build-1"), share: 0.1 },
            ],
            close_reason: None,
        };
        let a = attributes(&e);
        let get = |k: &str| a.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("event.name"), Some(Value::Str("nfs.anomaly".into())));
        assert_eq!(get("k8s.pod.name"), Some(Value::Str("trainer-0".into())));
        assert_eq!(get("nfs.anomaly.contributor.share"), Some(Value::F64(0.9)));
        assert_eq!(get("nfs.anomaly.contributors"), Some(Value::List(vec!["ci/build-1=0.1".into()])));
        assert_eq!(get("nfs.anomaly.start_time"), Some(Value::Str("2026-11-30T00:53:10Z".into())));
        assert_eq!(get("nfs.anomaly.end_time"), None);
        assert_eq!(
            message(&e),
            "NAS 10.0.0.5:/export: operations surged since 2026-11-30T00:53:10Z: 440.0000 against 40.0000 {operation}/s expected (score 120.0); moved by ml/trainer-0 (90%), ci/build-1 (10%)"
        );
    }
}
