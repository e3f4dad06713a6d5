//! [`NgramIndex`]: every n-gram of a few fixed lengths of some token
//! sequences, hashed once, so that finding where a suffix of the output
//! occurs costs a hash, a binary search and a few comparisons instead of a
//! scan.

use std::collections::HashMap;

/// Where an n-gram occurs: the sequence and the position just after it
/// (where its continuation starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Occurrence {
    pub source: u32,
    pub end: u32,
}

/// Hashed n-gram table over token sequences. Occurrences per n-gram are
/// kept in order (source, then position), so the nearest occurrence after a
/// position is a binary search. Hash hits are always checked against the
/// tokens.
///
/// The sequences given to [`NgramIndex::new`] are indexed once into sorted
/// arrays ((hash, occurrence) pairs a length, counting-sorted into buckets
/// by the hash's top bits: no allocation per n-gram, linear time); what [`NgramIndex::extend_last`] appends to the last sequence
/// (a generation's output, as it grows) goes into a hash map beside them.
/// An n-gram's occurrences are those of its sorted run, then those of the
/// map (the appended positions come after all others).
#[derive(Debug, Clone)]
pub(super) struct NgramIndex {
    sources: Vec<Vec<u32>>,
    /// Indexed n-gram lengths, ascending.
    lengths: Vec<usize>,
    /// One table per length: every n-gram of the sequences as given.
    fixed: Vec<SortedTable>,
    /// One map per length: hash -> occurrences, in order, of the n-grams
    /// appended to the last sequence since.
    appended: Vec<HashMap<u64, Vec<Occurrence>>>,
}

fn hash(tokens: &[u32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &t in tokens {
        h = (h ^ u64::from(t)).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    // Every bit into the top ones, which the sorted tables bucket by (one
    // token's hash would otherwise vary in few of them).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// (hash, occurrence) pairs sorted by hash, then source, then position,
/// with the start of each run of equal leading hash bits (about one pair a
/// bucket), so a lookup reads a bucket instead of searching the whole array.
#[derive(Debug, Clone)]
struct SortedTable {
    pairs: Vec<(u64, Occurrence)>,
    /// A hash's bucket is its top `64 - shift` bits.
    shift: u32,
    /// starts[b]..starts[b + 1]: the pairs of bucket b.
    starts: Vec<u32>,
}

impl SortedTable {
    /// Sorts `pairs` in linear expected time: a counting sort into the
    /// buckets, then an insertion sort of each bucket's few pairs.
    fn new(pairs: Vec<(u64, Occurrence)>) -> Self {
        let bits = pairs.len().max(2).next_power_of_two().trailing_zeros();
        let shift = 64 - bits;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for &(h, _) in &pairs {
            starts[(h >> shift) as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut sorted = vec![(0, Occurrence { source: 0, end: 0 }); pairs.len()];
        let mut cursors = starts.clone();
        for pair in pairs {
            let cursor = &mut cursors[(pair.0 >> shift) as usize];
            sorted[*cursor as usize] = pair;
            *cursor += 1;
        }
        let key = |&(h, o): &(u64, Occurrence)| (h, o.source, o.end);
        for bucket in starts.windows(2) {
            let run = &mut sorted[bucket[0] as usize..bucket[1] as usize];
            for i in 1..run.len() {
                let mut j = i;
                while j > 0 && key(&run[j - 1]) > key(&run[j]) {
                    run.swap(j - 1, j);
                    j -= 1;
                }
            }
        }
        Self { pairs: sorted, shift, starts }
    }

    /// The pairs, in order, of the n-grams hashing to `key`.
    fn run(&self, key: u64) -> &[(u64, Occurrence)] {
        let bucket = (key >> self.shift) as usize;
        let pairs = &self.pairs[self.starts[bucket] as usize..self.starts[bucket + 1] as usize];
        let start = pairs.partition_point(|&(h, _)| h < key);
        let len = pairs[start..].partition_point(|&(h, _)| h == key);
        &pairs[start..start + len]
    }

    /// The table without `source`'s n-grams.
    fn without_source(mut self, source: u32) -> Self {
        self.pairs.retain(|(_, o)| o.source != source);
        Self::new(self.pairs)
    }
}

impl NgramIndex {
    /// Indexes every n-gram of each length in `lengths` (ascending, > 0).
    pub fn new(sources: Vec<Vec<u32>>, lengths: &[usize]) -> Self {
        let fixed = lengths
            .iter()
            .map(|&n| {
                let count = sources.iter().map(|tokens| (tokens.len() + 1).saturating_sub(n)).sum();
                let mut pairs = Vec::with_capacity(count);
                for (source, tokens) in sources.iter().enumerate() {
                    for end in n..=tokens.len() {
                        pairs
                            .push((hash(&tokens[end - n..end]), Occurrence { source: source as u32, end: end as u32 }));
                    }
                }
                SortedTable::new(pairs)
            })
            .collect();
        let appended = vec![HashMap::new(); lengths.len()];
        Self { sources, lengths: lengths.to_vec(), fixed, appended }
    }

    /// Appends `tokens` to the last source and indexes the n-grams that now
    /// end in it (occurrences stay in order: the last source's come last).
    pub fn extend_last(&mut self, tokens: &[u32]) {
        let Some(source) = self.sources.len().checked_sub(1) else { return };
        let old_len = self.sources[source].len();
        self.sources[source].extend_from_slice(tokens);
        let sequence = &self.sources[source];
        for (&n, table) in self.lengths.iter().zip(&mut self.appended) {
            for end in (old_len + 1).max(n)..=sequence.len() {
                let occurrence = Occurrence { source: source as u32, end: end as u32 };
                table.entry(hash(&sequence[end - n..end])).or_default().push(occurrence);
            }
        }
    }

    /// Empties the last source and forgets its n-grams.
    pub fn clear_last(&mut self) {
        let Some(source) = self.sources.len().checked_sub(1) else { return };
        let had_fixed = !self.sources[source].is_empty();
        self.sources[source].clear();
        for table in &mut self.appended {
            table.clear();
        }
        if had_fixed {
            self.fixed = std::mem::take(&mut self.fixed).into_iter().map(|t| t.without_source(source as u32)).collect();
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

    /// The occurrences of n-grams hashing to `key` in the `table`-th length:
    /// the given sequences' (in order), then the appended ones (in order).
    fn candidates(&self, table: usize, key: u64) -> (&[(u64, Occurrence)], &[Occurrence]) {
        let appended = self.appended[table].get(&key).map(Vec::as_slice).unwrap_or_default();
        (self.fixed[table].run(key), appended)
    }

    /// Occurrences of `ngram` (whose length is the `table`-th indexed
    /// length), verified against the tokens, in order.
    pub fn occurrences<'a>(&'a self, table: usize, ngram: &'a [u32]) -> impl Iterator<Item = Occurrence> + 'a {
        let n = ngram.len();
        let (fixed, appended) = self.candidates(table, hash(ngram));
        fixed.iter().map(|&(_, o)| o).chain(appended.iter().copied()).filter(move |o| {
            let end = o.end as usize;
            self.sources[o.source as usize][end - n..end] == *ngram
        })
    }

    /// The verified occurrence of `ngram` in source 0 nearest to `cursor`:
    /// the first ending at or after it, else the last ending before it.
    pub fn nearest(&self, table: usize, ngram: &[u32], cursor: usize) -> Option<Occurrence> {
        let n = ngram.len();
        let (fixed, appended) = self.candidates(table, hash(ngram));
        let verified = |o: &Occurrence| {
            let end = o.end as usize;
            o.source == 0 && self.sources[0][end - n..end] == *ngram
        };
        // The occurrences before the cursor in source 0 lead the run (it is
        // in source, then position order): those of `fixed`, then, only if
        // all of `fixed`'s are such, those of `appended`.
        let before = |o: &Occurrence| o.source == 0 && (o.end as usize) < cursor;
        let fixed_split = fixed.partition_point(|(_, o)| before(o));
        let appended_split = if fixed_split == fixed.len() { appended.partition_point(before) } else { 0 };
        let after = fixed[fixed_split..].iter().map(|(_, o)| o).chain(&appended[appended_split..]);
        let earlier = appended[..appended_split].iter().rev().chain(fixed[..fixed_split].iter().rev().map(|(_, o)| o));
        after.copied().find(verified).or_else(|| earlier.copied().find(verified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_spread_over_the_buckets() {
        // One token's n-grams (1-grams) of 1,100 tokens in 2,048 buckets:
        // the top bits must vary with every token, or a bucket fills and
        // its insertion sort turns quadratic.
        let mut seed = 12345u64;
        let tokens: Vec<u32> = (0..1100)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % 5000) as u32
            })
            .collect();
        for n in [1, 2, 16] {
            let index = NgramIndex::new(vec![tokens.clone()], &[n]);
            let table = &index.fixed[0];
            let largest = table.starts.windows(2).map(|w| w[1] - w[0]).max();
            assert!(largest.is_some_and(|l| l <= 16), "n = {n}: a bucket of {largest:?} pairs");
            let keys: Vec<_> = table.pairs.iter().map(|&(h, o)| (h, o.source, o.end)).collect();
            assert!(keys.windows(2).all(|w| w[0] <= w[1]), "n = {n}: sorted");
        }
    }

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

    /// Every occurrence of every n-gram, in order, by a scan.
    fn scanned(sources: &[Vec<u32>], ngram: &[u32]) -> Vec<Occurrence> {
        let n = ngram.len();
        let mut found = Vec::new();
        for (source, tokens) in sources.iter().enumerate() {
            for end in n..=tokens.len() {
                if tokens[end - n..end] == *ngram {
                    found.push(Occurrence { source: source as u32, end: end as u32 });
                }
            }
        }
        found
    }

    #[test]
    fn lookups_agree_with_a_scan_given_or_appended() {
        // Small vocabularies, so n-grams repeat within and across sources.
        let mut seed = 7u64;
        let mut token = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 60) as u32 % 4
        };
        let given: Vec<Vec<u32>> = vec![(0..60).map(|_| token()).collect(), (0..25).map(|_| token()).collect()];
        let tail: Vec<u32> = (0..30).map(|_| token()).collect();
        let lengths = [1, 2, 3];
        // The last source given whole, or grown from empty in pieces.
        let whole = NgramIndex::new([given.clone(), vec![tail.clone()]].concat(), &lengths);
        let mut grown = NgramIndex::new([given.clone(), vec![Vec::new()]].concat(), &lengths);
        for piece in tail.chunks(7) {
            grown.extend_last(piece);
        }
        let sources = [given.clone(), vec![tail.clone()]].concat();
        for (table, &n) in lengths.iter().enumerate() {
            for start in 0..sources[0].len() + 1 - n {
                let gram = &sources[0][start..start + n];
                let expected = scanned(&sources, gram);
                for index in [&whole, &grown] {
                    assert_eq!(index.occurrences(table, gram).collect::<Vec<_>>(), expected, "{gram:?}");
                    for cursor in [0, 10, 33, 60, 61] {
                        let in_first: Vec<_> = expected.iter().filter(|o| o.source == 0).copied().collect();
                        let nearest = in_first
                            .iter()
                            .find(|o| o.end as usize >= cursor)
                            .or_else(|| in_first.iter().rev().find(|o| (o.end as usize) < cursor))
                            .copied();
                        assert_eq!(index.nearest(table, gram, cursor), nearest, "{gram:?} at {cursor}");
                    }
                }
            }
        }
        // One source, grown: `nearest` finds it among the appended n-grams.
        let mut single = NgramIndex::new(vec![vec![5, 6]], &[1, 2]);
        single.extend_last(&[5, 6, 7]);
        assert_eq!(single.nearest(1, &[5, 6], 3), Some(Occurrence { source: 0, end: 4 }));
        assert_eq!(single.nearest(1, &[5, 6], 5), Some(Occurrence { source: 0, end: 4 }));
        assert_eq!(single.nearest(1, &[5, 6], 1), Some(Occurrence { source: 0, end: 2 }));
        // Clearing a last source that was given forgets its given n-grams too.
        single.clear_last();
        assert_eq!(single.occurrences(0, &[5]).count(), 0);
        single.extend_last(&[7, 5]);
        assert_eq!(single.occurrences(0, &[5]).collect::<Vec<_>>(), vec![Occurrence { source: 0, end: 2 }]);
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
