//! Anomalies per NAS on this node, named by the pods behind them: the detector reads the
//! same enriched intervals the metrics are built from, and its events leave as OpenTelemetry
//! log records (`event.name` `nfs.anomaly`) through the OpenTelemetry SDK.

pub mod detector;
pub mod events;
pub mod input;
pub mod stats;

pub use detector::{
    AnomalyEvent, CloseReason, DetectConfig, Detector, Direction, EventState, Findings, NasKey, Score, Signal,
};
pub use input::Deltas;
