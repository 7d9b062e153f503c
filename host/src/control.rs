//! Talking to a running mount (the events and metric names it passes on are
//! in `telemetry`).
//!
//! - [`socket`] is the control socket behind `musicfs status` and `musicfs events`.
//! - [`status`] renders what `musicfs status` shows.
//! - [`metrics`] serves Prometheus metrics (`--metrics`).

pub mod metrics;
pub mod socket;
pub mod status;
