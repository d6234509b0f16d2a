//! Owns the wire: nasflow's metric schema, the series registry (start times, delta baselines,
//! the series budget, lifecycle), OTLP encoding, and the push to a collector over gRPC or
//! HTTP with retries, never holding up the probe.

mod attrs;
pub mod delivery;
pub mod encode;
mod interval;
mod parts;
mod points;
pub mod prometheus;
pub mod schema;
pub mod sdk;
mod series;
pub mod spans;
mod telemetry;
pub mod transport;
mod wire;
