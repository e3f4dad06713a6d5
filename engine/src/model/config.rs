//! The model configuration: architecture and hyper-parameters, read from a
//! Hugging Face `config.json` or from GGUF metadata, and validated once so the
//! backends can trust every dimension.

use std::path::Path;

use serde_json::Value;

use super::gguf::GgufFile;
use crate::error::{Error, Result};

/// The supported decoder-only architectures (all share the llama block shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2/3, SmolLM2: no biases, no q/k norm.
    Llama,
    /// Qwen2 / Qwen2.5: biases on the q, k and v projections.
    Qwen2,
    /// Qwen3: RMSNorm over each head of q and k before RoPE.
    Qwen3,
}

impl Architecture {
    fn parse(name: &str, path: &Path) -> Result<Self> {
        match name {
            "llama" | "LlamaForCausalLM" => Ok(Self::Llama),
            "qwen2" | "Qwen2ForCausalLM" => Ok(Self::Qwen2),
            "qwen3" | "Qwen3ForCausalLM" => Ok(Self::Qwen3),
            other => Err(Error::UnknownArchitecture { path: path.to_owned(), arch: other.to_owned() }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    /// Whether q/k/v projections carry a bias.
    pub fn has_qkv_bias(self) -> bool {
        self == Self::Qwen2
    }

    /// Whether q and k are RMS-normalised per head before RoPE.
    pub fn has_qk_norm(self) -> bool {
        self == Self::Qwen3
    }
}

/// How rotary position frequencies are rescaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (HF "linear").
    Linear {
        factor: f32,
    },
    /// Llama 3.x frequency-dependent scaling (HF "llama3").
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position: usize,
    },
}

/// Hyper-parameters of a model, validated by [`ModelConfig::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    pub max_position: usize,
    pub tie_word_embeddings: bool,
}

impl ModelConfig {
    /// Reads a Hugging Face `config.json` (already parsed). `path` names the
    /// file in errors.
    pub fn from_hf_json(json: &Value, path: &Path) -> Result<Self> {
        let key_str = |key: &str| -> Result<&str> {
            json.get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| Error::MissingKey { path: path.to_owned(), key: key.to_owned() })
        };
        let arch_name = match json.get("architectures").and_then(|a| a.get(0)).and_then(Value::as_str) {
            Some(name) => name,
            None => key_str("model_type")?,
        };
        let arch = Architecture::parse(arch_name, path)?;
        let usize_key = |key: &str| -> Result<usize> {
            let value =
                json.get(key).ok_or_else(|| Error::MissingKey { path: path.to_owned(), key: key.to_owned() })?;
            value.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| Error::BadKey {
                path: path.to_owned(),
                key: key.to_owned(),
                expected: "a non-negative integer".into(),
            })
        };
        let f32_key = |key: &str, default: f32| -> Result<f32> {
            match json.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_f64().map(|v| v as f32).ok_or_else(|| Error::BadKey {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    expected: "a number".into(),
                }),
            }
        };
        let hidden_size = usize_key("hidden_size")?;
        let num_heads = usize_key("num_attention_heads")?;
        let num_kv_heads = match json.get("num_key_value_heads") {
            None | Some(Value::Null) => num_heads,
            Some(_) => usize_key("num_key_value_heads")?,
        };
        let head_dim = match json.get("head_dim") {
            None | Some(Value::Null) => hidden_size.checked_div(num_heads).unwrap_or(0),
            Some(_) => usize_key("head_dim")?,
        };
        let rope_theta = match json.get("rope_theta") {
            Some(_) => f32_key("rope_theta", 10_000.0)?,
            // transformers >= 5 nests the base inside `rope_parameters`.
            None => match json.get("rope_parameters").and_then(|p| p.get("rope_theta")).and_then(Value::as_f64) {
                Some(theta) => theta as f32,
                None => 10_000.0,
            },
        };
        let scaling = json.get("rope_scaling").filter(|v| !v.is_null()).or_else(|| json.get("rope_parameters"));
        let config = Self {
            arch,
            vocab_size: usize_key("vocab_size")?,
            hidden_size,
            intermediate_size: usize_key("intermediate_size")?,
            num_layers: usize_key("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: f32_key("rms_norm_eps", 1e-6)?,
            rope_theta,
            rope_scaling: parse_hf_rope_scaling(scaling, path)?,
            max_position: usize_key("max_position_embeddings")?,
            tie_word_embeddings: json.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Reads the `<arch>.*` keys of a GGUF file. Whether the output head is
    /// tied is decided by the presence of `output.weight`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = gguf.path();
        let arch_name = gguf.architecture()?;
        let arch = Architecture::parse(arch_name, path)?;
        let key = |suffix: &str| format!("{arch_name}.{suffix}");
        let opt_u32 = |suffix: &str| -> Result<Option<u32>> {
            let k = key(suffix);
            if gguf.get(&k).is_some() {
                gguf.get_u32(&k).map(Some)
            } else {
                Ok(None)
            }
        };
        let hidden_size = gguf.get_u32(&key("embedding_length"))? as usize;
        let num_heads = gguf.get_u32(&key("attention.head_count"))? as usize;
        let num_kv_heads = opt_u32("attention.head_count_kv")?.map_or(num_heads, |v| v as usize);
        let head_dim = match opt_u32("attention.key_length")? {
            Some(v) => v as usize,
            None => hidden_size.checked_div(num_heads).unwrap_or(0),
        };
        let vocab_size = match opt_u32("vocab_size")? {
            Some(v) => v as usize,
            None => gguf.get_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_theta =
            if gguf.get(&key("rope.freq_base")).is_some() { gguf.get_f32(&key("rope.freq_base"))? } else { 10_000.0 };
        let rope_scaling = match gguf.get(&key("rope.scaling.type")) {
            None => RopeScaling::None,
            Some(_) => match gguf.get_str(&key("rope.scaling.type"))? {
                "none" => RopeScaling::None,
                "linear" => RopeScaling::Linear { factor: gguf.get_f32(&key("rope.scaling.factor"))? },
                other => {
                    return Err(Error::BadKey {
                        path: path.to_owned(),
                        key: key("rope.scaling.type"),
                        expected: format!("`none` or `linear` (found `{other}`)"),
                    })
                }
            },
        };
        let config = Self {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: gguf.get_u32(&key("feed_forward_length"))? as usize,
            num_layers: gguf.get_u32(&key("block_count"))? as usize,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta,
            rope_scaling,
            max_position: gguf.get_u32(&key("context_length"))? as usize,
            tie_word_embeddings: gguf.tensor_info("output.weight").is_none(),
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects configurations the backends cannot run (zero sizes, heads
    /// that do not divide, odd head dimensions for RoPE).
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, expected: &str| {
            Err(Error::BadKey { path: path.to_owned(), key: key.into(), expected: expected.into() })
        };
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position),
        ];
        for (key, value) in sizes {
            // 1 << 24 bounds every dimension far above any real model while
            // keeping products of two dimensions inside usize on every target.
            if value == 0 || value > 1 << 24 {
                return bad(key, "a positive size below 2^24");
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad("num_key_value_heads", "a divisor of num_attention_heads");
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", "an even number (RoPE rotates pairs)");
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps", "a positive number");
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad("rope_theta", "a positive number");
        }
        Ok(())
    }

    /// The inverse frequency of each rotated pair (`head_dim / 2` values),
    /// with the configured scaling applied, as transformers computes them.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        let base: Vec<f64> =
            (0..half).map(|i| 1.0 / (self.rope_theta as f64).powf((2 * i) as f64 / self.head_dim as f64)).collect();
        match self.rope_scaling {
            RopeScaling::None => base.iter().map(|&f| f as f32).collect(),
            RopeScaling::Linear { factor } => base.iter().map(|&f| (f / factor as f64) as f32).collect(),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
                let (factor, low, high) = (factor as f64, low_freq_factor as f64, high_freq_factor as f64);
                let old_len = original_max_position as f64;
                let low_freq_wavelen = old_len / low;
                let high_freq_wavelen = old_len / high;
                base.iter()
                    .map(|&freq| {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        let scaled = if wavelen > low_freq_wavelen { freq / factor } else { freq };
                        let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                        if medium {
                            let smooth = (old_len / wavelen - low) / (high - low);
                            ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                        } else {
                            scaled as f32
                        }
                    })
                    .collect()
            }
        }
    }

    /// Parameters in the weights (embedding counted once when tied).
    pub fn parameter_count(&self) -> usize {
        let (h, kv) = (self.hidden_size, self.num_kv_heads * self.head_dim);
        let q = self.num_heads * self.head_dim;
        let attn = h * q + 2 * h * kv + q * h;
        let mlp = 3 * h * self.intermediate_size;
        let layer = attn + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.num_layers * layer + h
    }
}

fn parse_hf_rope_scaling(scaling: Option<&Value>, path: &Path) -> Result<RopeScaling> {
    let Some(scaling) = scaling else { return Ok(RopeScaling::None) };
    let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        scaling.get(key).and_then(Value::as_f64).ok_or_else(|| Error::BadKey {
            path: path.to_owned(),
            key: format!("rope_scaling.{key}"),
            expected: "a number".into(),
        })
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor")? as f32 }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")? as f32,
            low_freq_factor: num("low_freq_factor")? as f32,
            high_freq_factor: num("high_freq_factor")? as f32,
            original_max_position: num("original_max_position_embeddings")? as usize,
        }),
        other => Err(Error::BadKey {
            path: path.to_owned(),
            key: "rope_scaling.rope_type".into(),
            expected: format!("default, linear or llama3 (found `{other}`)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "architectures": ["Qwen2ForCausalLM"], "vocab_size": 100, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "max_position_embeddings": 512, "tie_word_embeddings": false
        })
    }

    #[test]
    fn reads_hf_config_with_defaults() {
        let config = ModelConfig::from_hf_json(&base(), Path::new("config.json")).expect("valid config");
        assert_eq!(config.arch, Architecture::Qwen2);
        assert_eq!(config.head_dim, 16);
        assert_eq!(config.rope_scaling, RopeScaling::None);
        assert!(!config.tie_word_embeddings);
    }

    #[test]
    fn unknown_architecture_names_the_file_and_arch() {
        let mut json = base();
        json["architectures"] = json!(["MambaForCausalLM"]);
        let err = ModelConfig::from_hf_json(&json, Path::new("/m/config.json")).unwrap_err();
        assert!(matches!(err, Error::UnknownArchitecture { ref arch, .. } if arch == "MambaForCausalLM"), "{err}");
        assert!(err.to_string().contains("/m/config.json"));
    }

    #[test]
    fn heads_must_divide() {
        let mut json = base();
        json["num_key_value_heads"] = json!(3);
        let err = ModelConfig::from_hf_json(&json, Path::new("config.json")).unwrap_err();
        assert!(matches!(err, Error::BadKey { ref key, .. } if key == "num_key_value_heads"), "{err}");
    }

    #[test]
    fn missing_key_is_named() {
        let mut json = base();
        json.as_object_mut().map(|o| o.remove("hidden_size"));
        let err = ModelConfig::from_hf_json(&json, Path::new("config.json")).unwrap_err();
        assert!(matches!(err, Error::MissingKey { ref key, .. } if key == "hidden_size"), "{err}");
    }

    #[test]
    fn llama3_scaling_leaves_high_frequencies_and_divides_low_ones() {
        let mut json = base();
        json["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
        json["rope_theta"] = json!(10000.0);
        let config = ModelConfig::from_hf_json(&json, Path::new("config.json")).expect("valid config");
        let scaled = config.rope_inv_freq();
        let plain = ModelConfig { rope_scaling: RopeScaling::None, ..config.clone() }.rope_inv_freq();
        assert_eq!(scaled[0], plain[0], "the highest frequency is kept");
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12, "the lowest frequency is divided by the factor");
    }
}
