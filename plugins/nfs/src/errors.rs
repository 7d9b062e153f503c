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

pub(crate) fn fault(error: &NfsError) -> Fault {
    match error {
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

/// `error` from an operation on `what` (an origin path, or "the root").
pub(crate) fn origin_error(error: &NfsError, what: &str) -> OriginError {
    use Nfs3ErrorCode as V3;
    use Nfs4ErrorCode as V4;
    match error {
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
