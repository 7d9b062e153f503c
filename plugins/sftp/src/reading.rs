//! A ranged read as pipelined SFTP reads, as OpenSSH's own client does: the
//! file is opened (and its version checked) once, then up to [`IN_FLIGHT`]
//! bytes of `READ`s of the server's largest read size are kept outstanding,
//! and their answers handed on in order. The range is read exactly: no
//! request reaches past its end (or past the size the file had when opened).
//!
//! Never two versions in one stream: a piece is handed on only once an
//! `FSTAT` sent *after the piece arrived* has answered with the version the
//! stream started with. Sending it after the answer makes this hold whatever
//! order a server serves requests in. One check is in flight at a time and
//! confirms every piece that arrived before it; reads go on meanwhile, so it
//! costs a round trip of latency, not throughput. A file that changes while
//! it is read is `Changed`; one that ends early (truncated) is `Changed` too.
//!
//! A server may answer a read with fewer bytes than asked (OpenSSH caps each
//! answer); the rest is asked for again at once. Deadlines: each wait for the
//! next answer of a stream has `request_timeout_secs`, so a stream on a slow
//! but live link goes on for as long as answers come. The file is opened in a
//! task of its own and its handle closed when the stream ends or is dropped.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use origin_api::{OriginError, OriginResult, ReadStream};
use russh_sftp::client::error::Error;
use russh_sftp::protocol::{FileAttributes, OpenFlags};

use crate::connection::{Connection, RemoteHandle};
use crate::errors::is_eof;
use crate::pool::Pool;
use crate::sftp_origin::{metadata_of, version_of};

/// Bytes of reads kept outstanding (or answered, awaiting their check) per
/// stream.
const IN_FLIGHT: u64 = 4 << 20;
/// At least this many reads outstanding, whatever the read size.
const MIN_READS: usize = 2;
/// At most this many (a server that answers tiny reads).
const MAX_READS: usize = 64;

/// A read in flight: where, how much, and the answer.
type ReadAnswer = (u64, u32, Result<Vec<u8>, Error>);

/// What came back next.
enum Next {
    Read(ReadAnswer),
    Checked(Result<FileAttributes, Error>),
    /// Nothing is in flight.
    Idle,
}

struct Reading {
    file: Arc<RemoteHandle>,
    connection: Arc<Connection>,
    path: String,
    version: String,
    /// The next byte to ask for, and the end of what is asked.
    next: u64,
    end: u64,
    depth: usize,
    reads: FuturesOrdered<BoxFuture<'static, ReadAnswer>>,
    check: Option<BoxFuture<'static, Result<FileAttributes, Error>>>,
    /// How many pieces the check in flight confirms.
    checking: usize,
    /// Answered pieces not yet confirmed, oldest first.
    held: VecDeque<Vec<u8>>,
    /// Confirmed pieces, ready to hand on.
    ready: VecDeque<Vec<u8>>,
}

impl Reading {
    fn send_read(&mut self, offset: u64, asked: u32, front: bool) {
        let (connection, file) = (self.connection.clone(), self.file.clone());
        let request = async move {
            let answer = connection.sftp.read(file.id(), offset, asked).await;
            (offset, asked, answer.map(|data| data.data))
        }
        .boxed();
        if front {
            self.reads.push_front(request);
        } else {
            self.reads.push_back(request);
        }
    }

    fn fill(&mut self) {
        let max = self.connection.max_read as u64;
        while self.reads.len() + self.held.len() < self.depth && self.next < self.end {
            let asked = (self.end - self.next).min(max) as u32;
            self.send_read(self.next, asked, false);
            self.next += asked as u64;
        }
        if self.check.is_none() && !self.held.is_empty() {
            let (connection, file) = (self.connection.clone(), self.file.clone());
            self.checking = self.held.len();
            self.check = Some(
                async move { connection.sftp.fstat(file.id()).await.map(|a| a.attrs) }.boxed(),
            );
        }
    }

    /// Waits for the check or the oldest read, whichever answers first.
    async fn next_answer(&mut self) -> Next {
        poll_fn(|cx| {
            if let Some(check) = self.check.as_mut() {
                if let Poll::Ready(answer) = check.poll_unpin(cx) {
                    self.check = None;
                    return Poll::Ready(Next::Checked(answer));
                }
            }
            match self.reads.poll_next_unpin(cx) {
                Poll::Ready(Some(answer)) => Poll::Ready(Next::Read(answer)),
                Poll::Ready(None) if self.check.is_none() => Poll::Ready(Next::Idle),
                _ => Poll::Pending,
            }
        })
        .await
    }

    fn changed(&self, how: &str) -> OriginError {
        OriginError::changed(format!("{}: {how} while it was read", self.path))
    }

    /// The next piece, `None` at the end of the range.
    async fn next_piece(&mut self) -> Option<OriginResult<Vec<u8>>> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Some(Ok(piece));
            }
            self.fill();
            let answer = tokio::time::timeout(self.connection.deadline, self.next_answer()).await;
            let Ok(answer) = answer else {
                return Some(Err(self.connection.timed_out(&self.path)));
            };
            match answer {
                Next::Idle => return None,
                Next::Read((offset, asked, answer)) => {
                    let mut data = match answer {
                        Ok(data) if !data.is_empty() => data,
                        Ok(_) => return Some(Err(self.changed("ended early"))),
                        Err(e) if is_eof(&e) => return Some(Err(self.changed("ended early"))),
                        Err(e) => return Some(Err(self.connection.failed(e, &self.path))),
                    };
                    self.connection.heard();
                    if data.len() > asked as usize {
                        tracing::warn!(path = self.path, "the server sent more than was asked");
                        data.truncate(asked as usize);
                    }
                    let got = data.len() as u32;
                    if got < asked {
                        self.send_read(offset + got as u64, asked - got, true);
                    }
                    self.held.push_back(data);
                }
                Next::Checked(answer) => {
                    let attrs = match answer {
                        Ok(attrs) => attrs,
                        Err(e) => return Some(Err(self.connection.failed(e, &self.path))),
                    };
                    self.connection.heard();
                    if version_of(&attrs) != self.version {
                        return Some(Err(self.changed("changed")));
                    }
                    self.ready.extend(self.held.drain(..self.checking));
                }
            }
        }
    }
}

/// Opens `remote` (origin path `path`) and checks it is a file of version
/// `expected`; gives the handle, the version and the size.
async fn open(
    connection: Arc<Connection>,
    path: String,
    remote: String,
    expected: Option<String>,
) -> OriginResult<(RemoteHandle, String, u64)> {
    let handle = connection
        .call(
            &path,
            connection
                .sftp
                .open(remote, OpenFlags::READ, FileAttributes::empty()),
        )
        .await?;
    let file = RemoteHandle::new(connection.clone(), handle.handle);
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
        Ok(Reading {
            file: Arc::new(file),
            connection,
            path: path.to_owned(),
            version,
            next: offset,
            end: offset.saturating_add(len).min(size),
            depth,
            reads: FuturesOrdered::new(),
            check: None,
            checking: 0,
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
