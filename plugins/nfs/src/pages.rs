//! Listing cursors. READDIRPLUS pages are sized in bytes, not entries, so a
//! page may hold more entries than a `list` call may return; the rest of the
//! page is held here for the next call. A cursor is either a server position
//! (`p:cookie:verifier`: the next page starts there) or a place in a held page
//! (`h:id:index:cookie:verifier`, with the position the page was read from,
//! so that a page no longer held is read again from there and the index
//! skipped).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nfs_rs::DirectoryCookie;
use origin_api::{DirEntry, OriginError, OriginResult};

/// How many pages stay held.
const KEEP: usize = 16;

/// A page read from `from`, with where the next one starts (`None`: the
/// folder ends with it).
pub(crate) struct Page {
    pub(crate) from: DirectoryCookie,
    pub(crate) entries: Vec<DirEntry>,
    pub(crate) next: Option<DirectoryCookie>,
}

struct Held {
    id: u64,
    dir: String,
    page: Arc<Page>,
}

#[derive(Default)]
pub(crate) struct Pages {
    next_id: AtomicU64,
    held: Mutex<VecDeque<Held>>,
}

/// Where a `list` call starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// A page to read from the server.
    At(DirectoryCookie),
    /// Entry `index` of held page `id`, read from `from`.
    Held {
        id: u64,
        index: usize,
        from: DirectoryCookie,
    },
}

fn position_text(p: &DirectoryCookie) -> String {
    let verifier: String = p.verifier.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{verifier}", p.cookie)
}

fn parse_position(cookie: &str, verifier: &str) -> Option<DirectoryCookie> {
    if verifier.len() != 16 {
        return None;
    }
    let mut bytes = [0u8; 8];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(verifier.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(DirectoryCookie {
        cookie: cookie.parse().ok()?,
        verifier: bytes,
    })
}

impl Cursor {
    pub(crate) fn parse(text: &str) -> OriginResult<Cursor> {
        let parts: Vec<&str> = text.split(':').collect();
        let parsed = match parts.as_slice() {
            ["p", cookie, verifier] => parse_position(cookie, verifier).map(Cursor::At),
            ["h", id, index, cookie, verifier] => (|| {
                Some(Cursor::Held {
                    id: id.parse().ok()?,
                    index: index.parse().ok()?,
                    from: parse_position(cookie, verifier)?,
                })
            })(),
            _ => None,
        };
        parsed.ok_or_else(|| OriginError::other(format!("invalid listing cursor {text:?}")))
    }

    pub(crate) fn text(&self) -> String {
        match self {
            Cursor::At(p) => format!("p:{}", position_text(p)),
            Cursor::Held { id, index, from } => format!("h:{id}:{index}:{}", position_text(from)),
        }
    }
}

impl Pages {
    /// Held page `id` of `dir`, if still held.
    pub(crate) fn get(&self, id: u64, dir: &str) -> Option<Arc<Page>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.iter()
            .find(|h| h.id == id && h.dir == dir)
            .map(|h| h.page.clone())
    }

    /// Holds `page` of `dir` (evicting the oldest); its id.
    pub(crate) fn hold(&self, dir: &str, page: Arc<Page>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() == KEEP {
            held.pop_front();
        }
        held.push_back(Held {
            id,
            dir: dir.to_owned(),
            page,
        });
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_survive_their_text_form() {
        let from = DirectoryCookie {
            cookie: 42,
            verifier: [1, 2, 3, 4, 5, 6, 7, 255],
        };
        for cursor in [
            Cursor::At(from),
            Cursor::Held {
                id: 7,
                index: 3,
                from,
            },
        ] {
            assert_eq!(Cursor::parse(&cursor.text()).unwrap(), cursor);
        }
        assert!(Cursor::parse("p:1:zz").is_err());
    }
}
