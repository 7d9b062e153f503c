//! Talking to a running mount.
//!
//! - [`events`] is the event bus every part publishes to.
//! - [`socket`] is the control socket behind `musicfs status` and `musicfs events`.
//! - [`status`] renders what `musicfs status` shows.
//! - [`metrics`] serves Prometheus metrics (`--metrics`).

pub mod events;
pub mod metrics;
pub mod socket;
pub mod status;
