//! Hugging Face model directories: `config.json`, the weights in
//! `model.safetensors` or sharded behind `model.safetensors.index.json`, and
//! the tokenizer files next to them.
//!
//! [`HfDir::open`] maps every weight file once (memmap2), validates each
//! safetensors header with the `safetensors` crate (offsets, sizes, the file
//! length) and records where every tensor lives, so a corrupt or truncated
//! file fails at open with an error naming it. [`TensorSource::load_f32`] then
//! converts one tensor (BF16, F16 or F32, little-endian) to f32. Shapes are
//! stored row-major, as PyTorch writes them, and are handed out unchanged.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use super::{HostTensor, TensorSource};
use crate::error::{Error, Result};

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";
const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// An opened Hugging Face model directory.
#[derive(Debug)]
pub struct HfDir {
    dir: PathBuf,
    /// One entry per weight file, each mapped once.
    shards: Vec<Shard>,
    /// Tensor name -> where its bytes are.
    tensors: HashMap<String, TensorEntry>,
}

#[derive(Debug)]
struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

#[derive(Debug)]
struct TensorEntry {
    /// Index into `HfDir::shards`.
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range in the shard's mapping (header included), validated at open.
    start: usize,
    end: usize,
}

/// The part of `model.safetensors.index.json` that matters: tensor -> file.
#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl HfDir {
    /// Opens `dir`: maps `model.safetensors`, or every shard named by
    /// `model.safetensors.index.json`, and validates their headers. Every
    /// tensor the index names must be present in its shard.
    pub fn open(dir: &Path) -> Result<HfDir> {
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        let mut hf = HfDir { dir: dir.to_path_buf(), shards: Vec::new(), tensors: HashMap::new() };
        if single.is_file() {
            let shard = Shard::open(&single)?;
            hf.tensors = shard.entries(0)?;
            hf.shards.push(shard);
        } else if index.is_file() {
            hf.open_sharded(&index)?;
        } else {
            return Err(Error::Format {
                path: dir.to_path_buf(),
                format: "Hugging Face directory",
                what: format!("neither {SINGLE_FILE} nor {INDEX_FILE} is present"),
            });
        }
        Ok(hf)
    }

    fn open_sharded(&mut self, index_path: &Path) -> Result<()> {
        let bad_index =
            |what: String| Error::Format { path: index_path.to_path_buf(), format: "safetensors index", what };
        let bytes = read_file(index_path)?;
        let index: ShardIndex = serde_json::from_slice(&bytes).map_err(|e| bad_index(e.to_string()))?;
        if index.weight_map.is_empty() {
            return Err(bad_index("weight_map is empty".to_string()));
        }
        // File name -> (shard number, the tensors that file holds).
        let mut by_file: HashMap<&str, (usize, HashMap<String, TensorEntry>)> = HashMap::new();
        for (tensor, file) in &index.weight_map {
            // Shards live in the directory itself; refuse anything that could
            // point elsewhere.
            if !is_plain_file_name(file) {
                return Err(bad_index(format!("tensor `{tensor}` maps to `{file}`, which is not a plain file name")));
            }
            let (shard_no, entries) = match by_file.entry(file.as_str()) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => {
                    let shard_no = self.shards.len();
                    let shard = Shard::open(&self.dir.join(file))?;
                    let entries = shard.entries(shard_no)?;
                    self.shards.push(shard);
                    new.insert((shard_no, entries))
                }
            };
            let entry = entries.remove(tensor).ok_or_else(|| Error::MissingTensor {
                path: self.shards[*shard_no].path.clone(),
                tensor: tensor.clone(),
            })?;
            self.tensors.insert(tensor.clone(), entry);
        }
        Ok(())
    }

    /// The parsed `config.json`.
    pub fn config_json(&self) -> Result<serde_json::Value> {
        let path = self.dir.join(CONFIG_FILE);
        let bytes = read_file(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Format { path, format: "JSON", what: e.to_string() })
    }

    /// `tokenizer.json`, when the directory has one.
    pub fn tokenizer_json_path(&self) -> Option<PathBuf> {
        existing_file(self.dir.join(TOKENIZER_FILE))
    }

    /// `tokenizer_config.json` (special tokens, chat template), when present.
    pub fn tokenizer_config_path(&self) -> Option<PathBuf> {
        existing_file(self.dir.join(TOKENIZER_CONFIG_FILE))
    }

    fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor { path: self.dir.clone(), tensor: name.to_string() })
    }
}

impl Shard {
    fn open(path: &Path) -> Result<Shard> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only and lives as long as `Shard`. As
        // with every file mapping, another process truncating or rewriting
        // the file meanwhile is outside what we can guard against; model
        // files are not modified while a model is loaded.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Ok(Shard { path: path.to_path_buf(), mmap })
    }

    /// Validates the header (via `safetensors`, which checks that the
    /// offsets tile the data section exactly and that sizes match
    /// shape x dtype) and returns every tensor's absolute byte range.
    fn entries(&self, shard_no: usize) -> Result<HashMap<String, TensorEntry>> {
        // `read_metadata` is the validating half of `SafeTensors::deserialize`;
        // it also returns the header length, which turns the relative data
        // offsets into positions in the mapping.
        let (header_len, metadata) = SafeTensors::read_metadata(&self.mmap).map_err(|e| Error::Format {
            path: self.path.clone(),
            format: "safetensors",
            what: e.to_string(),
        })?;
        let data_start = 8 + header_len;
        Ok(metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (begin, end) = info.data_offsets;
                let entry = TensorEntry {
                    shard: shard_no,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + begin,
                    end: data_start + end,
                };
                (name, entry)
            })
            .collect())
    }
}

impl TensorSource for HfDir {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.shape.clone())
    }

    fn load_f32(&self, name: &str) -> Result<HostTensor> {
        let entry = self.entry(name)?;
        let shard = &self.shards[entry.shard];
        let bytes = shard.mmap.get(entry.start..entry.end).ok_or_else(|| Error::Format {
            path: shard.path.clone(),
            format: "safetensors",
            what: format!("tensor `{name}` lies outside the file"),
        })?;
        let data: Vec<f32> = match entry.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(Error::TensorDtype {
                    path: shard.path.clone(),
                    tensor: name.to_string(),
                    dtype: other.to_string(),
                })
            }
        };
        Ok(HostTensor { shape: entry.shape.clone(), data })
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn existing_file(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

/// A name with no directory part: `model-00001-of-00002.safetensors`.
fn is_plain_file_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// A tiny safetensors file holding `tensors` (name, dtype, shape, bytes).
    fn safetensors_bytes(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(&str, TensorView<'_>)> = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                (*name, TensorView::new(*dtype, shape.clone(), data).expect("consistent view"))
            })
            .collect();
        safetensors::serialize(views, None).expect("serialize")
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).expect("write test file");
    }

    /// Two shards: `a` and `b` in the first, `c` in the second.
    fn sharded_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s1 = safetensors_bytes(&[
            ("a", Dtype::F32, vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
            ("b", Dtype::F32, vec![3], f32_bytes(&[5.0, 6.0, 7.0])),
        ]);
        let s2 = safetensors_bytes(&[("c", Dtype::F32, vec![1, 2], f32_bytes(&[8.0, 9.0]))]);
        write(tmp.path(), "model-00001-of-00002.safetensors", &s1);
        write(tmp.path(), "model-00002-of-00002.safetensors", &s2);
        write(
            tmp.path(),
            INDEX_FILE,
            br#"{"metadata": {"total_size": 36}, "weight_map": {
                "a": "model-00001-of-00002.safetensors",
                "b": "model-00001-of-00002.safetensors",
                "c": "model-00002-of-00002.safetensors"}}"#,
        );
        tmp
    }

    #[test]
    fn single_file_converts_every_float_type() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let values = [1.0f32, -2.5, 0.375, 65504.0];
        let f16: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let bf16: Vec<u8> = values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
        let file = safetensors_bytes(&[
            ("w.f32", Dtype::F32, vec![2, 2], f32_bytes(&values)),
            ("w.f16", Dtype::F16, vec![4], f16),
            ("w.bf16", Dtype::BF16, vec![1, 4], bf16),
        ]);
        write(tmp.path(), SINGLE_FILE, &file);
        let hf = HfDir::open(tmp.path()).expect("open");

        let t = hf.load_f32("w.f32").expect("f32");
        assert_eq!(t, HostTensor { shape: vec![2, 2], data: values.to_vec() });
        assert_eq!(hf.load_f32("w.f16").expect("f16").data, values.to_vec());
        // bf16 keeps 8 mantissa bits: 65504 rounds to 65536.
        let t = hf.load_f32("w.bf16").expect("bf16");
        assert_eq!(t.shape, vec![1, 4]);
        assert_eq!(t.data, vec![1.0, -2.5, 0.375, 65536.0]);
        assert_eq!(hf.shape("w.f16").expect("shape"), vec![4]);
        assert!(hf.contains("w.f32") && !hf.contains("w.f64"));
        assert_eq!(hf.path(), tmp.path());
    }

    #[test]
    fn sharded_index_maps_each_shard_once() {
        let tmp = sharded_dir();
        let hf = HfDir::open(tmp.path()).expect("open");
        assert_eq!(hf.shards.len(), 2);
        assert_eq!(hf.load_f32("a").expect("a").data, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(hf.load_f32("b").expect("b").data, vec![5.0, 6.0, 7.0]);
        let c = hf.load_f32("c").expect("c");
        assert_eq!((c.shape, c.data), (vec![1, 2], vec![8.0, 9.0]));
    }

    #[test]
    fn missing_shard_is_an_io_error_naming_it() {
        let tmp = sharded_dir();
        std::fs::remove_file(tmp.path().join("model-00002-of-00002.safetensors")).expect("rm");
        match HfDir::open(tmp.path()) {
            Err(Error::Io { path, .. }) => {
                assert!(path.ends_with("model-00002-of-00002.safetensors"), "{path:?}")
            }
            other => panic!("expected Io error, got {other:?}"),
        }
    }

    #[test]
    fn weight_map_naming_absent_tensor_is_missing_tensor() {
        let tmp = sharded_dir();
        write(
            tmp.path(),
            INDEX_FILE,
            br#"{"weight_map": {"a": "model-00001-of-00002.safetensors",
                                "zz": "model-00002-of-00002.safetensors"}}"#,
        );
        match HfDir::open(tmp.path()) {
            Err(Error::MissingTensor { path, tensor }) => {
                assert_eq!(tensor, "zz");
                assert!(path.ends_with("model-00002-of-00002.safetensors"), "{path:?}");
            }
            other => panic!("expected MissingTensor, got {other:?}"),
        }
    }

    #[test]
    fn index_that_escapes_the_directory_is_refused() {
        let tmp = sharded_dir();
        write(tmp.path(), INDEX_FILE, br#"{"weight_map": {"a": "../model.safetensors"}}"#);
        assert!(matches!(HfDir::open(tmp.path()), Err(Error::Format { format: "safetensors index", .. })));
    }

    #[test]
    fn bad_index_json_is_a_format_error() {
        let tmp = sharded_dir();
        for bad in [&b"{\"weight_map\": {\"a\": "[..], b"[]", b"{\"weight_map\": {}}"] {
            write(tmp.path(), INDEX_FILE, bad);
            match HfDir::open(tmp.path()) {
                Err(Error::Format { path, format: "safetensors index", .. }) => {
                    assert!(path.ends_with(INDEX_FILE))
                }
                other => panic!("expected index Format error, got {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_file_is_a_format_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = safetensors_bytes(&[("a", Dtype::F32, vec![4], f32_bytes(&[1.0; 4]))]);
        for len in [0, 5, 8, 20, file.len() - 1] {
            write(tmp.path(), SINGLE_FILE, &file[..len]);
            match HfDir::open(tmp.path()) {
                Err(Error::Format { path, format: "safetensors", .. }) => {
                    assert!(path.ends_with(SINGLE_FILE))
                }
                other => panic!("truncated to {len}: expected Format error, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_header_json_is_a_format_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let header = br#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&[0; 4]);
        write(tmp.path(), SINGLE_FILE, &file);
        assert!(matches!(HfDir::open(tmp.path()), Err(Error::Format { format: "safetensors", .. })));
    }

    #[test]
    fn integer_tensor_is_a_dtype_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = safetensors_bytes(&[("ids", Dtype::I32, vec![2], vec![0; 8])]);
        write(tmp.path(), SINGLE_FILE, &file);
        let hf = HfDir::open(tmp.path()).expect("open");
        match hf.load_f32("ids") {
            Err(Error::TensorDtype { tensor, dtype, .. }) => {
                assert_eq!((tensor.as_str(), dtype.as_str()), ("ids", "I32"))
            }
            other => panic!("expected TensorDtype, got {other:?}"),
        }
        assert!(matches!(hf.load_f32("nope"), Err(Error::MissingTensor { .. })));
        assert!(matches!(hf.shape("nope"), Err(Error::MissingTensor { .. })));
    }

    #[test]
    fn directory_without_weights_is_a_format_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(matches!(HfDir::open(tmp.path()), Err(Error::Format { format: "Hugging Face directory", .. })));
    }

    #[test]
    fn config_and_tokenizer_files() {
        let tmp = sharded_dir();
        let hf = HfDir::open(tmp.path()).expect("open");
        assert!(matches!(hf.config_json(), Err(Error::Io { .. })));
        assert_eq!((hf.tokenizer_json_path(), hf.tokenizer_config_path()), (None, None));

        write(tmp.path(), CONFIG_FILE, b"{\"hidden_size\": 64,");
        match hf.config_json() {
            Err(Error::Format { path, format: "JSON", .. }) => assert!(path.ends_with(CONFIG_FILE)),
            other => panic!("expected JSON Format error, got {other:?}"),
        }
        write(tmp.path(), CONFIG_FILE, b"{\"hidden_size\": 64}");
        assert_eq!(hf.config_json().expect("config")["hidden_size"], 64);

        write(tmp.path(), TOKENIZER_FILE, b"{}");
        write(tmp.path(), TOKENIZER_CONFIG_FILE, b"{}");
        assert_eq!(hf.tokenizer_json_path(), Some(tmp.path().join(TOKENIZER_FILE)));
        assert_eq!(hf.tokenizer_config_path(), Some(tmp.path().join(TOKENIZER_CONFIG_FILE)));
    }
}
