//! Talking to a running mount (the events and metric names it passes on are
//! in `telemetry`).
//!
//! - [`socket`] is the control socket behind `musicfs status` and `musicfs events`.
//! - [`status`] renders what `musicfs status` shows.
//! - [`metrics`] serves Prometheus metrics (`--metrics`).
//! - [`pin_requests`] answers `musicfs pin`, `unpin` and `pins` on the socket;
//!   [`pin_client`] is the command line's side of them.

pub mod metrics;
pub mod pin_client;
pub mod pin_requests;
pub mod socket;
pub mod status;
