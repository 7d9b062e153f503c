//! An origin that lives in a plugin library, called through the FFI traits.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RString};
use async_trait::async_trait;

use crate::ffi::{
    FfiChangeEvent, FfiEventSink, FfiEventSink_TO, FfiOriginBox, FfiPluginBox, FfiReadStreamBox,
};
use crate::read_stream::Piece;
use crate::{
    EventSink, Health, ListPage, Metadata, Origin, OriginError, OriginResult, ReadStream,
    WatchHandle,
};

/// How far a plugin may poll a stream ahead of the host: enough to keep a
/// backend busy while the host chunks the previous piece, and the plugin's
/// memory per stream (plus one piece of its own).
pub const STREAM_CREDIT: u32 = 4 << 20;

/// An origin opened by a plugin. Keeps the plugin object alive as long as it lives.
pub(crate) struct PluginOrigin {
    pub(crate) ffi: FfiOriginBox,
    pub(crate) _plugin: Arc<FfiPluginBox>,
}

#[async_trait]
impl Origin for PluginOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        let meta = self.ffi.stat(path.into()).await.into_result()?;
        Ok(meta.into())
    }

    async fn list(&self, dir: &str, cursor: Option<&str>, limit: u32) -> OriginResult<ListPage> {
        let cursor: ROption<RString> = cursor.map(RString::from).into();
        let page = self
            .ffi
            .list(dir.into(), cursor, limit)
            .await
            .into_result()?;
        Ok(page.into())
    }

    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        let bytes = self
            .ffi
            .read(path.into(), offset, len)
            .await
            .into_result()?;
        Ok(bytes.into_vec())
    }

    async fn read_version(
        &self,
        path: &str,
        offset: u64,
        len: u32,
        expected: Option<&str>,
    ) -> OriginResult<Vec<u8>> {
        let expected: ROption<RString> = expected.map(RString::from).into();
        let bytes = self
            .ffi
            .read_version(path.into(), offset, len, expected)
            .await
            .into_result()?;
        Ok(bytes.into_vec())
    }

    fn read_stream<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        len: u64,
        expected: Option<&'a str>,
    ) -> ReadStream<'a> {
        let ffi_expected: ROption<RString> = expected.map(RString::from).into();
        match self
            .ffi
            .read_stream(path.into(), offset, len, ffi_expected, STREAM_CREDIT)
        {
            ROption::RSome(stream) => pieces_of(stream),
            // A plugin built before 1.2: stream through its `read_version`.
            ROption::RNone => ReadStream::through_read_version(self, path, offset, len, expected),
        }
    }

    async fn health(&self) -> Health {
        match self.ffi.health().await.into_result() {
            Ok(health) => health.into(),
            Err(err) => Health::unhealthy(crate::OriginError::from(err).to_string()),
        }
    }

    fn watch_stats(&self) -> Option<crate::PollStats> {
        self.ffi.watch_stats().into_option().map(Into::into)
    }

    async fn watch(&self, sink: EventSink) -> OriginResult<WatchHandle> {
        let ffi_sink = FfiEventSink_TO::from_value(HostEventSink(sink), TD_Opaque);
        let handle = self.ffi.watch(ffi_sink).await.into_result()?;
        Ok(WatchHandle::on_stop(move || {
            handle.stop();
            drop(handle);
        }))
    }
}

/// Carries plugin events into the host's sink (which enforces "nothing after close").
struct HostEventSink(EventSink);

impl FfiEventSink for HostEventSink {
    fn send(&self, event: FfiChangeEvent) {
        self.0.send(event.into());
    }
}

/// The plugin's stream as a [`ReadStream`]: one `next` call a piece, ending after
/// the first error.
fn pieces_of(stream: FfiReadStreamBox) -> ReadStream<'static> {
    ReadStream::of_pieces(futures_util::stream::unfold(
        Some(stream),
        |stream| async move {
            let stream = stream?;
            match stream.next().await.into_result() {
                // Kept in the plugin's allocation: read, not copied.
                Ok(ROption::RSome(piece)) => Some((Ok(Piece::from_plugin(piece)), Some(stream))),
                Ok(ROption::RNone) => None,
                Err(e) => Some((Err(OriginError::from(e)), None)),
            }
        },
    ))
}
