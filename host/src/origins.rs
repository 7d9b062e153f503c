//! The live origins and how calls reach them.
//!
//! - [`registry`] holds every opened origin; each call gets its deadline there.
//! - [`call_gate`] counts calls in flight so an origin can be taken down cleanly.
//! - [`health`] is one origin's status; [`health_monitor`] runs periodic checks.
//! - [`router`] orders the replicas of a file (`crate::read` tries them in
//!   turn).

pub(crate) mod call_gate;
pub mod health;
pub mod health_monitor;
pub mod registry;
pub mod router;
