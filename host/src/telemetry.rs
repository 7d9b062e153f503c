//! What the parts of the daemon tell the world, as leaves every part may import
//! (they import nothing of the crate):
//!
//! - [`events`] is the event bus every part publishes to.
//! - [`metric_names`] names every metric, once.
//!
//! Who listens (the control socket, the Prometheus exporter) is in `control`.

pub mod events;
pub mod metric_names;
