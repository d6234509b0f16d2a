//! The `nasflow` agent's own code: configuration, `nasflow check`, the health endpoints, the
//! jsonl output and the wiring of the pipe. A library beside the binary so that tests and
//! fuzz targets reach the parsers of outside input (config file, environment, health
//! requests); `src/main.rs` only starts it.

pub mod check;
pub mod config;
pub mod health;
pub mod jsonl;
pub mod run;
