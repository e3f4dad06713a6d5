//! Models that load but do not make sense: an unknown architecture, a
//! missing or mis-shaped tensor, a tokenizer of another model. Each is a
//! typed error naming the file and the tensor or key, never a panic.

use std::path::{Path, PathBuf};

use graft_engine::{Engine, EngineOptions, Error};
use graft_tests::fixtures_dir;
use serde_json::Value;

/// A scratch copy of a tiny fixture model whose config.json `edit` changes.
fn tiny_llama_copy(edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, PathBuf) {
    let source = fixtures_dir().join("models").join("tiny-llama");
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny-llama");
    std::fs::create_dir(&model).expect("mkdir");
    for entry in std::fs::read_dir(&source).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("file name");
        std::fs::copy(&path, model.join(name)).expect("copy");
    }
    let config_path = model.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).expect("read")).expect("json");
    edit(&mut config);
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    (dir, model)
}

fn load_error(path: &Path) -> Error {
    match Engine::load(path, &EngineOptions::default()) {
        Ok(_) => panic!("{} loaded although it is broken", path.display()),
        Err(err) => err,
    }
}

#[test]
fn unknown_architecture_is_named() {
    let (_dir, model) = tiny_llama_copy(|c| c["architectures"] = serde_json::json!(["GPTNeoXForCausalLM"]));
    let err = load_error(&model);
    assert!(matches!(err, Error::UnknownArchitecture { ref arch, .. } if arch == "GPTNeoXForCausalLM"), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn a_layer_the_weights_lack_is_a_missing_tensor() {
    let (_dir, model) = tiny_llama_copy(|c| {
        let layers = c["num_hidden_layers"].as_u64().expect("layers");
        c["num_hidden_layers"] = serde_json::json!(layers + 1);
    });
    let err = load_error(&model);
    assert!(matches!(err, Error::MissingTensor { ref tensor, .. } if tensor.starts_with("model.layers.")), "{err}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let (_dir, model) = tiny_llama_copy(|c| {
        let size = c["intermediate_size"].as_u64().expect("size");
        c["intermediate_size"] = serde_json::json!(size * 2);
    });
    let err = load_error(&model);
    match &err {
        Error::TensorShape { tensor, expected, found, .. } => {
            assert!(tensor.contains("mlp."), "{err}");
            assert_ne!(expected, found);
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn a_tokenizer_of_another_model_is_a_mismatch() {
    let (_dir, model) = tiny_llama_copy(|_| {});
    // The SmolLM2 tokenizer (49152 tokens) next to a 512-token model.
    let smollm2 = fixtures_dir().join("tokenizer").join("smollm2");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(smollm2.join(file), model.join(file)).expect("copy");
    }
    let err = load_error(&model);
    assert!(matches!(err, Error::TokenizerMismatch { .. }), "{err}");
    assert!(err.to_string().contains("tiny-llama"), "{err}");
}

#[test]
fn a_config_that_is_not_json_names_the_file() {
    let (_dir, model) = tiny_llama_copy(|_| {});
    std::fs::write(model.join("config.json"), "{ not json").expect("write");
    let err = load_error(&model);
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn a_missing_path_is_an_io_error_naming_it() {
    let err = load_error(Path::new("/nonexistent/graft-model"));
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("/nonexistent/graft-model"), "{err}");
}
