//! Reading one folder: `OPENDIR`, `READDIR` until end of file, `CLOSE`, with
//! links followed. Each request has the deadline; the handle is closed however
//! the reading ends.
//!
//! The listing is the truth about the folder (the host removes what it
//! lacks), so an entry is left out only when it is not a file of the library:
//! `.` and `..`, a dangling link (one whose target is not there), a link to a folder the walk is already in
//! (it would repeat the tree without end), and a name that is not UTF-8 (the
//! SFTP library decodes names lossily, so such a name could not be opened
//! again). Any other failure fails the whole listing.

use std::sync::Arc;

use origin_api::{DirEntry, EntryKind, OriginError, OriginResult};
use russh_sftp::client::error::Error;
use russh_sftp::protocol::{FileAttributes, StatusCode};

use crate::connection::Connection;
use crate::errors::is_eof;
use crate::sftp_origin::metadata_of;

/// Every entry of the folder at server path `remote` (`shown` in messages).
pub(crate) async fn read(
    connection: Arc<Connection>,
    remote: String,
    shown: String,
) -> OriginResult<Vec<DirEntry>> {
    let handle = connection
        .open_handle(&shown, connection.sftp.opendir(remote.as_str()))
        .await?;
    let mut entries = Vec::new();
    loop {
        let batch =
            tokio::time::timeout(connection.deadline, connection.sftp.readdir(handle.id())).await;
        match batch {
            Ok(Ok(batch)) => {
                connection.heard();
                entries.extend(
                    batch
                        .files
                        .into_iter()
                        .filter(|f| f.filename != "." && f.filename != "..")
                        .map(|f| (f.filename, f.attrs)),
                );
            }
            Ok(Err(e)) if is_eof(&e) => {
                connection.heard();
                break;
            }
            Ok(Err(e)) => return Err(connection.failed(e, &shown)),
            Err(_) => return Err(connection.timed_out(&shown)),
        }
    }
    drop(handle);
    let mut here: Option<String> = None;
    let mut found = Vec::with_capacity(entries.len());
    for (name, attrs) in entries {
        if name.contains(char::REPLACEMENT_CHARACTER) {
            tracing::warn!(dir = shown, name, "skipping a name that is not UTF-8");
            continue;
        }
        let metadata = if attrs.file_type().is_symlink() {
            let target = format!("{remote}/{name}");
            match linked(&connection, &target, &shown).await? {
                None => continue,
                Some(attrs) => {
                    let metadata = metadata_of(&attrs);
                    if metadata.kind == EntryKind::Directory
                        && leads_up(&connection, &remote, &target, &mut here, &shown).await?
                    {
                        tracing::debug!(dir = shown, name, "skipping a link to a folder above it");
                        continue;
                    }
                    metadata
                }
            }
        } else {
            metadata_of(&attrs)
        };
        found.push(DirEntry { name, metadata });
    }
    Ok(found)
}

/// What the link at `target` leads to; `None` for a dangling link. Anything
/// else (a loop of links included: OpenSSH says only "failure", as it does for
/// an I/O error) fails the listing rather than drop what may be there.
async fn linked(
    connection: &Connection,
    target: &str,
    shown: &str,
) -> OriginResult<Option<FileAttributes>> {
    match tokio::time::timeout(connection.deadline, connection.sftp.stat(target)).await {
        Ok(Ok(attrs)) => {
            connection.heard();
            Ok(Some(attrs.attrs))
        }
        Ok(Err(Error::Status(status))) if status.status_code == StatusCode::NoSuchFile => {
            connection.heard();
            Ok(None)
        }
        Ok(Err(e)) => Err(connection.failed(e, shown)),
        Err(_) => Err(connection.timed_out(shown)),
    }
}

/// Whether the folder link `target` in folder `remote` leads to that folder
/// or one above it.
async fn leads_up(
    connection: &Connection,
    remote: &str,
    target: &str,
    here: &mut Option<String>,
    shown: &str,
) -> OriginResult<bool> {
    let real = |path: String| async move {
        let name = connection
            .call(shown, connection.sftp.realpath(path))
            .await?;
        name.files
            .into_iter()
            .next()
            .map(|f| f.filename)
            .ok_or_else(|| OriginError::other(format!("{shown}: the server resolved no path")))
    };
    if here.is_none() {
        *here = Some(real(remote.to_owned()).await?);
    }
    let here = here.as_deref().expect("just set");
    let there = real(target.to_owned()).await?;
    let there = there.trim_end_matches('/');
    Ok(here == there || here.starts_with(&format!("{there}/")) || there.is_empty())
}
