//! How an origin feels: healthy, degraded or unhealthy, and why.

/// The three health states the router distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// Serving normally.
    Healthy,
    /// Serving, but slowly or partly; used only when nothing healthy is left.
    Degraded,
    /// Not serving.
    Unhealthy,
}

/// A health report: a status and a reason a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The state.
    pub status: HealthStatus,
    /// Why (empty when healthy).
    pub reason: String,
}

impl Health {
    /// Serving normally.
    pub fn healthy() -> Self {
        Health {
            status: HealthStatus::Healthy,
            reason: String::new(),
        }
    }

    /// Serving, with a caveat.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Health {
            status: HealthStatus::Degraded,
            reason: reason.into(),
        }
    }

    /// Not serving, and why.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Health {
            status: HealthStatus::Unhealthy,
            reason: reason.into(),
        }
    }

    /// Whether the status is [`HealthStatus::Healthy`].
    pub fn is_healthy(&self) -> bool {
        self.status == HealthStatus::Healthy
    }
}
