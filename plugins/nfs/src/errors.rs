//! NFS failures as origin errors, in one place. A status about one file (no
//! such file, access denied) is that file's error; a lost connection or an
//! RPC failure is the server's ([`Gone`]: the mount is dropped and made
//! again), and a stale handle asks for the path to be looked up again.

use nfs_rs::{Nfs3ErrorCode, Nfs4ErrorCode, NfsError};
use origin_api::OriginError;

/// What an error says about the mount it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// About the file only.
    File,
    /// A handle no longer names anything: look the path up again.
    Stale,
    /// The connection or the mount is no good.
    Gone,
}

/// What went wrong under nfs-rs's wrappers (an operation that got no answer,
/// a retry budget spent): the status or transport error itself.
fn cause(error: &NfsError) -> &NfsError {
    match error {
        NfsError::OperationOutcome(outcome) => cause(&outcome.source),
        NfsError::ServerBusy(busy) => cause(&busy.source),
        other => other,
    }
}

pub(crate) fn fault(error: &NfsError) -> Fault {
    match cause(error) {
        NfsError::Nfs3(Nfs3ErrorCode::NFS3ERR_STALE | Nfs3ErrorCode::NFS3ERR_BADHANDLE)
        | NfsError::Nfs4(
            Nfs4ErrorCode::NFS4ERR_STALE
            | Nfs4ErrorCode::NFS4ERR_FHEXPIRED
            | Nfs4ErrorCode::NFS4ERR_BADHANDLE,
        ) => Fault::Stale,
        NfsError::Nfs3(_) | NfsError::Nfs4(_) => Fault::File,
        _ => Fault::Gone,
    }
}

/// How nfs-rs 0.11 words an RPC reply of MSG_DENIED (the server refused the
/// call itself: its credentials, or a source port above 1024 for an export
/// that wants a privileged one). The version is pinned; a test holds this.
const DENIED: &str = "could not parse response due to bad status";

fn denied() -> OriginError {
    OriginError::permission_denied(
        "refused: the server denied the call (an export that wants a source port \
         below 1024 does that: set privileged_port = true)",
    )
}

/// `error` from mounting `export`: servers answer "access denied" for an
/// export that does not exist as well as for one not exported to this client
/// (and NFSv4 servers hide such exports from the pseudo tree).
pub(crate) fn mount_error(error: &NfsError, export: &str) -> OriginError {
    use nfs_rs::Nfs3MountErrorCode as Mnt;
    use Nfs4ErrorCode as V4;
    match cause(error) {
        NfsError::Mount(Mnt::MNT3ERR_NOENT) | NfsError::Nfs4(V4::NFS4ERR_NOENT) => {
            OriginError::not_found(format!(
                "no such export: {export} (or it is not exported to this client)"
            ))
        }
        NfsError::Mount(Mnt::MNT3ERR_ACCES | Mnt::MNT3ERR_PERM)
        | NfsError::Nfs4(V4::NFS4ERR_ACCESS | V4::NFS4ERR_PERM | V4::NFS4ERR_WRONGSEC) => {
            OriginError::permission_denied(format!(
                "refused: the server will not mount {export} for this client \
                 (no such export, or not exported to it)"
            ))
        }
        _ => origin_error(error, export),
    }
}

/// `error` from an operation on `what` (an origin path, or "the root").
pub(crate) fn origin_error(error: &NfsError, what: &str) -> OriginError {
    use Nfs3ErrorCode as V3;
    use Nfs4ErrorCode as V4;
    let error = cause(error);
    match error {
        NfsError::Rpc(said) if said == DENIED => denied(),
        e if e.is_not_found() => OriginError::not_found(what),
        NfsError::Nfs3(V3::NFS3ERR_ACCES | V3::NFS3ERR_PERM)
        | NfsError::Nfs4(V4::NFS4ERR_ACCESS | V4::NFS4ERR_PERM) => {
            OriginError::permission_denied(format!("{what}: permission denied"))
        }
        NfsError::Nfs3(V3::NFS3ERR_NOTDIR) | NfsError::Nfs4(V4::NFS4ERR_NOTDIR) => {
            OriginError::not_found(format!("{what}: not a folder"))
        }
        NfsError::Nfs3(V3::NFS3ERR_ISDIR) | NfsError::Nfs4(V4::NFS4ERR_ISDIR) => {
            OriginError::not_found(format!("{what}: not a file"))
        }
        NfsError::Nfs3(_) | NfsError::Nfs4(_) => OriginError::other(format!("{what}: {error}")),
        NfsError::Mount(code) => OriginError::unavailable(format!(
            "unreachable: the server refused to mount the export ({code})"
        )),
        other => OriginError::unavailable(format!("unreachable: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use origin_api::ErrorKind;

    #[test]
    fn a_denied_call_says_what_to_try_under_nfs_rs_wrappers_too() {
        let denied = NfsError::Rpc(DENIED.into());
        let e = origin_error(&denied, "the root");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("privileged_port = true"), "{e}");
        let wrapped = NfsError::OperationOutcome(Box::new(nfs_rs::OperationOutcomeError::new(
            nfs_rs::OperationOutcome::SafeToRetry,
            nfs_rs::OperationClass::ReadOnly,
            nfs_rs::RecoveryAction::Retry,
            nfs_rs::RequestContext {
                operation: "GETATTR".into(),
                protocol: nfs_rs::NFSVersion::NFSv3,
                request_id: None,
            },
            NfsError::Nfs3(Nfs3ErrorCode::NFS3ERR_STALE),
        )));
        assert_eq!(fault(&wrapped), Fault::Stale);
    }
}
