//! A record as the tree needs it: where the layout shows the file, and what
//! its replica is, without its tags.
//!
//! A whole build holds one of these for every file of the library at once, so
//! its size is the build's memory per track. An index record ([`FileRecord`])
//! carries its tags (four strings and numbers), its problem and its origin as
//! owned strings: about 880 bytes a track in memory (heaptrack at 100,000
//! tracks), most of it small allocations. A `Placed` renders the tags once, as
//! it is made, into the one string the tree needs (the path's segments joined
//! by `/`, which no segment contains: [`super::layout::safe_name`]), shares its
//! origin's name, and keeps the rest inline: 64 bytes and one allocation (the
//! source path, the rendered path and the version in one string), about 170
//! bytes a track.
//!
//! The whole build streams the index into these, one record decoded at a time
//! ([`super::index::for_each`]), so the records it decodes are never all in
//! memory together.

use std::sync::Arc;

use super::index::{FileRecord, FileRole};
use super::layout::Layout;
use super::tree_build::file_name;

/// One file on one origin, placed by the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub origin: Arc<str>,
    /// The path on its origin, then where the layout shows it, then its
    /// version: one allocation, not three.
    text: Box<str>,
    path_len: u32,
    shown_len: u32,
    has_version: bool,
    pub size: u64,
    pub mtime_ns: u64,
    pub role: FileRole,
    /// Its tags were read at least once ([`FileRecord::tags_known`]).
    pub tags_known: bool,
    /// Its tags were read without a problem.
    pub clean: bool,
}

impl Placed {
    /// `record` placed by `layout`, its origin's name shared as `origin`.
    pub fn new(record: &FileRecord, layout: &Layout, origin: Arc<str>) -> Placed {
        let shown = match record.role {
            FileRole::Audio => layout
                .render(&record.tags, file_name(&record.path))
                .join("/"),
            FileRole::Cover => String::new(),
        };
        let version = record.version.as_deref();
        let mut text =
            String::with_capacity(record.path.len() + shown.len() + version.map_or(0, str::len));
        text.push_str(&record.path);
        text.push_str(&shown);
        text.push_str(version.unwrap_or(""));
        Placed {
            origin,
            text: text.into_boxed_str(),
            path_len: record.path.len() as u32,
            shown_len: shown.len() as u32,
            has_version: version.is_some(),
            size: record.size,
            mtime_ns: record.mtime_ns,
            role: record.role,
            tags_known: record.tags_known(),
            clean: record.problem.is_none(),
        }
    }

    /// [`Placed::new`] with an origin name of its own: for a few records.
    pub fn of(record: &FileRecord, layout: &Layout) -> Placed {
        Placed::new(record, layout, record.origin.as_str().into())
    }

    /// The path on its origin.
    pub fn path(&self) -> &str {
        &self.text[..self.path_len as usize]
    }

    /// Where the layout shows an audio file: the segments of its path in the
    /// tree, joined by `/` (before any ` (n)` suffix); empty for a cover.
    pub fn shown(&self) -> &str {
        let start = self.path_len as usize;
        &self.text[start..start + self.shown_len as usize]
    }

    /// The origin's version token, if it gives one.
    pub fn version(&self) -> Option<&str> {
        let start = (self.path_len + self.shown_len) as usize;
        self.has_version.then(|| &self.text[start..])
    }

    /// The segments of the path the layout shows it at.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.shown().split('/')
    }
}

/// Origin names, each allocated once however many records share it.
#[derive(Default)]
pub struct Origins(Vec<Arc<str>>);

impl Origins {
    /// The shared name `origin`.
    pub fn name(&mut self, origin: &str) -> Arc<str> {
        match self.0.iter().find(|known| &***known == origin) {
            Some(known) => known.clone(),
            None => {
                let name: Arc<str> = origin.into();
                self.0.push(name.clone());
                name
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placed_track_keeps_what_the_tree_needs_and_shares_its_origin() {
        let record = FileRecord {
            version: Some("v1".into()),
            mtime_ns: 7,
            ..FileRecord::tagged("nas", "in/x.flac", 10, ("A/C", "B", "T"))
        };
        let mut origins = Origins::default();
        let a = Placed::new(&record, &Layout::default(), origins.name("nas"));
        let b = Placed::new(&record, &Layout::default(), origins.name("nas"));
        assert!(Arc::ptr_eq(&a.origin, &b.origin));
        assert_eq!(a.segments().collect::<Vec<_>>(), ["A_C", "B", "T.flac"]);
        assert_eq!(
            (a.path(), a.version(), a.size, a.mtime_ns),
            ("in/x.flac", Some("v1"), 10, 7)
        );
        assert!(a.tags_known && a.clean);
        assert!(std::mem::size_of::<Placed>() <= 64);
        let cover = FileRecord {
            role: FileRole::Cover,
            ..FileRecord::tagged("nas", "in/cover.jpg", 10, ("A", "B", "T"))
        };
        let cover = Placed::of(&cover, &Layout::default());
        assert_eq!(
            (cover.path(), cover.shown(), cover.version()),
            ("in/cover.jpg", "", None)
        );
    }
}
