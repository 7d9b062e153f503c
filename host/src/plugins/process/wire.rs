//! The protocol between the host and a plugin process: frames on a Unix stream
//! socket.
//!
//! A frame is two little-endian `u32`s (the header's length, the payload's
//! length), a header (one [`ToChild`] or [`ToHost`], postcard-encoded) and a
//! payload of raw bytes. Only the bytes of a read travel as payload: they are
//! written straight from the plugin's buffer and read straight into the one the
//! host keeps, never encoded.
//!
//! Every call carries a number chosen by the host; answers, pieces and events
//! name it. The host and the child are one executable, so the protocol has no
//! versions of its own: a child is always started from the host's own image.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use origin_api::{
    ChangeEvent, ChangeKind, DirEntry, EntryKind, ErrorKind, Health, HealthStatus, ListPage,
    Metadata, OriginError, PluginClass, PluginInfo, PollStats,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest header either side accepts (a page of a listing is the largest).
const MAX_HEADER: u32 = 64 << 20;
/// The largest payload either side accepts (a piece of a read).
const MAX_PAYLOAD: u32 = 256 << 20;

/// What the host asks of the child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// Opens an origin; answered [`ToHost::Opened`] with its number.
    Open {
        call: u64,
        origin_id: String,
        settings: String,
    },
    /// Drops an origin.
    Close {
        origin: u64,
    },
    Stat {
        call: u64,
        origin: u64,
        path: String,
    },
    List {
        call: u64,
        origin: u64,
        dir: String,
        cursor: Option<String>,
        limit: u32,
    },
    Read {
        call: u64,
        origin: u64,
        path: String,
        offset: u64,
        len: u32,
        expected: Option<String>,
    },
    /// A streaming read: answered by [`ToHost::Piece`]s, then [`ToHost::End`]
    /// or [`ToHost::Failed`]. The child sends at most `credit` bytes the host has
    /// not yet given back with [`ToChild::Credit`].
    Stream {
        call: u64,
        origin: u64,
        path: String,
        offset: u64,
        len: u64,
        expected: Option<String>,
        credit: u32,
    },
    /// The host consumed `bytes` of a stream's pieces.
    Credit {
        call: u64,
        bytes: u32,
    },
    /// The host is done with a slot of the shared pool (see `super::pieces`).
    Release {
        slot: u32,
    },
    Health {
        call: u64,
        origin: u64,
    },
    /// Starts a watch: answered [`ToHost::Watching`], then [`ToHost::Event`]s
    /// until the host cancels it.
    Watch {
        call: u64,
        origin: u64,
    },
    /// Drops a call, a stream or a watch. Nothing more is sent for it.
    Cancel {
        call: u64,
    },
    /// Answered at once by [`ToHost::Pong`], from the child's own loop.
    Ping {
        seq: u64,
    },
}

/// What the child tells the host.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToHost {
    /// The plugin loaded; the first frame of a healthy child.
    Ready {
        info: WireInfo,
        api_version: String,
        rustc_version: String,
    },
    /// The plugin did not load; the child exits after this.
    LoadFailed {
        reason: String,
    },
    Opened {
        call: u64,
        origin: u64,
    },
    Failed {
        call: u64,
        error: WireError,
    },
    Metadata {
        call: u64,
        meta: WireMeta,
    },
    Page {
        call: u64,
        entries: Vec<(String, WireMeta)>,
        next_cursor: Option<String>,
    },
    /// The bytes of a [`ToChild::Read`], as the payload.
    Bytes {
        call: u64,
    },
    /// One piece of a stream, as the payload.
    Piece {
        call: u64,
    },
    /// One piece of a stream, in a slot of the shared pool.
    Slot {
        call: u64,
        slot: u32,
        len: u32,
    },
    End {
        call: u64,
    },
    Health {
        call: u64,
        status: u8,
        reason: String,
    },
    Watching {
        call: u64,
    },
    Event {
        call: u64,
        kind: u8,
        path: String,
    },
    /// An origin's `watch_stats`, sent when they change.
    WatchStats {
        origin: u64,
        stats: [u64; 8],
    },
    Pong {
        seq: u64,
    },
    /// A `tracing` event of the plugin (or of the child itself).
    Log {
        level: u8,
        module: String,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireInfo {
    pub kind: String,
    pub version: String,
    pub remote: bool,
    pub default_unhealthy_threshold: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub kind: u8,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireMeta {
    pub kind: u8,
    pub size: u64,
    /// Nanoseconds from the epoch (negative before it).
    pub modified_nanos: i128,
    pub version: Option<String>,
}

// ---- conversions -------------------------------------------------------------

const KINDS: [ErrorKind; 7] = [
    ErrorKind::NotFound,
    ErrorKind::PermissionDenied,
    ErrorKind::Timeout,
    ErrorKind::Unavailable,
    ErrorKind::InvalidConfig,
    ErrorKind::Other,
    ErrorKind::Changed,
];

impl From<&OriginError> for WireError {
    fn from(e: &OriginError) -> Self {
        WireError {
            kind: KINDS.iter().position(|k| *k == e.kind()).unwrap_or(5) as u8,
            message: e.message().to_owned(),
        }
    }
}

impl From<WireError> for OriginError {
    fn from(e: WireError) -> Self {
        let kind = KINDS
            .get(e.kind as usize)
            .copied()
            .unwrap_or(ErrorKind::Other);
        OriginError::new(kind, e.message)
    }
}

impl From<&Metadata> for WireMeta {
    fn from(m: &Metadata) -> Self {
        let modified_nanos = match m.modified.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        };
        WireMeta {
            kind: match m.kind {
                EntryKind::File => 0,
                EntryKind::Directory => 1,
                EntryKind::Other => 2,
            },
            size: m.size,
            modified_nanos,
            version: m.version.clone(),
        }
    }
}

impl From<WireMeta> for Metadata {
    fn from(m: WireMeta) -> Self {
        let at = |nanos: u128| {
            Duration::new(
                (nanos / 1_000_000_000) as u64,
                (nanos % 1_000_000_000) as u32,
            )
        };
        let modified: SystemTime = if m.modified_nanos >= 0 {
            UNIX_EPOCH + at(m.modified_nanos as u128)
        } else {
            UNIX_EPOCH - at(m.modified_nanos.unsigned_abs())
        };
        Metadata {
            kind: match m.kind {
                0 => EntryKind::File,
                1 => EntryKind::Directory,
                _ => EntryKind::Other,
            },
            size: m.size,
            modified,
            version: m.version,
        }
    }
}

pub fn page_to_wire(call: u64, page: &ListPage) -> ToHost {
    ToHost::Page {
        call,
        entries: page
            .entries
            .iter()
            .map(|e| (e.name.clone(), WireMeta::from(&e.metadata)))
            .collect(),
        next_cursor: page.next_cursor.clone(),
    }
}

pub fn page_from_wire(entries: Vec<(String, WireMeta)>, next_cursor: Option<String>) -> ListPage {
    ListPage {
        entries: entries
            .into_iter()
            .map(|(name, meta)| DirEntry {
                name,
                metadata: meta.into(),
            })
            .collect(),
        next_cursor,
    }
}

impl From<&PluginInfo> for WireInfo {
    fn from(info: &PluginInfo) -> Self {
        WireInfo {
            kind: info.kind.clone(),
            version: info.version.clone(),
            remote: info.class == PluginClass::Remote,
            default_unhealthy_threshold: info.default_unhealthy_threshold,
        }
    }
}

impl From<WireInfo> for PluginInfo {
    fn from(info: WireInfo) -> Self {
        let class = if info.remote {
            PluginClass::Remote
        } else {
            PluginClass::Local
        };
        PluginInfo::new(info.kind, info.version, class)
            .with_unhealthy_threshold(info.default_unhealthy_threshold)
    }
}

pub fn health_status_to_wire(status: HealthStatus) -> u8 {
    match status {
        HealthStatus::Healthy => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Unhealthy => 2,
    }
}

pub fn health_from_wire(status: u8, reason: String) -> Health {
    Health {
        status: match status {
            0 => HealthStatus::Healthy,
            2 => HealthStatus::Unhealthy,
            _ => HealthStatus::Degraded,
        },
        reason,
    }
}

pub fn change_kind_to_wire(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Created => 0,
        ChangeKind::Modified => 1,
        ChangeKind::Removed => 2,
    }
}

pub fn change_from_wire(kind: u8, path: String) -> ChangeEvent {
    let kind = match kind {
        0 => ChangeKind::Created,
        2 => ChangeKind::Removed,
        _ => ChangeKind::Modified,
    };
    ChangeEvent::new(kind, path)
}

pub fn stats_to_wire(s: &PollStats) -> [u64; 8] {
    [
        s.polls,
        s.failed,
        s.requests,
        s.bytes,
        s.last_requests,
        s.last_bytes,
        s.last_files,
        s.last_millis,
    ]
}

pub fn stats_from_wire(s: [u64; 8]) -> PollStats {
    PollStats {
        polls: s[0],
        failed: s[1],
        requests: s[2],
        bytes: s[3],
        last_requests: s[4],
        last_bytes: s[5],
        last_files: s[6],
        last_millis: s[7],
    }
}

/// A `tracing` level as the two processes exchange it (1 error … 5 trace).
pub fn level_number(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 1,
        tracing::Level::WARN => 2,
        tracing::Level::INFO => 3,
        tracing::Level::DEBUG => 4,
        tracing::Level::TRACE => 5,
    }
}

/// A level filter as a number (0 off, else as [`level_number`]).
pub fn filter_number(filter: tracing::level_filters::LevelFilter) -> u8 {
    filter.into_level().as_ref().map_or(0, level_number)
}

/// The level filter a number names.
pub fn filter_of(number: u8) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match number {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

// ---- frames ------------------------------------------------------------------

/// Encodes `header`'s frame prefix and header; the payload (`payload_len`
/// bytes) is written after it by the caller.
pub fn encode<T: Serialize>(header: &T, payload_len: usize) -> Vec<u8> {
    let body = postcard::to_stdvec(header).expect("wire types always encode");
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(payload_len as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    out: &mut W,
    header: &T,
    payload: &[u8],
) -> io::Result<()> {
    out.write_all(&encode(header, payload.len())).await?;
    if !payload.is_empty() {
        out.write_all(payload).await?;
    }
    Ok(())
}

/// Reads one frame; `None` at a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    input: &mut R,
) -> io::Result<Option<(T, Vec<u8>)>> {
    let mut lengths = [0u8; 8];
    match input.read_exact(&mut lengths).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let header_len = u32::from_le_bytes(lengths[..4].try_into().expect("4 bytes"));
    let payload_len = u32::from_le_bytes(lengths[4..].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER || payload_len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame too large ({header_len} + {payload_len} bytes)"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    input.read_exact(&mut header).await?;
    let header = postcard::from_bytes(&header)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: {e}")))?;
    let mut payload = vec![0u8; payload_len as usize];
    input.read_exact(&mut payload).await?;
    Ok(Some((header, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_before_and_after_the_epoch() {
        for t in [
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
            UNIX_EPOCH,
        ] {
            let mut m = Metadata::file(7, t);
            m.version = Some("v1".into());
            let back: Metadata = WireMeta::from(&m).into();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn level_filters_round_trip_as_numbers() {
        use tracing::level_filters::LevelFilter;
        for filter in [
            LevelFilter::OFF,
            LevelFilter::ERROR,
            LevelFilter::WARN,
            LevelFilter::INFO,
            LevelFilter::DEBUG,
            LevelFilter::TRACE,
        ] {
            assert_eq!(filter_of(filter_number(filter)), filter);
        }
    }

    #[test]
    fn every_error_kind_round_trips() {
        for kind in KINDS {
            let e = OriginError::new(kind, "why");
            let back: OriginError = WireError::from(&e).into();
            assert_eq!((back.kind(), back.message()), (kind, "why"));
        }
    }

    #[tokio::test]
    async fn frames_round_trip_with_their_payload() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &ToHost::Piece { call: 9 }, b"abc")
            .await
            .unwrap();
        write_frame(&mut a, &ToHost::End { call: 9 }, &[])
            .await
            .unwrap();
        drop(a);
        let (first, payload): (ToHost, _) = read_frame(&mut b).await.unwrap().unwrap();
        assert!(matches!(first, ToHost::Piece { call: 9 }));
        assert_eq!(payload, b"abc");
        let (second, payload): (ToHost, _) = read_frame(&mut b).await.unwrap().unwrap();
        assert!(matches!(second, ToHost::End { call: 9 }));
        assert!(payload.is_empty());
        assert!(read_frame::<_, ToHost>(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversized_frame_is_an_error_not_an_allocation() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        a.write_all(&0u32.to_le_bytes()).await.unwrap();
        let err = read_frame::<_, ToHost>(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
