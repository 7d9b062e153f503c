//! Plugin side of logging: a `tracing` subscriber that forwards every event to the
//! host's log sink.
//!
//! `tracing`'s global dispatcher is a static, and each cdylib has its own copy, so
//! without this a plugin's events would go nowhere. The subscriber is installed once
//! per library; the sink it forwards to is replaced when the library is initialised
//! again (a plugin reloaded after a logical unload).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Once, RwLock};

use abi_stable::std_types::RStr;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::ffi::FfiLogSinkBox;

static SINK: RwLock<Option<FfiLogSinkBox>> = RwLock::new(None);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);

/// Sends this plugin's events at or above `max_level` (1 error … 5 trace) to `sink`.
pub(crate) fn install(sink: FfiLogSinkBox, max_level: u8) {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    MAX_LEVEL.store(max_level, Ordering::Relaxed);
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(ForwardLayer);
        let _ = tracing::subscriber::set_global_default(subscriber);
        // A panic inside the plugin is logged through the host too.
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(target: "panic", "{info}");
        }));
    });
}

/// 1 for error … 5 for trace; 0 means off.
pub fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

struct ForwardLayer;

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change when the plugin is initialised again, so decide per event.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        level_number(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = MessageText::default();
        event.record(&mut text);
        let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = sink.as_ref() {
            let level = level_number(event.metadata().level());
            sink.log(
                level,
                RStr::from_str(event.metadata().target()),
                RStr::from_str(&text.0),
            );
        }
    }
}

/// The event's message followed by its other fields as `key=value`.
#[derive(Default)]
struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}
