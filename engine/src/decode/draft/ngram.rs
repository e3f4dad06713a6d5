//! [`NgramIndex`]: every n-gram of a few fixed lengths of some token
//! sequences, hashed once, so that finding where a suffix of the output
//! occurs costs a hash and a few comparisons instead of a scan.

use std::collections::HashMap;

/// Where an n-gram occurs: the sequence and the position just after it
/// (where its continuation starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Occurrence {
    pub source: u32,
    pub end: u32,
}

/// Hashed n-gram table over token sequences. Positions per n-gram are kept
/// in order (source, then position), so the nearest occurrence after a
/// position is a binary search. Hash hits are always checked against the
/// tokens.
#[derive(Debug, Clone)]
pub(super) struct NgramIndex {
    sources: Vec<Vec<u32>>,
    /// Indexed n-gram lengths, ascending.
    lengths: Vec<usize>,
    /// One table per length: hash of the n-gram -> occurrences in order.
    tables: Vec<HashMap<u64, Vec<Occurrence>>>,
}

fn hash(tokens: &[u32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &t in tokens {
        h = (h ^ u64::from(t)).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    h
}

impl NgramIndex {
    /// Indexes every n-gram of each length in `lengths` (ascending, > 0).
    pub fn new(sources: Vec<Vec<u32>>, lengths: &[usize]) -> Self {
        let mut tables = Vec::with_capacity(lengths.len());
        for &n in lengths {
            let mut table: HashMap<u64, Vec<Occurrence>> = HashMap::new();
            for (source, tokens) in sources.iter().enumerate() {
                for end in n..=tokens.len() {
                    let occurrence = Occurrence { source: source as u32, end: end as u32 };
                    table.entry(hash(&tokens[end - n..end])).or_default().push(occurrence);
                }
            }
            tables.push(table);
        }
        Self { sources, lengths: lengths.to_vec(), tables }
    }

    /// Appends `tokens` to the last source and indexes the n-grams that now
    /// end in it (occurrences stay in order: the last source's come last).
    pub fn extend_last(&mut self, tokens: &[u32]) {
        let Some(source) = self.sources.len().checked_sub(1) else { return };
        let old_len = self.sources[source].len();
        self.sources[source].extend_from_slice(tokens);
        let sequence = &self.sources[source];
        for (&n, table) in self.lengths.iter().zip(&mut self.tables) {
            for end in (old_len + 1).max(n)..=sequence.len() {
                let occurrence = Occurrence { source: source as u32, end: end as u32 };
                table.entry(hash(&sequence[end - n..end])).or_default().push(occurrence);
            }
        }
    }

    /// Empties the last source and forgets its n-grams.
    pub fn clear_last(&mut self) {
        let Some(source) = self.sources.len().checked_sub(1) else { return };
        self.sources[source].clear();
        for table in &mut self.tables {
            table.retain(|_, list| {
                list.retain(|o| o.source as usize != source);
                !list.is_empty()
            });
        }
    }

    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    pub fn source(&self, index: u32) -> &[u32] {
        &self.sources[index as usize]
    }

    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Occurrences of `ngram` (whose length is the `table`-th indexed
    /// length), verified against the tokens, in order.
    pub fn occurrences<'a>(&'a self, table: usize, ngram: &'a [u32]) -> impl Iterator<Item = Occurrence> + 'a {
        let n = ngram.len();
        self.tables[table].get(&hash(ngram)).map(Vec::as_slice).unwrap_or_default().iter().copied().filter(move |o| {
            let end = o.end as usize;
            self.sources[o.source as usize][end - n..end] == *ngram
        })
    }

    /// The verified occurrence of `ngram` in source 0 nearest to `cursor`:
    /// the first ending at or after it, else the last ending before it.
    pub fn nearest(&self, table: usize, ngram: &[u32], cursor: usize) -> Option<Occurrence> {
        let n = ngram.len();
        let list = self.tables[table].get(&hash(ngram))?;
        let verified = |o: &Occurrence| {
            let end = o.end as usize;
            o.source == 0 && self.sources[0][end - n..end] == *ngram
        };
        let split = list.partition_point(|o| o.source == 0 && (o.end as usize) < cursor);
        list[split..].iter().find(|o| verified(o)).or_else(|| list[..split].iter().rev().find(|o| verified(o))).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_verified_occurrences_in_order() {
        let index = NgramIndex::new(vec![vec![1, 2, 3, 1, 2], vec![2, 1, 2]], &[1, 2]);
        let found: Vec<_> = index.occurrences(1, &[1, 2]).collect();
        assert_eq!(
            found,
            vec![Occurrence { source: 0, end: 2 }, Occurrence { source: 0, end: 5 }, Occurrence { source: 1, end: 3 }]
        );
        assert_eq!(index.occurrences(1, &[3, 2]).count(), 0);
        assert_eq!(index.nearest(0, &[2], 3), Some(Occurrence { source: 0, end: 5 }));
        assert_eq!(index.nearest(0, &[3], 4), Some(Occurrence { source: 0, end: 3 }));
        assert_eq!(index.nearest(0, &[9], 0), None);
    }

    #[test]
    fn extending_the_last_source_indexes_what_it_completes() {
        let mut grown = NgramIndex::new(vec![vec![1, 2], vec![3]], &[1, 2]);
        grown.extend_last(&[1, 2]);
        grown.extend_last(&[3, 1]);
        let whole = NgramIndex::new(vec![vec![1, 2], vec![3, 1, 2, 3, 1]], &[1, 2]);
        for (table, gram) in [(0, &[1][..]), (0, &[3]), (1, &[1, 2]), (1, &[3, 1]), (1, &[2, 3])] {
            assert_eq!(
                grown.occurrences(table, gram).collect::<Vec<_>>(),
                whole.occurrences(table, gram).collect::<Vec<_>>()
            );
        }
        grown.clear_last();
        assert_eq!(grown.source(1), &[] as &[u32]);
        assert_eq!(grown.occurrences(1, &[1, 2]).collect::<Vec<_>>(), vec![Occurrence { source: 0, end: 2 }]);
        assert_eq!(grown.occurrences(0, &[3]).count(), 0);
    }
}
