//! Owns the wire: nasflow's metric schema, the series registry (start times, delta baselines,
//! the series budget, lifecycle), OTLP encoding, and the push to a collector over gRPC or
//! HTTP with retries, never holding up the probe.

pub mod encode;
pub mod exporter;
pub mod schema;
pub mod transport;
