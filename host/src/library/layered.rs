//! A map from inode numbers to values that a change copies only in part: a
//! sorted vector (the base, from the last whole build, shared by every
//! version of the tree since) under a persistent B-tree of what changed since
//! (`imbl::OrdMap`: a change copies the path to its key, a clone is a count).
//!
//! The base is compact (the key and the value, nothing else) and is read by
//! binary search; the layer above holds only what changed. A whole build
//! (a scan, a start) makes a new base with nothing above it.

use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Layered<V: Clone> {
    base: Arc<Vec<(u64, V)>>,
    /// Changed since the base: `None` is removed.
    above: imbl::OrdMap<u64, Option<V>>,
    len: usize,
}

impl<V: Clone> Default for Layered<V> {
    fn default() -> Self {
        Layered::from_sorted(Vec::new())
    }
}

impl<V: Clone> Layered<V> {
    /// The map of `pairs`, in key order with no key twice (its callers make
    /// sure: a tree read from disk is refused before).
    pub fn from_sorted(pairs: Vec<(u64, V)>) -> Self {
        Layered {
            len: pairs.len(),
            base: Arc::new(pairs),
            above: imbl::OrdMap::new(),
        }
    }

    fn in_base(&self, key: u64) -> Option<&V> {
        let at = self.base.binary_search_by_key(&key, |(k, _)| *k).ok()?;
        Some(&self.base[at].1)
    }

    pub fn get(&self, key: u64) -> Option<&V> {
        match self.above.get(&key) {
            Some(changed) => changed.as_ref(),
            None => self.in_base(key),
        }
    }

    pub fn insert(&mut self, key: u64, value: V) {
        if self.get(key).is_none() {
            self.len += 1;
        }
        self.above.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: u64) {
        if self.get(key).is_none() {
            return;
        }
        self.len -= 1;
        if self.in_base(key).is_some() {
            self.above.insert(key, None);
        } else {
            self.above.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every pair, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        let mut base = self.base.iter().map(|(k, v)| (*k, Some(v))).peekable();
        let mut above = self.above.iter().map(|(k, v)| (*k, v.as_ref())).peekable();
        std::iter::from_fn(move || loop {
            let next = match (base.peek(), above.peek()) {
                (None, None) => return None,
                (Some(_), None) => base.next(),
                (None, Some(_)) => above.next(),
                (Some(b), Some(a)) => match b.0.cmp(&a.0) {
                    std::cmp::Ordering::Less => base.next(),
                    std::cmp::Ordering::Greater => above.next(),
                    std::cmp::Ordering::Equal => {
                        base.next();
                        above.next()
                    }
                },
            };
            if let Some((key, Some(value))) = next {
                return Some((key, value));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a `BTreeMap` doing the same inserts and removes.
        #[test]
        fn behaves_as_a_map(
            base in proptest::collection::btree_map(0u64..64, 0u32..9, 0..20),
            edits in proptest::collection::vec((0u64..64, proptest::option::of(0u32..9)), 0..40),
        ) {
            let mut model = base.clone();
            let mut map = Layered::from_sorted(base.into_iter().collect());
            for (key, value) in edits {
                match value {
                    Some(v) => {
                        model.insert(key, v);
                        map.insert(key, v);
                    }
                    None => {
                        model.remove(&key);
                        map.remove(key);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.get(key), model.get(&key));
            }
            let all: Vec<(u64, u32)> = map.iter().map(|(k, v)| (k, *v)).collect();
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }
}
