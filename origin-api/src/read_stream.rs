//! Streaming ranged reads: the bytes of a range as a stream of pieces, in order,
//! as the backend delivers them.
//!
//! The contract, for any [`ReadStream`] an origin returns:
//!
//! - Pieces are contiguous and in order, starting at the requested offset. None
//!   is empty. Together they are the whole range, clipped at the end of the file;
//!   the stream ends early only there (a range at or past the end is an empty
//!   stream, not an error).
//! - An error ends the stream: no piece comes after it. [`crate::ErrorKind::Changed`]
//!   may arrive before the first piece or between pieces; the pieces before it
//!   were of the expected version.
//! - Nothing happens until the stream is polled, and dropping it cancels whatever
//!   it was doing.
//!
//! Across the plugin boundary, the plugin side polls your stream on the plugin's
//! runtime ahead of the host by at most a credit of bytes the host chooses, and
//! hands the host everything that has arrived when it asks (up to a limit), so a
//! backend that delivers 16 KiB frames does not cross the boundary 16 KiB at a
//! time unless the host is waiting for exactly those bytes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(feature = "host")]
use abi_stable::std_types::RVec;
use futures_core::Stream;

use crate::OriginResult;

/// One piece of a stream: its bytes, held where they were made. A piece that
/// crossed the plugin boundary stays in the plugin's allocation, so reading it
/// ([`std::ops::Deref`] to `[u8]`) copies nothing; [`Piece::into_vec`] copies
/// only such a piece.
pub struct Piece(Held);

enum Held {
    Here(Vec<u8>),
    /// Held by someone else (shared memory, say) until the piece is dropped.
    Elsewhere(Box<dyn std::ops::Deref<Target = [u8]> + Send + Sync>),
    /// Made by another library: it must be freed by that library's allocator,
    /// so turning it into a `Vec` copies it.
    #[cfg(feature = "host")]
    Plugin(RVec<u8>),
}

impl Piece {
    #[cfg(feature = "host")]
    pub(crate) fn from_plugin(bytes: RVec<u8>) -> Self {
        Piece(Held::Plugin(bytes))
    }

    /// A piece whose bytes `holder` keeps where they are (a region of shared
    /// memory, say) and releases when the piece is dropped; reading it copies
    /// nothing. Since 1.7.
    pub fn held_by(holder: impl std::ops::Deref<Target = [u8]> + Send + Sync + 'static) -> Self {
        Piece(Held::Elsewhere(Box::new(holder)))
    }

    /// The bytes as a `Vec` (a copy only for a piece held elsewhere).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Held::Here(bytes) => bytes,
            Held::Elsewhere(holder) => holder.to_vec(),
            #[cfg(feature = "host")]
            Held::Plugin(bytes) => bytes.into_vec(),
        }
    }
}

impl From<Vec<u8>> for Piece {
    fn from(bytes: Vec<u8>) -> Self {
        Piece(Held::Here(bytes))
    }
}

impl std::ops::Deref for Piece {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Held::Here(bytes) => bytes,
            Held::Elsewhere(holder) => holder,
            #[cfg(feature = "host")]
            Held::Plugin(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Piece({} bytes)", self.len())
    }
}

/// The first piece [`ReadStream::in_pieces`] reads: small, so the first byte waits
/// for little.
pub const FIRST_PIECE: u32 = 256 << 10;
/// The largest piece [`ReadStream::in_pieces`] reads; pieces double up to it.
pub const LARGEST_PIECE: u32 = 8 << 20;

/// The bytes of one ranged read, piece by piece. See the [module](self) for the
/// contract every stream keeps.
pub struct ReadStream<'a> {
    inner: Pin<Box<dyn Stream<Item = OriginResult<Piece>> + Send + 'a>>,
}

impl<'a> ReadStream<'a> {
    /// A stream of pieces from any `Stream` (a response body mapped to `Vec<u8>`,
    /// say). Empty pieces are skipped.
    pub fn new(stream: impl Stream<Item = OriginResult<Vec<u8>>> + Send + 'a) -> Self {
        use futures_util::StreamExt;
        Self::of_pieces(stream.map(|piece| piece.map(Piece::from)))
    }

    /// A stream of [`Piece`]s: for a stream made from another one's pieces
    /// ([`Self::next_piece`]) without copying them.
    pub fn of_pieces(stream: impl Stream<Item = OriginResult<Piece>> + Send + 'a) -> Self {
        ReadStream {
            inner: Box::pin(stream),
        }
    }

    /// The stream `open` makes once it has opened the file (checked its
    /// version, say), or its error as the only item.
    pub fn opened_by(open: impl Future<Output = OriginResult<ReadStream<'a>>> + Send + 'a) -> Self {
        use futures_util::StreamExt;
        Self::of_pieces(
            futures_util::stream::once(open).flat_map(|opened| match opened {
                Ok(stream) => stream.inner,
                Err(e) => futures_util::stream::iter([Err(e)]).boxed(),
            }),
        )
    }

    /// A stream of one piece: the answer of `read` (an empty answer is an empty
    /// stream).
    pub fn once(read: impl Future<Output = OriginResult<Vec<u8>>> + Send + 'a) -> Self {
        Self::new(futures_util::stream::once(read))
    }

    /// A stream that fails at once.
    pub fn failed(error: crate::OriginError) -> Self {
        Self::new(futures_util::stream::iter([Err(error)]))
    }

    /// `len` bytes from `offset` read as successive ranged reads of
    /// [`FIRST_PIECE`] bytes, doubling up to [`LARGEST_PIECE`]: the stream an
    /// origin gets from `read` alone. `read(offset, len)` must answer as
    /// [`crate::Origin::read`] does. Each read starts only when the stream is
    /// polled past the one before.
    pub fn in_pieces<F, Fut>(offset: u64, len: u64, mut read: F) -> Self
    where
        F: FnMut(u64, u32) -> Fut + Send + 'a,
        Fut: Future<Output = OriginResult<Vec<u8>>> + Send + 'a,
    {
        let end = offset.saturating_add(len);
        let state = (offset, FIRST_PIECE, false);
        Self::new(futures_util::stream::unfold(
            state,
            move |(at, piece, over)| {
                let next = (at < end && !over).then(|| {
                    let want = (end - at).min(piece as u64) as u32;
                    (want, read(at, want))
                });
                async move {
                    let (want, read) = next?;
                    match read.await {
                        // Short of what was asked: the end of the file.
                        Ok(bytes) => {
                            let short = bytes.len() < want as usize;
                            if bytes.is_empty() {
                                return None;
                            }
                            let at = at + bytes.len() as u64;
                            let piece = piece.saturating_mul(2).min(LARGEST_PIECE);
                            Some((Ok(bytes), (at, piece, short)))
                        }
                        Err(e) => Some((Err(e), (at, piece, true))),
                    }
                }
            },
        ))
    }

    /// `len` bytes of `path` from `offset` through `origin`'s
    /// [`crate::Origin::read_version`] of `expected`, in pieces
    /// ([`Self::in_pieces`]): what [`crate::Origin::read_stream`] does by default.
    pub fn through_read_version<O: crate::Origin + ?Sized>(
        origin: &'a O,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> Self {
        Self::in_pieces(offset, len, move |at, n| {
            origin.read_version(path, at, n, expected)
        })
    }

    /// The next piece, or `None` at the end.
    pub async fn next(&mut self) -> Option<OriginResult<Vec<u8>>> {
        futures_util::StreamExt::next(self).await
    }

    /// The next piece as it came, or `None` at the end: what a reader that only
    /// looks at the bytes calls, so a piece from a plugin is not copied.
    pub async fn next_piece(&mut self) -> Option<OriginResult<Piece>> {
        std::future::poll_fn(|cx| self.poll_piece(cx)).await
    }

    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<OriginResult<Piece>>> {
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(piece))) if piece.is_empty() => continue,
                other => return other,
            }
        }
    }

    /// Reads the whole stream into one buffer.
    pub async fn collect(mut self) -> OriginResult<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(piece) = self.next_piece().await {
            let piece = piece?;
            if all.is_empty() {
                all = piece.into_vec();
            } else {
                all.extend_from_slice(&piece);
            }
        }
        Ok(all)
    }
}

impl Stream for ReadStream<'_> {
    type Item = OriginResult<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_piece(cx)
            .map(|piece| piece.map(|piece| piece.map(Piece::into_vec)))
    }
}

impl std::fmt::Debug for ReadStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadStream")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OriginError;

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn read_of(data: &[u8], at: u64, n: u32) -> OriginResult<Vec<u8>> {
        let start = (at as usize).min(data.len());
        let end = (start + n as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    #[tokio::test]
    async fn pieces_double_and_stop_at_the_end_of_the_file() {
        let data = file(3 * LARGEST_PIECE as usize);
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        let mut stream = ReadStream::in_pieces(10, u64::MAX, |at, n| {
            let r = read_of(&data, at, n);
            async move { r }
        });
        while let Some(piece) = stream.next().await {
            let piece = piece.unwrap();
            sizes.push(piece.len());
            all.extend_from_slice(&piece);
        }
        assert_eq!(sizes[0], FIRST_PIECE as usize);
        assert_eq!(sizes[1], 2 * FIRST_PIECE as usize);
        assert!(sizes.iter().all(|&s| s <= LARGEST_PIECE as usize));
        assert!(all == data[10..], "the pieces are the file from 10 on");
    }

    #[tokio::test]
    async fn a_range_past_the_end_is_an_empty_stream() {
        let data = file(100);
        let stream = ReadStream::in_pieces(500, 10, |at, n| {
            let r = read_of(&data, at, n);
            async move { r }
        });
        assert_eq!(stream.collect().await.unwrap(), Vec::<u8>::new());
    }

    #[cfg(feature = "host")]
    #[tokio::test]
    async fn pieces_read_as_they_came_or_as_vecs_and_empty_ones_are_skipped() {
        let pieces = || {
            futures_util::stream::iter([
                Ok(Piece::from(vec![1, 2])),
                Ok(Piece::from_plugin(vec![3u8].into())),
                Ok(Piece::from(Vec::new())),
                Ok(Piece::from_plugin(vec![4u8, 5].into())),
            ])
        };
        let mut stream = ReadStream::of_pieces(pieces());
        let mut seen = Vec::new();
        while let Some(piece) = stream.next_piece().await {
            seen.push(piece.unwrap().to_vec());
        }
        assert_eq!(seen, [vec![1, 2], vec![3], vec![4, 5]]);
        let all = ReadStream::of_pieces(pieces()).collect().await.unwrap();
        assert_eq!(all, [1, 2, 3, 4, 5]);
        let mut stream = ReadStream::of_pieces(pieces());
        assert_eq!(stream.next().await.unwrap().unwrap(), [1, 2]);
        assert_eq!(stream.next().await.unwrap().unwrap(), [3]);
    }

    #[tokio::test]
    async fn an_error_ends_the_stream() {
        let mut calls = 0;
        let mut stream = ReadStream::in_pieces(0, 10 << 20, |_, n| {
            calls += 1;
            let r = if calls == 2 {
                Err(OriginError::changed("rewritten"))
            } else {
                Ok(vec![1; n as usize])
            };
            async move { r }
        });
        assert!(stream.next().await.unwrap().is_ok());
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Changed);
        assert!(stream.next().await.is_none(), "nothing after an error");
        drop(stream);
        assert_eq!(calls, 2);
    }
}
