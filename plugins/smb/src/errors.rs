//! SMB failures as origin errors, in one place. A status about one file (no
//! such file, access denied) is that file's error; a lost connection, a
//! session the server ended, a request with no answer is the server's
//! ([`Fault::Gone`]: the connection is dropped and made again).
//!
//! Health reads these messages: "authentication failed", "no such share",
//! "unreachable", "encryption refused".

use origin_api::OriginError;
use smb2::types::status::NtStatus;
use smb2::types::Command;
use smb2::{Error, ErrorKind as Kind};

/// What an error says about the connection it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// About the file only.
    File,
    /// The connection or its session is no good.
    Gone,
}

pub(crate) fn fault(error: &Error) -> Fault {
    match error {
        Error::Protocol { status, .. } => match *status {
            NtStatus::NETWORK_NAME_DELETED
            | NtStatus::USER_SESSION_DELETED
            | NtStatus::NETWORK_SESSION_EXPIRED => Fault::Gone,
            _ => Fault::File,
        },
        _ => match error.kind() {
            Kind::NotFound
            | Kind::AccessDenied
            | Kind::IsADirectory
            | Kind::NotADirectory
            | Kind::InvalidName
            | Kind::SharingViolation => Fault::File,
            _ => Fault::Gone,
        },
    }
}

/// `error` from signing in to `host` and connecting to `share`.
pub(crate) fn connect_error(error: &Error, host: &str, share: &str) -> OriginError {
    match error {
        Error::Protocol {
            status: NtStatus::BAD_NETWORK_NAME,
            ..
        } => OriginError::not_found(format!("no such share: {share} on {host}")),
        Error::Protocol {
            status: NtStatus::ACCESS_DENIED,
            command: Command::TreeConnect,
        } => OriginError::permission_denied(format!(
            "refused: {host} will not let this user connect to {share}"
        )),
        _ if matches!(error.kind(), Kind::AuthRequired | Kind::GuestSessionRefused) => {
            OriginError::permission_denied(format!(
                "authentication failed: {host} refused the user name or password"
            ))
        }
        // After a password the server accepted: Samba refuses so a client
        // that did not negotiate encryption where it is required.
        Error::Protocol {
            status: NtStatus::ACCESS_DENIED,
            command: Command::SessionSetup,
        } => OriginError::permission_denied(format!(
            "refused at sign-in: {host} denied access (it requires encryption this client \
             could not negotiate with it, or it refuses this account)"
        )),
        _ => origin_error(error, share),
    }
}

/// `error` from an operation on `what` (an origin path, or "the root").
pub(crate) fn origin_error(error: &Error, what: &str) -> OriginError {
    match error.kind() {
        Kind::NotFound => OriginError::not_found(what),
        Kind::NotADirectory => OriginError::not_found(format!("{what}: not a folder")),
        Kind::IsADirectory => OriginError::not_found(format!("{what}: not a file")),
        Kind::AccessDenied => OriginError::permission_denied(format!("{what}: permission denied")),
        Kind::SharingViolation => {
            OriginError::unavailable(format!("{what}: in use by another client"))
        }
        Kind::SignatureInvalid => OriginError::unavailable(format!(
            "unreachable: a reply about {what} failed its signature check ({error})"
        )),
        Kind::TimedOut => OriginError::timeout(format!("unreachable: {error}")),
        _ if fault(error) == Fault::File => OriginError::other(format!("{what}: {error}")),
        _ => OriginError::unavailable(format!("unreachable: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use origin_api::ErrorKind;

    fn status(status: NtStatus, command: Command) -> Error {
        Error::Protocol { status, command }
    }

    #[test]
    fn refusals_are_named_and_file_errors_keep_the_connection() {
        let e = connect_error(
            &status(NtStatus::BAD_NETWORK_NAME, Command::TreeConnect),
            "nas",
            "musik",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().starts_with("no such share: musik"), "{e}");
        let e = connect_error(
            &status(NtStatus::LOGON_FAILURE, Command::SessionSetup),
            "nas",
            "music",
        );
        assert!(e.message().starts_with("authentication failed"), "{e}");
        let missing = status(NtStatus::OBJECT_NAME_NOT_FOUND, Command::Create);
        assert_eq!(fault(&missing), Fault::File);
        assert_eq!(origin_error(&missing, "a.flac").kind(), ErrorKind::NotFound);
        let gone = status(NtStatus::USER_SESSION_DELETED, Command::Read);
        assert_eq!(fault(&gone), Fault::Gone);
        assert_eq!(fault(&Error::Disconnected), Fault::Gone);
        assert!(origin_error(&Error::Disconnected, "a.flac")
            .message()
            .starts_with("unreachable"));
    }
}
