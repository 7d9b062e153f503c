//! Listing cursors. SMB lists a folder through an open handle, one
//! QUERY_DIRECTORY answer (a server-sized batch) at a time, with no position
//! a later request could start from. So a listing in progress is held here,
//! its handle open, and a cursor names it and how many entries it has handed
//! out (`id:handed`). A listing no longer held (evicted, or its connection
//! lost) is opened again and that many entries skipped: folders list in a
//! stable order while they do not change.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use origin_api::{OriginError, OriginResult};

/// How many listings stay held.
const KEEP: usize = 16;

struct Held<T> {
    id: u64,
    dir: String,
    reading: Arc<tokio::sync::Mutex<T>>,
}

/// Listings in progress (`T`: one listing's state), the latest [`KEEP`].
pub(crate) struct Listings<T> {
    next_id: AtomicU64,
    held: Mutex<VecDeque<Held<T>>>,
}

impl<T> Default for Listings<T> {
    fn default() -> Self {
        Listings {
            next_id: AtomicU64::new(0),
            held: Mutex::new(VecDeque::new()),
        }
    }
}

/// Where a `list` call starts: `handed` entries into listing `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) id: u64,
    pub(crate) handed: usize,
}

impl Cursor {
    pub(crate) fn parse(text: &str) -> OriginResult<Cursor> {
        let parsed = text.split_once(':').and_then(|(id, handed)| {
            Some(Cursor {
                id: id.parse().ok()?,
                handed: handed.parse().ok()?,
            })
        });
        parsed.ok_or_else(|| OriginError::other(format!("not a listing cursor: {text}")))
    }

    pub(crate) fn text(&self) -> String {
        format!("{}:{}", self.id, self.handed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Listings<T> {
    /// Holds `reading` of `dir`; its id.
    pub(crate) fn hold(&self, dir: &str, reading: T) -> (u64, Arc<tokio::sync::Mutex<T>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let reading = Arc::new(tokio::sync::Mutex::new(reading));
        let mut held = lock(&self.held);
        if held.len() >= KEEP {
            held.pop_front();
        }
        held.push_back(Held {
            id,
            dir: dir.to_owned(),
            reading: reading.clone(),
        });
        (id, reading)
    }

    /// Listing `id` of `dir`, if still held.
    pub(crate) fn get(&self, id: u64, dir: &str) -> Option<Arc<tokio::sync::Mutex<T>>> {
        lock(&self.held)
            .iter()
            .find(|h| h.id == id && h.dir == dir)
            .map(|h| h.reading.clone())
    }

    /// Lets listing `id` go (it has ended).
    pub(crate) fn release(&self, id: u64) {
        lock(&self.held).retain(|h| h.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nonsense_is_refused() {
        let c = Cursor {
            id: 7,
            handed: 1000,
        };
        assert_eq!(Cursor::parse(&c.text()).unwrap(), c);
        for bad in ["", "7", "x:1", "7:y", "7:1:2"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn at_most_keep_listings_are_held() {
        let listings = Listings::<()>::default();
        let ids: Vec<u64> = (0..KEEP + 2).map(|_| listings.hold("a", ()).0).collect();
        assert!(listings.get(ids[0], "a").is_none());
        assert!(listings.get(ids[KEEP + 1], "a").is_some());
        assert!(listings.get(ids[KEEP + 1], "b").is_none());
        listings.release(ids[KEEP + 1]);
        assert!(listings.get(ids[KEEP + 1], "a").is_none());
    }
}
