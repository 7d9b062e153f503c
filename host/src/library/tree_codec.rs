//! The tree's bytes on disk, for [`super::tree_snapshot`]: its vectors as
//! fixed-width little-endian records, one after another, so that reading them
//! back is a pass over each vector with no per-field decisions, and the
//! text, last, is taken from the bytes read without a copy. At 1,000,000
//! tracks a generic format (postcard, varints through serde) decoded the
//! tree in 243–277 ms; this parses it in 106–201 ms, on this noisy VM, where
//! most of either is memory touched for the first time.
//!
//! Layout: five `u32` counts (nodes, children, files, replicas, origins) and
//! the text's length (`u64`), then the nodes (37 bytes each), the children
//! (`u32`), the files (24 bytes), the replicas (21 bytes), the origins (a
//! `u32` length and the bytes each) and the text. Decoding checks lengths
//! only; [`Tree::check`] checks the rest.

use super::tree::{Body, Span, StoredFile, StoredNode, StoredReplica, Tree};

const NODE: usize = 37;
const FILE: usize = 24;
const REPLICA: usize = 21;

fn put_span(out: &mut Vec<u8>, span: Span) {
    out.extend_from_slice(&span.start.to_le_bytes());
    out.extend_from_slice(&span.len.to_le_bytes());
}

/// The bytes of `tree`.
pub fn encode(tree: &Tree) -> Vec<u8> {
    let size = 28
        + tree.nodes.len() * NODE
        + tree.children.len() * 4
        + tree.files.len() * FILE
        + tree.replicas.len() * REPLICA
        + tree.origins.iter().map(|o| 4 + o.len()).sum::<usize>()
        + tree.text.len();
    let mut out = Vec::with_capacity(size);
    for count in [
        tree.nodes.len(),
        tree.children.len(),
        tree.files.len(),
        tree.replicas.len(),
        tree.origins.len(),
    ] {
        out.extend_from_slice(&(count as u32).to_le_bytes());
    }
    out.extend_from_slice(&(tree.text.len() as u64).to_le_bytes());
    for node in &tree.nodes {
        out.extend_from_slice(&node.ino.to_le_bytes());
        out.extend_from_slice(&node.mtime_ns.to_le_bytes());
        out.extend_from_slice(&node.parent.to_le_bytes());
        put_span(&mut out, node.name);
        match node.body {
            Body::Dir(children) => {
                out.push(0);
                put_span(&mut out, children);
            }
            Body::File(file) => {
                out.push(1);
                out.extend_from_slice(&file.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
            }
        }
    }
    for child in &tree.children {
        out.extend_from_slice(&child.to_le_bytes());
    }
    for file in &tree.files {
        out.extend_from_slice(&file.size.to_le_bytes());
        put_span(&mut out, file.path);
        put_span(&mut out, file.replicas);
    }
    for replica in &tree.replicas {
        out.extend_from_slice(&replica.mtime_ns.to_le_bytes());
        out.extend_from_slice(&replica.origin.to_le_bytes());
        out.push(u8::from(replica.version.is_some()));
        put_span(&mut out, replica.version.unwrap_or_default());
    }
    for origin in &tree.origins {
        out.extend_from_slice(&(origin.len() as u32).to_le_bytes());
        out.extend_from_slice(origin.as_bytes());
    }
    out.extend_from_slice(tree.text.as_bytes());
    debug_assert_eq!(out.len(), size);
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
        bytes.chunks_exact(width).map(|r| read(Fields(r))).collect()
    }
}

/// A tree read from bytes, but for its text: where that is in them.
pub struct Parsed {
    tree: Tree,
    text: std::ops::Range<usize>,
}

impl Parsed {
    /// The tree, its text taken from `bytes` (those [`parse`] read, at
    /// `offset` in `bytes`) without copying it: at 1,000,000 tracks a copy
    /// was 110 MB of memory touched for the first time.
    pub fn finish(mut self, mut bytes: Vec<u8>, offset: usize) -> Option<Tree> {
        bytes.truncate(offset + self.text.end);
        bytes.drain(..offset + self.text.start);
        // The rest of the file would stay held as capacity (90 MB at 1,000,000
        // tracks); giving it back shrinks a large buffer in place.
        bytes.shrink_to_fit();
        self.tree.text = String::from_utf8(bytes).ok()?;
        Some(self.tree)
    }
}

/// The tree in `bytes`; `None` if they are not one [`encode`] wrote.
#[cfg(test)]
pub fn decode(bytes: &[u8]) -> Option<Tree> {
    parse(bytes)?.finish(bytes.to_vec(), 0)
}

/// Reads the tree in `bytes` but for its text; `None` if they are not one
/// [`encode`] wrote.
pub fn parse(bytes: &[u8]) -> Option<Parsed> {
    let mut input = Input(bytes);
    let mut head = Fields(input.take(28)?);
    let counts = [(); 5].map(|_| head.u32() as usize);
    let text_len = usize::try_from(head.u64()).ok()?;
    let [nodes, children, files, replicas, origins] = counts;
    let nodes = input.records(nodes, NODE, |mut f| {
        let (ino, mtime_ns, parent, name) = (f.u64(), f.u64(), f.u32(), f.span());
        let body = match f.u8() {
            0 => Body::Dir(f.span()),
            1 => Body::File(f.u32()),
            _ => return None,
        };
        Some(StoredNode {
            ino,
            mtime_ns,
            parent,
            name,
            body,
        })
    })?;
    let children = input.records(children, 4, |mut f| Some(f.u32()))?;
    let files = input.records(files, FILE, |mut f| {
        Some(StoredFile {
            size: f.u64(),
            path: f.span(),
            replicas: f.span(),
        })
    })?;
    let replicas = input.records(replicas, REPLICA, |mut f| {
        let (mtime_ns, origin, has_version, version) = (f.u64(), f.u32(), f.u8(), f.span());
        Some(StoredReplica {
            mtime_ns,
            origin,
            version: (has_version == 1).then_some(version),
        })
    })?;
    let origins = (0..origins)
        .map(|_| {
            let len = Fields(input.take(4)?).u32() as usize;
            String::from_utf8(input.take(len)?.to_vec()).ok()
        })
        .collect::<Option<Vec<String>>>()?;
    let start = bytes.len() - input.0.len();
    input.take(text_len)?;
    input.0.is_empty().then_some(Parsed {
        tree: Tree {
            nodes,
            children,
            files,
            replicas,
            origins,
            text: String::new(),
        },
        text: start..start + text_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let name = |start, len| Span { start, len };
        Tree {
            nodes: vec![
                StoredNode {
                    ino: 1,
                    mtime_ns: 5,
                    parent: 0,
                    name: name(0, 0),
                    body: Body::Dir(name(0, 1)),
                },
                StoredNode {
                    ino: 9,
                    mtime_ns: u64::MAX,
                    parent: 0,
                    name: name(0, 6),
                    body: Body::File(0),
                },
            ],
            children: vec![1],
            files: vec![StoredFile {
                size: 1 << 40,
                path: name(6, 5),
                replicas: name(0, 2),
            }],
            replicas: vec![
                StoredReplica {
                    mtime_ns: 3,
                    origin: 0,
                    version: Some(name(11, 2)),
                },
                StoredReplica {
                    mtime_ns: 4,
                    origin: 1,
                    version: None,
                },
            ],
            origins: vec!["nas".into(), "bücket".into()],
            text: "é.flaca/x.fv1".into(),
        }
    }

    #[test]
    fn a_tree_comes_back_field_for_field() {
        let tree = sample();
        let back = decode(&encode(&tree)).expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{tree:?}"));
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
