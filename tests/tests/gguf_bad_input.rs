//! Corrupt and truncated GGUF files give errors, never panics: the default
//! model cut at many lengths, and with its header, metadata and tensor-info
//! fields overwritten with values that no valid file can hold.
//!
//! Field positions come from a small independent walker over the real file
//! ([`Layout`]), so the test follows the file rather than hard-coded offsets.
//! It runs in seconds: each case only opens the file, and loads at most the
//! tensors whose table entry changed.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use graft_engine::model::gguf::GgufFile;
use graft_engine::model::TensorSource;

fn model_bytes() -> (PathBuf, Vec<u8>) {
    let path = graft_engine::home::default_model_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!("default model not readable at {} ({e}): run `graft models fetch` first", path.display())
    });
    (path, bytes)
}

/// Where one metadata entry's fields sit in the file.
struct KvFields {
    key: String,
    key_len_at: usize,
    type_at: usize,
    /// For a string value: its length field.
    str_len_at: Option<usize>,
    /// For an array value: (element type field, length field, length, element type).
    array: Option<(usize, usize, u64, u32)>,
}

/// Where one tensor info's fields sit in the file.
struct TensorFields {
    name_len_at: usize,
    n_dims_at: usize,
    dims_at: Vec<usize>,
    dims: Vec<u64>,
    type_at: usize,
    type_id: u32,
    offset_at: usize,
    offset: u64,
}

/// Field positions of a GGUF v3 file, found by walking it independently of
/// the engine's parser. Only used on the real default model, so it trusts it.
struct Layout {
    kvs: Vec<KvFields>,
    tensors: Vec<TensorFields>,
    /// End of the tensor table (start of the padding before the data).
    infos_end: usize,
}

struct Walker<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_le_bytes(self.b[self.pos..self.pos + 4].try_into().expect("4 bytes"));
        self.pos += 4;
        v
    }
    fn u64(&mut self) -> u64 {
        let v = u64::from_le_bytes(self.b[self.pos..self.pos + 8].try_into().expect("8 bytes"));
        self.pos += 8;
        v
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        let s = String::from_utf8(self.b[self.pos..self.pos + n].to_vec()).expect("utf-8");
        self.pos += n;
        s
    }
    fn skip_value(&mut self, ty: u32) {
        match ty {
            0 | 1 | 7 => self.pos += 1,
            2 | 3 => self.pos += 2,
            4..=6 => self.pos += 4,
            10..=12 => self.pos += 8,
            8 => {
                let n = self.u64() as usize;
                self.pos += n;
            }
            9 => {
                let elem = self.u32();
                let n = self.u64();
                for _ in 0..n {
                    self.skip_value(elem);
                }
            }
            other => panic!("walker: unknown value type {other}"),
        }
    }
}

fn layout(b: &[u8]) -> Layout {
    let mut w = Walker { b, pos: 8 };
    let n_tensors = w.u64();
    let n_kv = w.u64();
    let mut kvs = Vec::new();
    for _ in 0..n_kv {
        let key_len_at = w.pos;
        let key = w.string();
        let type_at = w.pos;
        let ty = w.u32();
        let (mut str_len_at, mut array) = (None, None);
        if ty == 8 {
            str_len_at = Some(w.pos);
        }
        if ty == 9 {
            let elem_at = w.pos;
            let elem = w.u32();
            let len = w.u64();
            array = Some((elem_at, elem_at + 4, len, elem));
            w.pos = elem_at;
        }
        w.pos = type_at + 4;
        w.skip_value(ty);
        kvs.push(KvFields { key, key_len_at, type_at, str_len_at, array });
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name_len_at = w.pos;
        w.string();
        let n_dims_at = w.pos;
        let n_dims = w.u32();
        let (mut dims_at, mut dims) = (Vec::new(), Vec::new());
        for _ in 0..n_dims {
            dims_at.push(w.pos);
            dims.push(w.u64());
        }
        let type_at = w.pos;
        let type_id = w.u32();
        let offset_at = w.pos;
        let offset = w.u64();
        tensors.push(TensorFields { name_len_at, n_dims_at, dims_at, dims, type_at, type_id, offset_at, offset });
    }
    Layout { kvs, tensors, infos_end: w.pos }
}

/// A scratch copy of the model that cases patch in place and restore.
struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
    file: File,
}

impl Scratch {
    fn new(bytes: &[u8]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, bytes).expect("write scratch copy");
        let file = OpenOptions::new().write(true).open(&path).expect("open scratch copy");
        Scratch { _dir: dir, path, file }
    }

    fn write_at(&mut self, at: usize, bytes: &[u8]) {
        self.file.seek(SeekFrom::Start(at as u64)).expect("seek");
        self.file.write_all(bytes).expect("patch");
        self.file.flush().expect("flush");
    }

    /// Runs `check` on the file with `patch` written at `at`, then restores
    /// the original bytes (after `check` has dropped any map of the file).
    fn with_patch<T>(&mut self, orig: &[u8], at: usize, patch: &[u8], check: impl FnOnce(&Path) -> T) -> T {
        self.write_at(at, patch);
        let out = check(&self.path);
        self.write_at(at, &orig[at..at + patch.len()]);
        out
    }
}

/// Asserts that opening the file with `patch` at `at` fails.
fn assert_open_fails(s: &mut Scratch, orig: &[u8], at: usize, patch: &[u8], what: &str) {
    s.with_patch(orig, at, patch, |path| {
        if let Ok(g) = GgufFile::open(path) {
            panic!("{what}: file opened ({} tensors)", g.tensor_infos().len());
        }
    });
}

fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

#[test]
fn truncated_model_never_opens() {
    let (_, bytes) = model_bytes();
    let g = GgufFile::open(&graft_engine::home::default_model_path()).expect("intact model opens");
    let data_start = g.data_offset();
    drop(g);
    let len = bytes.len();
    let mut cuts = vec![0, 1, 3, 4, 7, 8, 15, 16, 23, 24, 25];
    cuts.extend((1..64).map(|i| data_start * i / 64));
    cuts.extend([data_start - 1, data_start, data_start + 1, len / 2, len - 4096, len - 1]);
    cuts.sort_unstable();
    cuts.dedup();
    let s = Scratch::new(&bytes);
    // Longest first, so each cut is a set_len on the same file.
    for &n in cuts.iter().rev() {
        s.file.set_len(n as u64).expect("truncate");
        match GgufFile::open(&s.path) {
            Ok(_) => panic!("model truncated to {n} of {len} bytes opened"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn corrupt_header_fields_are_errors() {
    let (_, bytes) = model_bytes();
    let mut s = Scratch::new(&bytes);
    assert_open_fails(&mut s, &bytes, 0, b"GGUX", "bad magic");
    assert_open_fails(&mut s, &bytes, 0, b"gguf", "lower-case magic");
    for v in [0, 1, 4, 0x0300_0000, u32::MAX] {
        assert_open_fails(&mut s, &bytes, 4, &le32(v), &format!("version {v}"));
    }
    for v in [u64::MAX, 1 << 40, bytes.len() as u64] {
        assert_open_fails(&mut s, &bytes, 8, &le64(v), &format!("tensor count {v}"));
        assert_open_fails(&mut s, &bytes, 16, &le64(v), &format!("metadata count {v}"));
    }
    // One tensor more or fewer than the table holds: the table no longer ends
    // where the data starts, so some range or field is wrong.
    let n_tensors = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    assert_open_fails(&mut s, &bytes, 8, &le64(n_tensors + 1), "tensor count + 1");
    // Zero metadata entries: the first key is then read as a tensor info.
    assert_open_fails(&mut s, &bytes, 16, &le64(0), "metadata count 0");
}

#[test]
fn corrupt_metadata_fields_are_errors() {
    let (_, bytes) = model_bytes();
    let layout = layout(&bytes);
    assert!(layout.kvs.len() > 20, "walker found {} keys", layout.kvs.len());
    let mut s = Scratch::new(&bytes);
    let len = bytes.len() as u64;
    for kv in &layout.kvs {
        let key = &kv.key;
        for v in [u64::MAX, len, 1 << 33] {
            assert_open_fails(&mut s, &bytes, kv.key_len_at, &le64(v), &format!("`{key}` key length {v}"));
        }
        for t in [13, 99, u32::MAX] {
            assert_open_fails(&mut s, &bytes, kv.type_at, &le32(t), &format!("`{key}` value type {t}"));
        }
        if let Some(at) = kv.str_len_at {
            for v in [u64::MAX, len] {
                assert_open_fails(&mut s, &bytes, at, &le64(v), &format!("`{key}` string length {v}"));
            }
        }
        if let Some((elem_at, len_at, n, elem)) = kv.array {
            for t in [13, u32::MAX] {
                assert_open_fails(&mut s, &bytes, elem_at, &le32(t), &format!("`{key}` element type {t}"));
            }
            for v in [u64::MAX, len, 1 << 40] {
                assert_open_fails(&mut s, &bytes, len_at, &le64(v), &format!("`{key}` array length {v}"));
            }
            if elem == 8 && n > 1 {
                // A string array claimed to be a nested array: each "element"
                // is then read as (type, length) from string bytes.
                assert_open_fails(&mut s, &bytes, elem_at, &le32(9), &format!("`{key}` as nested array"));
            }
        }
    }
    // Invalid UTF-8 inside a key.
    let first = &layout.kvs[0];
    assert_open_fails(&mut s, &bytes, first.key_len_at + 8, &[0xFF], "non-UTF-8 key");
}

#[test]
fn corrupt_tensor_infos_are_errors() {
    let (_, bytes) = model_bytes();
    let layout = layout(&bytes);
    let n = layout.tensors.len();
    assert!(n > 100, "walker found {n} tensors");
    let mut s = Scratch::new(&bytes);
    let len = bytes.len() as u64;
    // Every open re-parses the metadata (~100k tokenizer strings), so take a
    // spread of tensors: the first few, one in the middle, the last few.
    for i in [0, 1, n / 2, n - 2, n - 1] {
        let t = &layout.tensors[i];
        let what = |field: &str| format!("tensor #{i} {field}");
        for v in [u64::MAX, len, 1 << 40] {
            assert_open_fails(&mut s, &bytes, t.name_len_at, &le64(v), &what("name length"));
        }
        for d in [5, 64, u32::MAX] {
            assert_open_fails(&mut s, &bytes, t.n_dims_at, &le32(d), &what(&format!("{d} dims")));
        }
        for &at in &t.dims_at {
            assert_open_fails(&mut s, &bytes, at, &le64(u64::MAX), &what("dim u64::MAX"));
            assert_open_fails(&mut s, &bytes, at, &le64(1 << 62), &what("dim 2^62"));
            // Far larger than the file, but no overflow: the range check catches it.
            assert_open_fails(&mut s, &bytes, at, &le64(len * 1024), &what("dim past the end"));
        }
        if t.type_id != 0 {
            // Quantized: a row length that is not a whole number of blocks.
            assert_open_fails(&mut s, &bytes, t.dims_at[0], &le64(t.dims[0] + 1), &what("partial block"));
        }
        for ty in [4, 5, 31, 77, u32::MAX] {
            assert_open_fails(&mut s, &bytes, t.type_at, &le32(ty), &what(&format!("type id {ty}")));
        }
        for off in [t.offset + 1, t.offset + 16, u64::MAX - 31, len.next_multiple_of(32)] {
            assert_open_fails(&mut s, &bytes, t.offset_at, &le64(off), &what(&format!("offset {off}")));
        }
    }
    // The last tensor's data ends exactly at the end of the file: one more
    // alignment step of offset, or one more row, runs past it.
    let last = &layout.tensors[n - 1];
    assert_open_fails(&mut s, &bytes, last.offset_at, &le64(last.offset + 32), "last tensor offset + 32");
    let outer = *last.dims_at.last().expect("dims");
    let rows = *last.dims.last().expect("dims");
    assert_open_fails(&mut s, &bytes, outer, &le64(rows + 1), "last tensor one row longer");
}

/// Deterministic xorshift, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random bytes overwritten across the header, metadata and tensor table
/// must never panic; where the file still opens, the tensors whose table
/// entries changed must load or fail cleanly.
#[test]
fn random_byte_flips_never_panic() {
    let (path, bytes) = model_bytes();
    let layout = layout(&bytes);
    let original = GgufFile::open(&path).expect("intact model opens");
    let mut s = Scratch::new(&bytes);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Positions biased towards the structural parts: the fixed header, the
    // metadata (mostly tokenizer strings) and the tensor table.
    let table_start = layout.tensors[0].name_len_at;
    for case in 0..120 {
        let at = match case % 3 {
            0 => (rng.next() % 24) as usize,
            1 => 24 + (rng.next() as usize) % (table_start - 24),
            _ => table_start + (rng.next() as usize) % (layout.infos_end - table_start),
        };
        let value = [(rng.next() & 0xFF) as u8];
        if value[0] == bytes[at] {
            continue;
        }
        s.with_patch(&bytes, at, &value, |p| {
            let Ok(g) = GgufFile::open(p) else { return };
            for info in g.tensor_infos() {
                if original.tensor_info(&info.name) != Some(info) {
                    // Either outcome is fine; a panic is not.
                    let _ = g.load_f32(&info.name);
                }
            }
        });
    }
}
