//! A ranged read as pipelined SFTP reads, as OpenSSH's own client does: the
//! file is opened (and its version checked) once, then up to [`IN_FLIGHT`]
//! bytes of `READ` requests of the server's largest read size are kept
//! outstanding, and their answers handed on in order as they arrive. The
//! range is read exactly: no request reaches past its end (or past the size
//! the file had when opened).
//!
//! Never two versions in one stream: after every [`CHECK_EVERY`] reads an
//! `FSTAT` of the handle is queued, and a piece is handed on only once an
//! `FSTAT` sent after its read has answered with the version the stream
//! started with. This relies on the server answering one handle's requests
//! in the order they were sent, as OpenSSH's `sftp-server` does (it serves a
//! session one request at a time). A file that changes while it is read is
//! `Changed`; one that ends early (truncated) is `Changed` too.
//!
//! A server may answer a read with fewer bytes than asked (OpenSSH caps each
//! answer); the rest is asked for again at once. The handle is closed when
//! the stream ends or is dropped.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use origin_api::{OriginError, OriginResult, ReadStream};
use russh_sftp::client::error::Error;
use russh_sftp::protocol::{FileAttributes, OpenFlags};

use crate::connection::Connection;
use crate::errors::is_eof;
use crate::pool::Pool;
use crate::sftp_origin::{metadata_of, version_of};

/// Bytes of reads kept outstanding per stream.
const IN_FLIGHT: u64 = 4 << 20;
/// At least this many reads outstanding, whatever the read size.
const MIN_READS: usize = 2;
/// At most this many (a server that answers tiny reads).
const MAX_READS: usize = 64;
/// An `FSTAT` after this many reads.
const CHECK_EVERY: usize = 4;

/// An open file handle, closed when dropped.
struct OpenFile {
    connection: Arc<Connection>,
    handle: String,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let connection = self.connection.clone();
        let handle = std::mem::take(&mut self.handle);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = connection.sftp.close(handle).await;
            });
        }
    }
}

/// A request in flight, numbered in the order it was sent.
enum Sent {
    Read { sent: u64, offset: u64, asked: u32 },
    Check { sent: u64 },
}

enum Reply {
    Data(Result<Vec<u8>, Error>),
    Attrs(Result<FileAttributes, Error>),
}

struct Reading {
    file: OpenFile,
    path: String,
    version: String,
    /// The next byte to ask for, and the end of what is asked.
    next: u64,
    end: u64,
    depth: usize,
    sent: u64,
    reads_in_flight: usize,
    reads_unchecked: usize,
    in_flight: FuturesOrdered<BoxFuture<'static, (Sent, Reply)>>,
    /// Answered pieces not yet confirmed by a check, by when they were sent.
    held: VecDeque<(u64, Vec<u8>)>,
    /// Confirmed pieces, ready to hand on.
    ready: VecDeque<Vec<u8>>,
}

impl Reading {
    fn send_read(&mut self, offset: u64, asked: u32, front: bool) {
        let (connection, handle) = (self.file.connection.clone(), self.file.handle.clone());
        let sent = self.next_number();
        let request = async move {
            let answer = connection.sftp.read(handle, offset, asked).await;
            let sent = Sent::Read {
                sent,
                offset,
                asked,
            };
            (sent, Reply::Data(answer.map(|data| data.data)))
        }
        .boxed();
        if front {
            self.in_flight.push_front(request);
        } else {
            self.in_flight.push_back(request);
        }
        self.reads_in_flight += 1;
        self.reads_unchecked += 1;
    }

    fn send_check(&mut self) {
        let (connection, handle) = (self.file.connection.clone(), self.file.handle.clone());
        let sent = self.next_number();
        let request = async move {
            let answer = connection.sftp.fstat(handle).await;
            (Sent::Check { sent }, Reply::Attrs(answer.map(|a| a.attrs)))
        }
        .boxed();
        self.in_flight.push_back(request);
        self.reads_unchecked = 0;
    }

    fn next_number(&mut self) -> u64 {
        self.sent += 1;
        self.sent
    }

    fn fill(&mut self) {
        let max = self.file.connection.max_read as u64;
        while self.reads_in_flight < self.depth && self.next < self.end {
            let asked = (self.end - self.next).min(max) as u32;
            self.send_read(self.next, asked, false);
            self.next += asked as u64;
            if self.reads_unchecked == CHECK_EVERY {
                self.send_check();
            }
        }
        if self.next >= self.end && self.reads_unchecked > 0 {
            self.send_check();
        }
    }

    fn shorter(&self) -> OriginError {
        OriginError::changed(format!("{}: ended early while it was read", self.path))
    }

    /// The next piece, `None` at the end of the range.
    async fn next_piece(&mut self) -> Option<OriginResult<Vec<u8>>> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Some(Ok(piece));
            }
            self.fill();
            let (sent, reply) = self.in_flight.next().await?;
            match (sent, reply) {
                (
                    Sent::Read {
                        sent,
                        offset,
                        asked,
                    },
                    Reply::Data(answer),
                ) => {
                    self.reads_in_flight -= 1;
                    let data = match answer {
                        Ok(data) if !data.is_empty() => data,
                        Ok(_) => return Some(Err(self.shorter())),
                        Err(e) if is_eof(&e) => return Some(Err(self.shorter())),
                        Err(e) => return Some(Err(self.file.connection.failed(e, &self.path))),
                    };
                    let got = data.len() as u32;
                    if got < asked {
                        self.send_read(offset + got as u64, asked - got, true);
                    }
                    self.held.push_back((sent, data));
                }
                (Sent::Check { sent }, Reply::Attrs(answer)) => {
                    let attrs = match answer {
                        Ok(attrs) => attrs,
                        Err(e) => return Some(Err(self.file.connection.failed(e, &self.path))),
                    };
                    if version_of(&attrs) != self.version {
                        return Some(Err(OriginError::changed(format!(
                            "{}: changed while it was read",
                            self.path
                        ))));
                    }
                    while self.held.front().is_some_and(|(read, _)| *read < sent) {
                        let (_, piece) = self.held.pop_front().expect("just looked");
                        self.ready.push_back(piece);
                    }
                }
                _ => unreachable!("each request gets its own kind of reply"),
            }
        }
    }
}

/// Opens `remote` (origin path `path`) and checks it is a file of version
/// `expected`; gives the handle, the version and the size.
async fn open(
    connection: Arc<Connection>,
    path: &str,
    remote: &str,
    expected: Option<&str>,
) -> OriginResult<(OpenFile, String, u64)> {
    let handle = connection
        .sftp
        .open(remote, OpenFlags::READ, FileAttributes::empty())
        .await
        .map_err(|e| connection.failed(e, path))?;
    let file = OpenFile {
        connection,
        handle: handle.handle,
    };
    let connection = &file.connection;
    let attrs = connection
        .sftp
        .fstat(file.handle.as_str())
        .await
        .map_err(|e| connection.failed(e, path))?
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
        let (file, version, size) = open(connection, path, &remote, expected).await?;
        Ok(Reading {
            file,
            path: path.to_owned(),
            version,
            next: offset,
            end: offset.saturating_add(len).min(size),
            depth,
            sent: 0,
            reads_in_flight: 0,
            reads_unchecked: 0,
            in_flight: FuturesOrdered::new(),
            held: VecDeque::new(),
            ready: VecDeque::new(),
        })
    };
    let pieces = stream::once(opened).flat_map(|opened| match opened {
        Err(e) => stream::iter([Err(e)]).boxed(),
        Ok(reading) => stream::unfold(Some(reading), |state| async move {
            let mut reading = state?;
            match reading.next_piece().await {
                Some(Ok(piece)) => Some((Ok(piece), Some(reading))),
                Some(Err(e)) => Some((Err(e), None)),
                None => None,
            }
        })
        .boxed(),
    });
    ReadStream::new(pieces)
}
