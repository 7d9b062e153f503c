//! The one error type that crosses the plugin boundary: a kind the host can act on
//! (and map to an errno in one place) plus a message for people.

use std::fmt;

/// What went wrong, coarse enough for the host to decide what to do about it.
/// Later 1.x versions may add kinds: match with a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The path does not exist on this origin.
    NotFound,
    /// The origin refused access (permissions, credentials).
    PermissionDenied,
    /// The origin did not answer in time.
    Timeout,
    /// The origin cannot be reached right now (network down, server stopped).
    Unavailable,
    /// The origin's settings are wrong; the message names the key.
    InvalidConfig,
    /// Anything else, including a panic inside the plugin.
    Other,
    /// The file is no longer the version the read asked for (since 1.1).
    Changed,
}

impl ErrorKind {
    /// A short lower-case name, as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::InvalidConfig => "invalid config",
            ErrorKind::Other => "error",
            ErrorKind::Changed => "changed",
        }
    }
}

/// An error returned by an origin: a [`ErrorKind`] and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginError {
    kind: ErrorKind,
    message: String,
}

/// The result type of every origin operation.
pub type OriginResult<T> = Result<T, OriginError>;

impl OriginError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        OriginError {
            kind,
            message: message.into(),
        }
    }

    /// The path (or key) does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A setting is missing or wrong; name the key in the message.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// Access was refused.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// The origin cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// The origin did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// The file changed: it is not the version the read asked for.
    pub fn changed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Changed, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for OriginError {}

impl From<std::io::Error> for OriginError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::TimedOut => ErrorKind::Timeout,
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::NetworkDown => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        };
        OriginError::new(kind, err.to_string())
    }
}
