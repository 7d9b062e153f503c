//! A ranged read as pipelined SFTP reads, as OpenSSH's own client does: the
//! file is opened once (its version looked up only when the host did not say
//! which it expects), then up to [`IN_FLIGHT`] bytes of `READ`s of the
//! server's largest read size are kept outstanding (as many as the rate the
//! pipeline measures needs) and handed on in order, each once the `FSTAT`
//! sent right behind it has found the same version (`origin_api::pipeline`:
//! the server serves a file's requests in the order it receives them, so
//! that check was served after the read). The range is read exactly: no
//! request reaches past its end, or past the size the file had when opened.
//!
//! The file is opened in a task of its own, and its handle closed when the
//! stream ends or is dropped.

use std::sync::Arc;

use origin_api::pipeline::{pipelined, Request, Requests, Shape};
use origin_api::{OriginError, OriginResult, ReadStream};
use russh_sftp::protocol::{FileAttributes, OpenFlags};

use crate::connection::{Connection, RemoteHandle};
use crate::errors::is_eof;
use crate::pool::Pool;
use crate::sftp_origin::{metadata_of, version_of};

/// Bytes of reads kept outstanding per stream.
const IN_FLIGHT: u64 = 4 << 20;
/// At least this many reads outstanding, whatever the read size.
const MIN_READS: usize = 2;
/// At most this many (a server that answers tiny reads).
const MAX_READS: usize = 64;

/// Opens `remote` (origin path `path`); gives the handle, the version to
/// read (`expected`, else the file's, which must be a file) and its size.
///
/// When the version is known, the `FSTAT` is not sent: the pipeline's check
/// after the first read confirms that version before any byte is handed on,
/// and the size in it (`size:mtime`) bounds the reads as a stat would. Far away that is a round trip less for every
/// ranged read: a seek, and each file's tags in a scan.
async fn open(
    connection: Arc<Connection>,
    path: String,
    remote: String,
    expected: Option<String>,
) -> OriginResult<(RemoteHandle, String, u64)> {
    let file = connection
        .open_handle(
            &path,
            connection
                .sftp
                .open(remote, OpenFlags::READ, FileAttributes::empty()),
        )
        .await?;
    // The version is this plugin's `size:mtime` (`version_of`): its size
    // bounds the reads as a stat would.
    let known_size = expected
        .as_deref()
        .and_then(|v| v.split(':').next()?.parse::<u64>().ok());
    if let (Some(expected), Some(size)) = (expected.clone(), known_size) {
        return Ok((file, expected, size));
    }
    let attrs = connection
        .call(&path, connection.sftp.fstat(file.id()))
        .await?
        .attrs;
    let meta = metadata_of(&attrs);
    if !meta.is_file() {
        return Err(OriginError::not_found(format!("{path}: not a file")));
    }
    let version = version_of(&attrs);
    if expected.is_some_and(|v| v != version) {
        return Err(OriginError::changed(format!(
            "{path}: not the version asked for"
        )));
    }
    Ok((file, version, meta.size))
}

/// The `len` bytes at `offset` of `remote`, streamed.
pub(crate) fn read_stream<'a>(
    pool: Arc<Pool>,
    path: &'a str,
    remote: String,
    offset: u64,
    len: u64,
    expected: Option<&'a str>,
) -> ReadStream<'a> {
    let opened = async move {
        let connection = pool.get().await?;
        let depth =
            ((IN_FLIGHT / connection.max_read.max(1) as u64) as usize).clamp(MIN_READS, MAX_READS);
        // In a task of its own: a stream dropped while the file opens still
        // closes the handle (dropping the task's output does).
        let opening = open(
            connection.clone(),
            path.to_owned(),
            remote,
            expected.map(str::to_owned),
        );
        let (file, version, size) = tokio::spawn(opening)
            .await
            .unwrap_or_else(|e| Err(OriginError::other(format!("opening {path}: {e}"))))?;
        let shape = Shape {
            piece: connection.max_read,
            in_flight: depth,
            deadline: connection.deadline,
            // A server serves one file's requests in the order it receives
            // them (the SFTP drafts require it; OpenSSH's is one loop).
            in_order: true,
        };
        let end = offset.saturating_add(len).min(size);
        // The READs and FSTATs of the open file.
        let (file, path_owned) = (Arc::new(file), path.to_owned());
        let path = path_owned.clone();
        let read = {
            let (connection, file, path) = (connection.clone(), file.clone(), path.clone());
            move |at: u64, len: u32| -> Request<Vec<u8>> {
                let (connection, file, path) = (connection.clone(), file.clone(), path.clone());
                Box::pin(async move {
                    match connection.sftp.read(file.id(), at, len).await {
                        Ok(data) => {
                            connection.heard();
                            Ok(data.data)
                        }
                        // Nothing more: the pipeline says the file ended early.
                        Err(e) if is_eof(&e) => {
                            connection.heard();
                            Ok(Vec::new())
                        }
                        Err(e) => Err(connection.failed(e, &path)),
                    }
                })
            }
        };
        let check = {
            let (connection, file, path) = (connection.clone(), file, path.clone());
            move || -> Request<()> {
                let (connection, file, path) = (connection.clone(), file.clone(), path.clone());
                let version = version.clone();
                Box::pin(async move {
                    match connection.sftp.fstat(file.id()).await {
                        Ok(now) if version_of(&now.attrs) == version => {
                            connection.heard();
                            Ok(())
                        }
                        Ok(_) => Err(OriginError::changed(format!(
                            "{path}: changed while it was read"
                        ))),
                        Err(e) => Err(connection.failed(e, &path)),
                    }
                })
            }
        };
        let requests = Requests {
            read,
            check,
            timed_out: move || connection.timed_out(&path),
        };
        Ok(pipelined(&path_owned, offset, end, shape, requests))
    };
    ReadStream::opened_by(opened)
}
