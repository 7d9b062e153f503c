//! Talking to a running mount.
//!
//! - [`events`] is the event bus every part publishes to.
//! - [`socket`] is the control socket behind `musicfs status` and `musicfs events`.
//! - [`status`] renders what `musicfs status` shows.

pub mod events;
pub mod socket;
pub mod status;
