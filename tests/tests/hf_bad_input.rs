//! Corrupt Hugging Face model directories give typed errors naming the file,
//! never a panic: truncated and bit-flipped safetensors files, missing and
//! damaged shards, a broken index and a broken config.json, all made from the
//! tiny fixture models in fixtures/models/.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use graft_engine::model::hf::HfDir;
use graft_engine::model::TensorSource;
use graft_engine::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models").join(name)
}

/// A writable copy of a fixture model directory.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for entry in fs::read_dir(fixture(name)).expect("fixture dir") {
        let path = entry.expect("dir entry").path();
        let file_name = path.file_name().expect("file name");
        fs::copy(&path, tmp.path().join(file_name)).expect("copy fixture file");
    }
    tmp
}

/// Tensor names and the header end (8 + header length) of a safetensors file.
fn header(bytes: &[u8]) -> (Vec<String>, usize) {
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).expect("header");
    let names = json.as_object().expect("header object").keys().filter(|k| *k != "__metadata__").cloned().collect();
    (names, 8 + len)
}

fn write_at(path: &Path, offset: usize, byte: u8) {
    let mut file = OpenOptions::new().write(true).open(path).expect("open for write");
    file.seek(SeekFrom::Start(offset as u64)).expect("seek");
    file.write_all(&[byte]).expect("write byte");
}

/// Opens `dir` and loads every tensor; returns the first error. Panics only
/// if the engine does.
fn open_and_load(dir: &Path, names: &[String]) -> Result<(), Error> {
    let hf = HfDir::open(dir)?;
    for name in names {
        hf.load_f32(name)?;
    }
    Ok(())
}

fn assert_format_error_naming(result: Result<(), Error>, file: &str, what: &str) {
    match result {
        Err(err @ Error::Format { .. }) => {
            assert!(err.to_string().contains(file), "{what}: error does not name {file}: {err}")
        }
        other => panic!("{what}: expected a Format error naming {file}, got {other:?}"),
    }
}

#[test]
fn fixtures_open_and_load_with_expected_shapes() {
    for (name, lm_head) in [("tiny-llama", false), ("tiny-qwen2", true), ("tiny-qwen3", false)] {
        let hf = HfDir::open(&fixture(name)).expect("fixture opens");
        let embed = hf.load_f32("model.embed_tokens.weight").expect("embeddings");
        assert_eq!(embed.shape, vec![512, 64], "{name}");
        assert!(embed.data.iter().all(|v| v.is_finite()), "{name}");
        assert_eq!(hf.contains("lm_head.weight"), lm_head, "{name}: tied embeddings");
        assert!(hf.config_json().expect("config")["hidden_size"] == 64, "{name}");
        assert!(hf.tokenizer_json_path().is_some() && hf.tokenizer_config_path().is_some());
    }
    let qwen2 = HfDir::open(&fixture("tiny-qwen2")).expect("qwen2");
    let bias = qwen2.load_f32("model.layers.2.self_attn.k_proj.bias").expect("bias");
    assert_eq!(bias.shape, vec![32]);
    assert!(bias.data.iter().any(|&v| v != 0.0), "biases are random, not zero");
    let qwen3 = HfDir::open(&fixture("tiny-qwen3")).expect("qwen3");
    assert_eq!(qwen3.shape("model.layers.0.self_attn.q_proj.weight").expect("q"), vec![128, 64]);
    assert_eq!(qwen3.shape("model.layers.0.self_attn.q_norm.weight").expect("q_norm"), vec![32]);
}

#[test]
fn truncation_at_any_offset_is_a_format_error() {
    let tmp = copy_fixture("tiny-llama");
    let path = tmp.path().join("model.safetensors");
    let bytes = fs::read(&path).expect("read");
    let (_, header_end) = header(&bytes);
    // Every offset through the header and a little past it, then a stride
    // through the data, and the last byte. Longest first, so each cut is a
    // plain set_len of the file as the previous cut left it.
    let mut cuts: Vec<usize> = (0..header_end + 64).collect();
    cuts.extend((header_end + 64..bytes.len()).step_by(997));
    cuts.push(bytes.len() - 1);
    cuts.sort_unstable_by(|a, b| b.cmp(a));
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    for len in cuts {
        file.set_len(len as u64).expect("truncate");
        let result = HfDir::open(tmp.path()).map(drop);
        assert_format_error_naming(result, "model.safetensors", &format!("cut at {len}"));
    }
}

#[test]
fn every_inverted_header_byte_is_a_format_error() {
    let tmp = copy_fixture("tiny-llama");
    let path = tmp.path().join("model.safetensors");
    let bytes = fs::read(&path).expect("read");
    let (_, header_end) = header(&bytes);
    // Inverting a byte of the length prefix breaks the length; inverting a
    // byte of the (ASCII) JSON makes it invalid UTF-8. Either must be caught.
    for (offset, &byte) in bytes.iter().enumerate().take(header_end) {
        write_at(&path, offset, !byte);
        let result = HfDir::open(tmp.path()).map(drop);
        assert_format_error_naming(result, "model.safetensors", &format!("byte {offset}"));
        write_at(&path, offset, byte);
    }
}

#[test]
fn single_bit_flips_anywhere_never_panic() {
    let tmp = copy_fixture("tiny-llama");
    let path = tmp.path().join("model.safetensors");
    let bytes = fs::read(&path).expect("read");
    let (names, header_end) = header(&bytes);
    let offsets = (0..header_end).chain((header_end..bytes.len()).step_by(4093));
    for (i, offset) in offsets.enumerate() {
        let flipped = bytes[offset] ^ (1 << (i % 8));
        write_at(&path, offset, flipped);
        // A flip in the data (or in a tensor name) may leave a valid file;
        // anything else must be an error. Neither may panic.
        if let Err(err) = open_and_load(tmp.path(), &names) {
            assert!(
                matches!(err, Error::Format { .. } | Error::MissingTensor { .. }),
                "byte {offset}: unexpected error kind {err:?}"
            );
        }
        write_at(&path, offset, bytes[offset]);
    }
    open_and_load(tmp.path(), &names).expect("restored file loads");
}

#[test]
fn missing_shard_is_an_io_error_naming_it() {
    for shard in 1..=3 {
        let tmp = copy_fixture("tiny-qwen2");
        let file = format!("model-0000{shard}-of-00003.safetensors");
        fs::remove_file(tmp.path().join(&file)).expect("remove shard");
        match HfDir::open(tmp.path()) {
            Err(err @ Error::Io { .. }) => assert!(err.to_string().contains(&file), "{err}"),
            other => panic!("{file} removed: expected Io error, got {other:?}"),
        }
    }
}

#[test]
fn truncated_shard_is_a_format_error_naming_it() {
    let tmp = copy_fixture("tiny-qwen2");
    let file = "model-00002-of-00003.safetensors";
    let path = tmp.path().join(file);
    let len = fs::metadata(&path).expect("metadata").len();
    let handle = OpenOptions::new().write(true).open(&path).expect("open");
    for cut in [len - 1, len / 2, 200, 9, 3, 0] {
        handle.set_len(cut).expect("truncate");
        assert_format_error_naming(HfDir::open(tmp.path()).map(drop), file, &format!("cut {cut}"));
    }
}

#[test]
fn truncated_index_is_a_format_error() {
    let tmp = copy_fixture("tiny-qwen2");
    let path = tmp.path().join("model.safetensors.index.json");
    let text = fs::read(&path).expect("read index");
    let last_brace = text.iter().rposition(|&b| b == b'}').expect("closing brace");
    for len in (0..last_brace).step_by(7) {
        fs::write(&path, &text[..len]).expect("write");
        let result = HfDir::open(tmp.path()).map(drop);
        assert_format_error_naming(result, "model.safetensors.index.json", &format!("cut {len}"));
    }
}

#[test]
fn index_pointing_at_the_wrong_shard_is_missing_tensor() {
    let tmp = copy_fixture("tiny-qwen2");
    let path = tmp.path().join("model.safetensors.index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&path).expect("read")).expect("index json");
    let map = index["weight_map"].as_object_mut().expect("weight_map");
    let shard = map["lm_head.weight"].as_str().expect("shard name").to_string();
    let other =
        if shard.contains("00001") { "model-00002-of-00003.safetensors" } else { "model-00001-of-00003.safetensors" };
    map.insert("lm_head.weight".into(), other.into());
    fs::write(&path, serde_json::to_vec(&index).expect("serialize")).expect("write");
    match HfDir::open(tmp.path()) {
        Err(Error::MissingTensor { path, tensor }) => {
            assert_eq!(tensor, "lm_head.weight");
            assert!(path.ends_with(other), "{path:?}");
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn broken_config_json_is_a_format_error_naming_it() {
    let tmp = copy_fixture("tiny-qwen3");
    let path = tmp.path().join("config.json");
    let text = fs::read(&path).expect("read config");
    let hf = HfDir::open(tmp.path()).expect("open");
    let last_brace = text.iter().rposition(|&b| b == b'}').expect("closing brace");
    for len in (0..last_brace).step_by(5) {
        File::create(&path).and_then(|mut f| f.write_all(&text[..len])).expect("write");
        assert_format_error_naming(hf.config_json().map(drop), "config.json", &format!("cut {len}"));
    }
    fs::remove_file(&path).expect("remove");
    assert!(matches!(hf.config_json(), Err(Error::Io { .. })));
}
