//! A ranged read as pipelined requests, for backends that answer reads of a
//! bounded size one request at a time but take many in flight (SFTP, NFS):
//! [`pipelined`] keeps `in_flight` reads of `piece` bytes outstanding and
//! hands their answers on in order.
//!
//! Never two versions in one stream: a piece is handed on only once a
//! version check *served after the piece was read* has answered that the
//! file is still the version the stream started with. How a check is known
//! to come after its piece depends on the server ([`Shape::in_order`]):
//!
//! - **In order** (SFTP: a server must process the requests on one file in
//!   the order it receives them). Every read is sent with a check right
//!   behind it, so a piece is confirmed as it arrives: one round trip from
//!   asking to handing on, and nothing held back. Far away that is what makes
//!   a seek one round trip, and a stream flow without pauses.
//! - **Any order** (NFS, SMB: a server may serve requests at once, in any
//!   order). A check is sent only after the pieces it confirms arrived. One
//!   is in flight at a time and confirms every piece that arrived before it;
//!   the reads go on meanwhile (pieces held for a check do not stop new reads
//!   being sent), so a check costs a round trip of latency, not throughput.
//!
//! The first read is small and goes alone until it is confirmed, so that the
//! first bytes wait for one round trip (in order) or two (any order) and not
//! for what is in flight behind them: its check would queue behind their
//! answers, and on SFTP the server packs answers into SSH packets of 32 KiB
//! that can only be read whole, which a connection idle for a while (TCP
//! starts again from ten packets) takes more than a round trip to bring.
//!
//! # How much is in flight
//!
//! [`Shape`] gives the most reads in flight and their size; how many are
//! sent is measured, as TCP sizes its own window. The rate is the bytes of
//! the last [`RATE_ANSWERS`] answers over the time they took to arrive (one
//! pair of answers arriving together says nothing: on a link collapsed to
//! 1 Mbit/s such pairs measured 40 MB/s), and the round trip the least time
//! from sending a read to its answer; the pipeline keeps [`AHEAD`] of the
//! rate, or four round trips of it if more, in flight, and at least two
//! reads. On a link of 100 Mbit/s 50 ms away that is some 2.5 MB in
//! flight; on one that collapsed to 1 Mbit/s two reads, so a seek there waits
//! behind a few seconds of the stream before it, not the 30 s that 4 MiB in
//! flight took (reads sent cannot be called back). A stream starts with two
//! reads after its first and grows as answers come. Reads keep the size
//! [`Shape`] gives: smaller ones while the rate was still being measured
//! made NFS (1 MiB reads) a quarter slower.
//!
//! Each request runs as a task of its own on the current tokio runtime (a
//! plugin's calls have one), so one left in flight goes on while the stream
//! is paused.
//!
//! A read answered with fewer bytes than asked is asked again for the rest
//! at once; one answered with nothing (the file ended early) is `Changed`.
//! Each wait for the next answer has a deadline, so a stream on a slow but
//! live link goes on for as long as answers come.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::{self, FuturesOrdered, StreamExt};

use crate::{OriginError, OriginResult, ReadStream};

/// A boxed request future.
pub type Request<T> = Pin<Box<dyn Future<Output = OriginResult<T>> + Send + 'static>>;

/// What the stream asks of the backend.
pub struct Requests<R, C, T> {
    /// A read of `len` bytes at `offset` (the bytes, possibly fewer).
    pub read: R,
    /// A version check: `Ok(())` while the file is the version read,
    /// `Err(Changed)` once it is not.
    pub check: C,
    /// The error for a wait past the deadline (a plugin may also note the
    /// silence against its connection here).
    pub timed_out: T,
}

/// Shape of the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Bytes per read request.
    pub piece: u32,
    /// The most reads outstanding; how many are is measured (see the
    /// module's essay). Answered pieces awaiting their check are bounded by
    /// twice this.
    pub in_flight: usize,
    /// How long to wait for the next answer.
    pub deadline: Duration,
    /// Whether the server serves one file's requests in the order they were
    /// sent, as SFTP requires of its servers. Each read is then sent with its
    /// check right behind it: the read's future must send its request when
    /// first polled (the pipeline polls it, then the check's, in one task).
    pub in_order: bool,
}

/// A read's offset, length asked, when it was sent, and its bytes with when
/// they arrived.
type ReadAnswer = (
    u64,
    u32,
    tokio::time::Instant,
    OriginResult<(tokio::time::Instant, Vec<u8>)>,
);

/// `request` run as a task of its own, cancelled when the answer is dropped.
///
/// A request left in flight must go on being polled while the stream is not
/// (its reader paused, the plugin's credit full): a backend that queues its
/// senders fairly (a lock on the connection's writer, say) hands its turn to
/// the first in the queue, and one that is never polled would hold every
/// other stream on that connection until it is dropped.
fn running<T: Send + 'static>(request: Request<T>) -> Request<T> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<OriginResult<T>>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(request));
    Box::pin(async move {
        match (&mut task.0).await {
            Ok(answer) => answer,
            Err(e) => Err(OriginError::other(format!("a request failed: {e}"))),
        }
    })
}

/// The most the first read of a stream asks: within what a connection idle
/// for a while brings in its first round trip (TCP starts again from ten
/// packets, some 14 KB), and more than the kernel asks for a read after a
/// seek (the 4 KiB page it needs).
const FIRST_READ: u64 = 8 << 10;

/// How much of the measured rate is kept in flight at least (see the
/// module's essay).
const AHEAD: Duration = Duration::from_millis(100);
/// The fewest reads in flight after the first.
const FEWEST_READS: usize = 2;
/// How many answers the rate is measured over.
const RATE_ANSWERS: usize = 8;

struct Pipeline<R, C, T> {
    requests: Requests<R, C, T>,
    shape: Shape,
    path: String,
    next: u64,
    end: u64,
    sent_any: bool,
    confirmed_any: bool,
    reads: FuturesOrdered<Pin<Box<dyn Future<Output = ReadAnswer> + Send>>>,
    check: Option<Request<()>>,
    checking: usize,
    held: VecDeque<Vec<u8>>,
    ready: VecDeque<Vec<u8>>,
    /// Bytes a second the answers arrive at (0 until one has).
    rate: f64,
    /// The shortest time from sending a read to its answer.
    round_trip: Option<Duration>,
    /// When the last answers arrived, and their bytes: the first is where
    /// the rate's time starts.
    arrivals: VecDeque<(tokio::time::Instant, usize)>,
}

enum Next {
    Read(ReadAnswer),
    Checked(OriginResult<()>),
    Idle,
}

impl<R, C, T> Pipeline<R, C, T>
where
    R: Fn(u64, u32) -> Request<Vec<u8>>,
    C: Fn() -> Request<()>,
    T: Fn() -> OriginError,
{
    fn send_read(&mut self, offset: u64, len: u32, front: bool) {
        let read = (self.requests.read)(offset, len);
        let request = if self.shape.in_order {
            // The read, then its check, sent in that order by one task: the
            // server serves the check after the read, so a piece whose check
            // found the version unchanged is of that version.
            let check = (self.requests.check)();
            running(Box::pin(async move {
                let (data, unchanged) = futures_util::future::join(read, check).await;
                let data = data?;
                unchanged?;
                Ok(data)
            }))
        } else {
            running(read)
        };
        let sent = tokio::time::Instant::now();
        // When the answer arrived, taken in the request's own task: this
        // stream may not be polled then (its reader paused).
        let request = running(Box::pin(async move {
            let data = request.await?;
            Ok((tokio::time::Instant::now(), data))
        }));
        let answer = Box::pin(async move { (offset, len, sent, request.await) });
        if front {
            self.reads.push_front(answer);
        } else {
            self.reads.push_back(answer);
        }
    }

    fn fill(&mut self) {
        // The check first: it is then sent ahead of the reads below, not
        // queued behind their answers.
        if self.check.is_none() && !self.held.is_empty() {
            self.checking = self.held.len();
            self.check = Some(running((self.requests.check)()));
        }
        let (piece, depth) = self.measured_shape();
        let in_flight = self.shape.in_flight.max(1);
        // The first read alone until it is confirmed (see the module's essay).
        let window = if self.confirmed_any { depth } else { 1 };
        // Pieces held for a check do not count against the reads in flight
        // (that would leave the link idle for every check's round trip), but
        // are bounded: a check waits behind the reads in flight and a round
        // trip, so twice as many pieces arrive meanwhile.
        while self.reads.len() < window && self.held.len() < 2 * in_flight && self.next < self.end {
            // The first read small, so that the first bytes wait for little.
            let size = if self.sent_any {
                piece
            } else {
                piece.min(FIRST_READ)
            };
            self.sent_any = true;
            let len = (self.end - self.next).min(size) as u32;
            self.send_read(self.next, len, false);
            self.next += len as u64;
        }
    }

    /// The size of the next reads and how many to keep in flight, from the
    /// rate and round trip measured so far (see the module's essay).
    fn measured_shape(&self) -> (u64, usize) {
        let piece = self.shape.piece.max(1) as u64;
        let in_flight = self.shape.in_flight.max(1);
        let least = FEWEST_READS.min(in_flight);
        let Some(round_trip) = self.round_trip.filter(|_| self.rate > 0.0) else {
            return (piece, least);
        };
        let ahead = self.rate * AHEAD.max(4 * round_trip).as_secs_f64();
        let reads = (ahead / piece as f64).ceil() as usize + 1;
        (piece, reads.clamp(least, in_flight))
    }

    /// Takes in an answer of `len` bytes to a read sent at `sent` that
    /// arrived at `arrived`.
    fn measure(&mut self, sent: tokio::time::Instant, arrived: tokio::time::Instant, len: usize) {
        let took = arrived.saturating_duration_since(sent);
        self.round_trip = Some(self.round_trip.map_or(took, |least| least.min(took)));
        if self.arrivals.is_empty() {
            // The first answer: its bytes over its round trip, a low guess.
            self.arrivals.push_back((sent, 0));
        }
        let at = self
            .arrivals
            .back()
            .map_or(arrived, |last| last.0.max(arrived));
        self.arrivals.push_back((at, len));
        if self.arrivals.len() > RATE_ANSWERS + 1 {
            self.arrivals.pop_front();
        }
        let (since, _) = self.arrivals[0];
        let spent = at.saturating_duration_since(since).as_secs_f64();
        let bytes: usize = self.arrivals.iter().skip(1).map(|(_, len)| len).sum();
        if spent > 0.0 && bytes > 0 {
            self.rate = bytes as f64 / spent;
        }
    }

    async fn next_answer(&mut self) -> Next {
        poll_fn(|cx| {
            if let Some(check) = self.check.as_mut() {
                if let Poll::Ready(answer) = check.as_mut().poll(cx) {
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

    async fn next_piece(&mut self) -> Option<OriginResult<Vec<u8>>> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Some(Ok(piece));
            }
            self.fill();
            let Ok(answer) = tokio::time::timeout(self.shape.deadline, self.next_answer()).await
            else {
                tracing::warn!(
                    path = self.path,
                    reads = self.reads.len(),
                    held = self.held.len(),
                    checking = self.check.is_some(),
                    next = self.next,
                    "no answer within the deadline"
                );
                return Some(Err((self.requests.timed_out)()));
            };
            match answer {
                Next::Idle => return None,
                Next::Read((offset, asked, sent, answer)) => {
                    let mut data = match answer {
                        Ok((arrived, data)) if !data.is_empty() => {
                            self.measure(sent, arrived, data.len());
                            data
                        }
                        Ok(_) => {
                            return Some(Err(OriginError::changed(format!(
                                "{}: ended early while it was read",
                                self.path
                            ))))
                        }
                        Err(e) => return Some(Err(e)),
                    };
                    data.truncate(asked as usize);
                    let got = data.len() as u32;
                    if got < asked {
                        self.send_read(offset + got as u64, asked - got, true);
                    }
                    if self.shape.in_order {
                        // Confirmed by the check that went behind it.
                        self.confirmed_any = true;
                        self.ready.push_back(data);
                    } else {
                        self.held.push_back(data);
                    }
                }
                Next::Checked(Err(e)) => return Some(Err(e)),
                Next::Checked(Ok(())) => {
                    self.confirmed_any = true;
                    self.ready.extend(self.held.drain(..self.checking));
                }
            }
        }
    }
}

/// The bytes `offset..end` of the file at `path` (named in errors), read by
/// `requests` in the given `shape`. `end` must not pass the size the file had
/// when its version was taken.
pub fn pipelined<'a, R, C, T>(
    path: &str,
    offset: u64,
    end: u64,
    shape: Shape,
    requests: Requests<R, C, T>,
) -> ReadStream<'a>
where
    R: Fn(u64, u32) -> Request<Vec<u8>> + Send + 'a,
    C: Fn() -> Request<()> + Send + 'a,
    T: Fn() -> OriginError + Send + 'a,
{
    let pipeline = Pipeline {
        requests,
        shape,
        path: path.to_owned(),
        next: offset,
        end,
        sent_any: false,
        confirmed_any: false,
        reads: FuturesOrdered::new(),
        check: None,
        checking: 0,
        held: VecDeque::new(),
        ready: VecDeque::new(),
        rate: 0.0,
        round_trip: None,
        arrivals: VecDeque::new(),
    };
    ReadStream::new(stream::unfold(Some(pipeline), |state| async move {
        let mut pipeline = state?;
        match pipeline.next_piece().await {
            Some(Ok(piece)) => Some((Ok(piece), Some(pipeline))),
            Some(Err(e)) => Some((Err(e), None)),
            None => None,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    type FakeRequests = Requests<
        Box<dyn Fn(u64, u32) -> Request<Vec<u8>> + Send>,
        Box<dyn Fn() -> Request<()> + Send>,
        Box<dyn Fn() -> OriginError + Send>,
    >;

    fn content(len: usize) -> Arc<Vec<u8>> {
        Arc::new((0..len).map(|i| (i * 31 % 251) as u8).collect())
    }

    /// A backend that answers at most `short` bytes a read, and whose file
    /// changes after `checks_until_change` checks.
    fn backend(data: Arc<Vec<u8>>, short: usize, checks_until_change: usize) -> FakeRequests {
        let checks = Arc::new(AtomicUsize::new(0));
        Requests {
            read: Box::new(move |at, len| {
                let data = data.clone();
                Box::pin(async move {
                    let start = (at as usize).min(data.len());
                    let end = (start + (len as usize).min(short)).min(data.len());
                    Ok(data[start..end].to_vec())
                })
            }),
            check: Box::new(move || {
                let n = checks.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move {
                    if n >= checks_until_change {
                        Err(OriginError::changed("f: changed"))
                    } else {
                        Ok(())
                    }
                })
            }),
            timed_out: Box::new(|| OriginError::timeout("late")),
        }
    }

    const SHAPE: Shape = Shape {
        piece: 4096,
        in_flight: 4,
        deadline: Duration::from_secs(60),
        in_order: false,
    };
    const IN_ORDER: Shape = Shape {
        in_order: true,
        ..SHAPE
    };

    #[tokio::test]
    async fn short_answers_still_give_exactly_the_range() {
        let data = content(100_000);
        for shape in [SHAPE, IN_ORDER] {
            let got = pipelined(
                "f",
                1234,
                90_000,
                shape,
                backend(data.clone(), 1000, usize::MAX),
            )
            .collect()
            .await
            .unwrap();
            assert!(got == data[1234..90_000], "{shape:?}");
        }
    }

    #[tokio::test]
    async fn a_change_ends_the_stream_after_confirmed_bytes_only() {
        let data = content(100_000);
        for shape in [SHAPE, IN_ORDER] {
            let mut stream = pipelined("f", 0, 100_000, shape, backend(data.clone(), 4096, 3));
            let mut at = 0;
            let outcome = loop {
                match stream.next().await {
                    Some(Ok(piece)) => {
                        assert!(piece[..] == data[at..at + piece.len()]);
                        at += piece.len();
                    }
                    Some(Err(e)) => break e,
                    None => panic!("the change was not seen"),
                }
            };
            assert_eq!(outcome.kind(), ErrorKind::Changed);
            assert!(at > 0 && at < data.len(), "{at}");
            if shape.in_order {
                // Three checks found the version, each behind its own read.
                assert_eq!(at, 3 * 4096);
            }
        }
    }

    /// In order: every read goes with its check right behind it (in the
    /// order the server is sent them), the first alone and then the window at
    /// once, and a piece is handed on as soon as its read and check are
    /// answered.
    #[tokio::test(start_paused = true)]
    async fn in_order_each_read_goes_with_its_check() {
        let data = content(100_000);
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let inner = backend(data.clone(), usize::MAX, usize::MAX);
        let (l1, l2) = (log.clone(), log.clone());
        let requests = Requests {
            read: move |at, len| -> Request<Vec<u8>> {
                let (log, answer) = (l1.clone(), (inner.read)(at, len));
                Box::pin(async move {
                    // Logged at the first poll: when a backend sends it.
                    log.lock().unwrap().push(format!("read {at}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    log.lock().unwrap().push(format!("answer {at}"));
                    answer.await
                })
            },
            check: move || -> Request<()> {
                let log = l2.clone();
                Box::pin(async move {
                    log.lock().unwrap().push("check".into());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(())
                })
            },
            timed_out: || OriginError::timeout("late"),
        };
        let got = pipelined("f", 0, 100_000, IN_ORDER, requests)
            .collect()
            .await
            .unwrap();
        assert!(got == data[..]);
        let log = log.lock().unwrap();
        // The first piece came alone, one round trip after it was asked for;
        // then the window was sent at once, each read with its check.
        assert_eq!(log[..3], ["read 0", "check", "answer 0"], "{log:?}");
        let window: Vec<&String> = log[3..3 + 2 * IN_ORDER.in_flight].iter().collect();
        for (i, pair) in window.chunks(2).enumerate() {
            assert_eq!(pair[0], &format!("read {}", 4096 + i * 4096), "{log:?}");
            assert_eq!(pair[1], "check", "{log:?}");
        }
        assert_eq!(
            log.iter().filter(|l| *l == "check").count(),
            log.iter().filter(|l| l.starts_with("read")).count(),
            "one check per read: {log:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_read_goes_alone_until_its_check_confirms_it() {
        let data = content(100_000);
        // Reads outstanding now, the most at once, and at each check.
        let outstanding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let at_checks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let inner = backend(data.clone(), usize::MAX, usize::MAX);
        let (o, m) = (outstanding.clone(), most.clone());
        let (o2, seen) = (outstanding.clone(), at_checks.clone());
        let requests = Requests {
            read: move |at, len| -> Request<Vec<u8>> {
                let (o, m, answer) = (o.clone(), m.clone(), (inner.read)(at, len));
                Box::pin(async move {
                    // Counted from the first poll: when a backend would send it.
                    m.fetch_max(o.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    // Later bytes take longer: reads overlap.
                    tokio::time::sleep(Duration::from_millis(1 + at / 4096)).await;
                    let answer = answer.await;
                    o.fetch_sub(1, Ordering::SeqCst);
                    answer
                })
            },
            check: move || -> Request<()> {
                let (o, seen) = (o2.clone(), seen.clone());
                Box::pin(async move {
                    seen.lock().unwrap().push(o.load(Ordering::SeqCst));
                    Ok(())
                })
            },
            timed_out: || OriginError::timeout("late"),
        };
        let got = pipelined("f", 0, 100_000, SHAPE, requests)
            .collect()
            .await
            .unwrap();
        assert!(got == data[..]);
        let at_checks = at_checks.lock().unwrap();
        assert_eq!(at_checks[0], 0, "the first check queues behind no read");
        assert!(
            most.load(Ordering::SeqCst) >= FEWEST_READS,
            "then more reads go at once"
        );
    }

    /// Two streams on one connection whose writer is a fair lock (as a
    /// client's socket writer is): the first, polled once and then paused,
    /// must not keep the second waiting behind its queued request.
    #[tokio::test(start_paused = true)]
    async fn a_paused_stream_does_not_hold_up_the_others_on_its_connection() {
        let data = content(100_000);
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let on_connection = |data: Arc<Vec<u8>>| {
            let inner = backend(data, usize::MAX, usize::MAX);
            let writer = writer.clone();
            Requests {
                read: move |at, len| -> Request<Vec<u8>> {
                    let (writer, answer) = (writer.clone(), (inner.read)(at, len));
                    Box::pin(async move {
                        drop(writer.lock().await);
                        answer.await
                    })
                },
                check: move || -> Request<()> { Box::pin(async { Ok(()) }) },
                timed_out: || OriginError::timeout("late"),
            }
        };
        let busy = writer.clone().lock_owned().await;
        let mut paused = pipelined("a", 0, 100_000, SHAPE, on_connection(data.clone()));
        // Polled once: its first read queues for the writer; then never again.
        let polled = tokio::time::timeout(Duration::ZERO, paused.next()).await;
        assert!(polled.is_err(), "the writer was busy");
        drop(busy);
        let other = pipelined("b", 0, 100_000, SHAPE, on_connection(data.clone())).collect();
        let got = tokio::time::timeout(Duration::from_secs(3600), other)
            .await
            .expect("the other stream waited behind the paused one")
            .unwrap();
        assert!(got == data[..]);
        drop(paused);
    }

    /// A server behind a link: requests reach it half a round trip after they
    /// are sent, are served one after the other at `rate` bytes a second,
    /// and their answers come back half a round trip later. Counts the bytes
    /// asked and not yet answered, and the most at once.
    struct Link {
        rate: f64,
        half: Duration,
        free_at: std::sync::Mutex<tokio::time::Instant>,
        outstanding: AtomicUsize,
        most: AtomicUsize,
    }

    fn over(link: Arc<Link>, data: Arc<Vec<u8>>) -> FakeRequests {
        let checks = link.clone();
        Requests {
            read: Box::new(move |at, len| {
                let (link, data) = (link.clone(), data.clone());
                Box::pin(async move {
                    let len = len as usize;
                    let now = tokio::time::Instant::now();
                    let done = {
                        let mut free = link.free_at.lock().unwrap();
                        let start = (*free).max(now + link.half);
                        *free = start + Duration::from_secs_f64(len as f64 / link.rate);
                        *free + link.half
                    };
                    let now = link.outstanding.fetch_add(len, Ordering::SeqCst) + len;
                    link.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep_until(done).await;
                    link.outstanding.fetch_sub(len, Ordering::SeqCst);
                    let at = at as usize;
                    Ok(data[at..(at + len).min(data.len())].to_vec())
                })
            }),
            check: Box::new(move || {
                let link = checks.clone();
                Box::pin(async move {
                    tokio::time::sleep(2 * link.half).await;
                    Ok(())
                })
            }),
            timed_out: Box::new(|| OriginError::timeout("late")),
        }
    }

    fn link(rate: f64) -> Arc<Link> {
        Arc::new(Link {
            rate,
            half: Duration::from_millis(25),
            free_at: std::sync::Mutex::new(tokio::time::Instant::now()),
            outstanding: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        })
    }

    /// At most 16 reads of 256 KiB, as SFTP far away: what is in flight
    /// follows the measured rate and round trip.
    const FAR: Shape = Shape {
        piece: 256 << 10,
        in_flight: 16,
        deadline: Duration::from_secs(60),
        in_order: true,
    };

    /// Streams `len` bytes over a link of `rate` bytes a second: the most
    /// bytes in flight at once, the time it took and the link's own time
    /// for the bytes (both of paused time, in seconds).
    async fn stream_over(rate: f64, len: usize) -> (usize, f64, f64) {
        let data = content(len);
        let link = link(rate);
        let begun = tokio::time::Instant::now();
        let requests = over(link.clone(), data.clone());
        let got = pipelined("f", 0, len as u64, FAR, requests)
            .collect()
            .await
            .unwrap();
        assert!(got == data[..]);
        let took = begun.elapsed().as_secs_f64();
        (link.most.load(Ordering::SeqCst), took, len as f64 / rate)
    }

    /// On a link collapsed to 1 Mbit/s, a stream keeps two reads in flight
    /// (not 4 MiB, which such a link takes half a minute to bring, and which
    /// a seek after it would wait behind), and reads at the rate.
    #[tokio::test(start_paused = true)]
    async fn a_slow_link_gets_little_in_flight() {
        let (most, took, wire) = stream_over(125_000.0, 2 << 20).await;
        // Two reads of 256 KiB and the first: not 4 MiB.
        assert!(
            most <= 3 * (256 << 10),
            "{most} bytes in flight at 1 Mbit/s"
        );
        // Not slower for it: the link's time for the bytes, and a few trips.
        assert!(
            took < wire * 1.1 + 0.5,
            "{took:.2} s for {wire:.2} s of bytes"
        );
    }

    /// On a link of 100 Mbit/s 50 ms away, what is in flight grows until the
    /// link is kept full: 20 MB in about the link's own time.
    #[tokio::test(start_paused = true)]
    async fn a_fast_link_is_kept_full() {
        let (most, took, wire) = stream_over(12_500_000.0, 20 << 20).await;
        assert!(most >= 1 << 20, "only {most} bytes in flight");
        assert!(
            took < wire * 1.05 + 0.3,
            "{took:.2} s for {wire:.2} s of bytes"
        );
    }

    #[tokio::test]
    async fn a_file_that_ends_early_is_changed() {
        let data = content(10_000);
        let e = pipelined("f", 0, 20_000, SHAPE, backend(data, 4096, usize::MAX))
            .collect()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Changed);
    }
}
