//! Interned names: the paths and conversation ids a source follows, stored back to back in
//! large blocks and named by a dense `u32`.
//!
//! A source keeps an entry for every file and conversation it has seen since start (50,000
//! conversations is a real user's history). Held as one small allocation or more each, those
//! entries would be scattered among the folds a scan reads and lets go of, and keep most of the
//! heap's pages resident after the folds are gone; here they cost a few large allocations, and
//! a name once interned is never moved or freed (a source's names only grow, by what exists on
//! disk).

use std::hash::BuildHasher;

/// Bytes per block of names: large enough that blocks are few, small enough that the last,
/// partly filled one wastes little.
const BLOCK: usize = 64 * 1024;

/// Where one name's bytes are.
#[derive(Debug, Clone, Copy)]
struct Span {
    block: u32,
    start: u32,
    len: u32,
}

/// A set of names (byte strings), each with a dense id in the order first interned.
#[derive(Default)]
pub struct Names {
    /// The names' bytes, back to back; a block is never reallocated once made (a name longer
    /// than [`BLOCK`] gets a block of its own).
    blocks: Vec<Vec<u8>>,
    /// Id → where its bytes are.
    spans: Vec<Span>,
    /// Finds the id of a name: ids, hashed by their names' bytes.
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl Names {
    /// The id of `name`, if it was interned.
    pub fn get(&self, name: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.index.find(hash, |&id| self.name(id) == name).copied()
    }

    /// The id of `name`, interning it if it is new.
    pub fn intern(&mut self, name: &[u8]) -> u32 {
        if let Some(id) = self.get(name) {
            return id;
        }
        let id = u32::try_from(self.spans.len()).expect("fewer than 4 billion names");
        let span = self.store(name);
        self.spans.push(span);
        let hash = self.hasher.hash_one(name);
        let (blocks, spans, hasher) = (&self.blocks, &self.spans, &self.hasher);
        self.index.insert_unique(hash, id, |&other| {
            hasher.hash_one(bytes_of(blocks, spans[other as usize]))
        });
        id
    }

    /// The name of `id` (an id this set gave).
    pub fn name(&self, id: u32) -> &[u8] {
        bytes_of(&self.blocks, self.spans[id as usize])
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Copies `name` into the blocks.
    fn store(&mut self, name: &[u8]) -> Span {
        let fits = self
            .blocks
            .last()
            .is_some_and(|b| b.capacity() - b.len() >= name.len());
        if !fits {
            self.blocks.push(Vec::with_capacity(BLOCK.max(name.len())));
        }
        let block = self.blocks.len() - 1;
        let bytes = &mut self.blocks[block];
        let start = bytes.len();
        bytes.extend_from_slice(name);
        Span {
            block: block as u32,
            start: start as u32,
            len: name.len() as u32,
        }
    }
}

fn bytes_of(blocks: &[Vec<u8>], span: Span) -> &[u8] {
    let start = span.start as usize;
    &blocks[span.block as usize][start..start + span.len as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_id_and_its_bytes() {
        let mut names = Names::default();
        let a = names.intern(b"/home/u/.claude/projects/p/a.jsonl");
        let b = names.intern(b"/home/u/.claude/projects/p/b.jsonl");
        assert_ne!(a, b);
        assert_eq!(names.intern(b"/home/u/.claude/projects/p/a.jsonl"), a);
        assert_eq!(names.get(b"/home/u/.claude/projects/p/b.jsonl"), Some(b));
        assert_eq!(names.get(b"/nowhere"), None);
        assert_eq!(names.name(a), b"/home/u/.claude/projects/p/a.jsonl");
        assert_eq!(names.intern(b""), 2, "the empty name is a name too");
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn many_names_across_blocks_and_one_longer_than_a_block() {
        let mut names = Names::default();
        let long = vec![b'x'; BLOCK + 10];
        let ids: Vec<u32> = (0..20_000)
            .map(|i| names.intern(format!("/some/dir/{i:08}.jsonl").as_bytes()))
            .collect();
        let long_id = names.intern(&long);
        let after = names.intern(b"after the long one");
        assert!(names.blocks.len() > 3);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(*id as usize, i);
            assert_eq!(
                names.name(*id),
                format!("/some/dir/{i:08}.jsonl").as_bytes()
            );
            assert_eq!(
                names.get(format!("/some/dir/{i:08}.jsonl").as_bytes()),
                Some(*id)
            );
        }
        assert_eq!(names.name(long_id), long.as_slice());
        assert_eq!(names.name(after), b"after the long one");
        assert_eq!(names.get(&long), Some(long_id));
    }
}
