//! The tree's bytes on disk, for [`super::tree_snapshot`]: fixed-width
//! little-endian records, so that reading them back is a pass with no
//! per-field decisions.
//!
//! Layout: the folder count and the origin count (`u32` each), the origins
//! (a `u32` length and the bytes each), then each folder in inode order: its
//! inode, parent and mtime (`u64`), its name (a span), its entry, replica and
//! text lengths (`u32`), the entries (41 bytes each), the entries' places in
//! inode order (`u32`), the replicas (21 bytes each) and its text. Decoding
//! checks lengths only; [`Tree::check`] checks the rest.

use super::tree::{Body, Entry, Folder, Span, StoredReplica, Tree};

const FOLDER: usize = 44;
const ENTRY: usize = 41;
const REPLICA: usize = 21;

fn put_span(out: &mut Vec<u8>, span: Span) {
    out.extend_from_slice(&span.start.to_le_bytes());
    out.extend_from_slice(&span.len.to_le_bytes());
}

/// The bytes of `tree`.
pub fn encode(tree: &Tree) -> Vec<u8> {
    let mut out = Vec::new();
    let folders: Vec<&Folder> = tree.all_folders().collect();
    out.extend_from_slice(&(folders.len() as u32).to_le_bytes());
    out.extend_from_slice(&(tree.origins.len() as u32).to_le_bytes());
    for origin in tree.origins.iter() {
        out.extend_from_slice(&(origin.len() as u32).to_le_bytes());
        out.extend_from_slice(origin.as_bytes());
    }
    for folder in folders {
        for n in [folder.ino, folder.parent, folder.mtime_ns] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        put_span(&mut out, folder.name);
        for n in [
            folder.entries.len(),
            folder.replicas.len(),
            folder.text.len(),
        ] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for entry in &folder.entries {
            out.extend_from_slice(&entry.ino.to_le_bytes());
            put_span(&mut out, entry.name);
            let (kind, size, path, replicas) = match entry.body {
                Body::Dir => (0u8, 0, Span::default(), Span::default()),
                Body::File {
                    size,
                    path,
                    replicas,
                } => (1, size, path, replicas),
            };
            out.push(kind);
            out.extend_from_slice(&size.to_le_bytes());
            put_span(&mut out, path);
            put_span(&mut out, replicas);
        }
        for at in &folder.by_ino {
            out.extend_from_slice(&at.to_le_bytes());
        }
        for replica in &folder.replicas {
            out.extend_from_slice(&replica.mtime_ns.to_le_bytes());
            out.extend_from_slice(&replica.origin.to_le_bytes());
            out.push(replica.version.is_some() as u8);
            put_span(&mut out, replica.version.unwrap_or_default());
        }
        out.extend_from_slice(folder.text.as_bytes());
    }
    out
}

/// Reads fixed-width fields from a record.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u64(&mut self) -> u64 {
        let (head, rest) = self.0.split_at(8);
        self.0 = rest;
        u64::from_le_bytes(head.try_into().expect("8 bytes"))
    }

    fn u32(&mut self) -> u32 {
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_le_bytes(head.try_into().expect("4 bytes"))
    }

    fn u8(&mut self) -> u8 {
        let (head, rest) = self.0.split_at(1);
        self.0 = rest;
        head[0]
    }

    fn span(&mut self) -> Span {
        Span {
            start: self.u32(),
            len: self.u32(),
        }
    }
}

/// The bytes still to read.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(head)
    }

    /// `count` records of `width` bytes, each read by `read`.
    fn records<T>(
        &mut self,
        count: usize,
        width: usize,
        read: impl Fn(Fields<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let bytes = self.take(count.checked_mul(width)?)?;
        // Sized once: collecting `Option`s grows the vector from nothing, and
        // a million entries in 105,000 folders were then a third of a load.
        let mut out = Vec::with_capacity(count);
        for record in bytes.chunks_exact(width) {
            out.push(read(Fields(record))?);
        }
        Some(out)
    }
}

/// The tree in `bytes`; `None` if they are not one [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Option<Tree> {
    let mut input = Input(bytes);
    let mut head = Fields(input.take(8)?);
    let (folders, origins) = (head.u32() as usize, head.u32() as usize);
    let origins = (0..origins)
        .map(|_| {
            let len = Fields(input.take(4)?).u32() as usize;
            String::from_utf8(input.take(len)?.to_vec()).ok()
        })
        .collect::<Option<Vec<String>>>()?;
    // Bounded by the bytes there are, not by a count read from them.
    let mut stored = Vec::with_capacity(folders.min(bytes.len() / FOLDER));
    for _ in 0..folders {
        let mut f = Fields(input.take(FOLDER)?);
        let (ino, parent, mtime_ns, name) = (f.u64(), f.u64(), f.u64(), f.span());
        let (entries, replicas, text) = (f.u32() as usize, f.u32() as usize, f.u32() as usize);
        let entries = input.records(entries, ENTRY, |mut f| {
            let (ino, name, kind) = (f.u64(), f.span(), f.u8());
            let (size, path, replicas) = (f.u64(), f.span(), f.span());
            let body = match kind {
                0 => Body::Dir,
                1 => Body::File {
                    size,
                    path,
                    replicas,
                },
                _ => return None,
            };
            Some(Entry { ino, name, body })
        })?;
        let by_ino = input.records(entries.len(), 4, |mut f| Some(f.u32()))?;
        let replicas = input.records(replicas, REPLICA, |mut f| {
            let (mtime_ns, origin, has_version, version) = (f.u64(), f.u32(), f.u8(), f.span());
            Some(StoredReplica {
                mtime_ns,
                origin,
                version: (has_version == 1).then_some(version),
            })
        })?;
        let text = std::str::from_utf8(input.take(text)?).ok()?;
        stored.push(Folder {
            ino,
            parent,
            mtime_ns,
            name,
            entries: entries.into(),
            by_ino: by_ino.into(),
            replicas: replicas.into(),
            text: text.into(),
        });
    }
    if !input.0.is_empty() {
        return None;
    }
    Tree::from_stored(stored, origins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::tree::{EntryDraft, FileDraft, FolderDraft, ROOT};

    fn sample() -> Tree {
        let root = Folder::lay_out(&FolderDraft {
            ino: ROOT,
            parent: ROOT,
            mtime_ns: 5,
            name: "",
            entries: vec![
                EntryDraft {
                    name: "A",
                    ino: 7,
                    file: None,
                },
                EntryDraft {
                    name: "é.flac",
                    ino: 9,
                    file: Some(FileDraft {
                        size: 1 << 40,
                        path: "a/x.f",
                        replicas: vec![(0, 3, Some("v1")), (1, 4, None)],
                    }),
                },
            ],
        });
        let a = Folder::lay_out(&FolderDraft {
            ino: 7,
            parent: ROOT,
            mtime_ns: u64::MAX,
            name: "A",
            entries: Vec::new(),
        });
        Tree::from_folders(vec![root, a], vec!["nas".into(), "bücket".into()], 0)
    }

    fn folders(tree: &Tree) -> String {
        format!(
            "{:?} {:?}",
            tree.all_folders().collect::<Vec<_>>(),
            tree.origins
        )
    }

    #[test]
    fn a_tree_comes_back_field_for_field() {
        let tree = sample();
        assert!(tree.check());
        let back = decode(&encode(&tree)).expect("decodes");
        assert!(back.check());
        assert_eq!(folders(&back), folders(&tree));
        assert_eq!(back.file_count(), 1);
    }

    #[test]
    fn cut_or_padded_bytes_are_no_tree() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_none(), "cut to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        let mut huge = bytes;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none(), "a count past the bytes");
    }
}
