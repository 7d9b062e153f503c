//! SFTP failures as origin errors, in one place. A status the server sent
//! about one file (no such file, permission denied) is that file's error; a
//! lost channel or a garbled reply means the connection is no good and is
//! [`Broken`]: the pool drops it. A request past its deadline condemns the
//! connection only if nothing at all has come back on it for as long: on a
//! slow link a request may wait behind others' data on a connection that is
//! alive and busy.

use origin_api::OriginError;
use russh_sftp::client::error::Error;
use russh_sftp::protocol::StatusCode;

/// Whether an error condemns the connection it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Broken {
    Yes,
    No,
    /// Only if the connection has been silent for a whole deadline.
    IfStalled,
}

/// `error` from an operation on `what` (a server path), and whether the
/// connection is broken by it.
pub(crate) fn origin_error(error: Error, what: &str, deadline_secs: u64) -> (OriginError, Broken) {
    match error {
        Error::Status(status) => (
            match status.status_code {
                StatusCode::NoSuchFile => OriginError::not_found(what),
                StatusCode::PermissionDenied => {
                    OriginError::permission_denied(format!("{what}: permission denied"))
                }
                code => OriginError::other(format!("{what}: {code}: {}", status.error_message)),
            },
            Broken::No,
        ),
        Error::Timeout => (
            OriginError::timeout(format!(
                "unreachable: no answer about {what} within {deadline_secs} s"
            )),
            Broken::IfStalled,
        ),
        Error::Limited(why) => (OriginError::other(format!("{what}: {why}")), Broken::No),
        other => (
            OriginError::unavailable(format!("unreachable: connection lost ({other})")),
            Broken::Yes,
        ),
    }
}

/// Whether the server answered (with a status): the connection is alive.
pub(crate) fn is_answer(error: &Error) -> bool {
    matches!(error, Error::Status(_))
}

/// Whether `error` is the server's end-of-file status.
pub(crate) fn is_eof(error: &Error) -> bool {
    matches!(error, Error::Status(s) if s.status_code == StatusCode::Eof)
}
