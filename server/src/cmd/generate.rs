//! `graft generate`: greedy generation from a prompt, optionally with
//! speculative decoding (`--draft`), which never changes the output. The
//! generated text is streamed to stdout as it is decoded (end-of-sequence
//! tokens are not printed); a one-line stats summary goes to stderr, or
//! with `--stats-json` one JSON object of every figure.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use graft_engine::decode::draft::DEFAULT_MIN_NGRAM;
use graft_engine::decode::width::DEFAULT_MAX_WIDTH;
use graft_engine::decode::{Drafter, GenerateParams, GenerationStats, NoDraft, PromptLookup, StopReason, TextDraft};
use graft_engine::tokenizer::ChatMessage;

use super::device::{load_engine, parse_device, DeviceArg};

#[derive(Args)]
pub struct GenerateArgs {
    /// A GGUF file or a Hugging Face model directory (default: the default
    /// model, fetched on first use).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Where speculative drafts come from: `none` (one token per step),
    /// `lookup` (n-grams of the prompt and the output) or `text:FILE` (the tokens of FILE).
    #[arg(long, default_value = "none", value_parser = parse_draft)]
    draft: DraftSource,
    /// Upper bound on draft tokens verified per step (the width adapts).
    #[arg(long, default_value_t = DEFAULT_MAX_WIDTH)]
    max_width: usize,
    /// Print the stats as one JSON object on stderr instead of the summary
    /// line.
    #[arg(long)]
    stats_json: bool,
    /// auto (the GPU when this build has CUDA and one works), cpu, cuda or
    /// cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
}

/// The `--draft` choice.
#[derive(Debug, Clone)]
pub enum DraftSource {
    None,
    Lookup,
    Text(PathBuf),
}

fn parse_draft(value: &str) -> Result<DraftSource, String> {
    match value {
        "none" => Ok(DraftSource::None),
        "lookup" => Ok(DraftSource::Lookup),
        _ => match value.strip_prefix("text:") {
            Some(path) if !path.is_empty() => Ok(DraftSource::Text(PathBuf::from(path))),
            _ => Err(format!("`{value}`: expected none, lookup or text:FILE")),
        },
    }
}

/// Every figure of a generation as one JSON object.
pub fn stats_json(stats: &GenerationStats, stop: StopReason) -> serde_json::Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    serde_json::json!({
        "prompt_tokens": stats.prompt_tokens,
        "output_tokens": stats.output_tokens,
        "steps": stats.steps,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "accepted_per_step": stats.accepted_per_step(),
        "accepted_histogram_log2": stats.accepted_histogram,
        "tokens_per_step": stats.tokens_per_step(),
        "prefill_ms": ms(stats.prefill),
        "decode_ms": ms(stats.decode),
        "draft_ms": ms(stats.draft),
        "forward_ms": ms(stats.forward),
        "rest_ms": ms(stats.rest()),
        "decode_tokens_per_second": stats.decode_tokens_per_second(),
        "stop": format!("{stop:?}"),
    })
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let model_path = crate::resolve_model(args.model)?;
    let mut engine = load_engine(&model_path, args.device)?;
    let tokenizer = engine.tokenizer();
    let (text, add_bos) = if args.chat {
        let messages = [ChatMessage { role: "user".into(), content: args.prompt.clone() }];
        // The template writes its own BOS where the model wants one.
        (tokenizer.apply_chat_template(&messages, true)?, false)
    } else {
        (args.prompt.clone(), true)
    };
    let prompt = tokenizer.encode(&text, add_bos)?;
    let params = GenerateParams::new(args.max_tokens, tokenizer.eos_ids().to_vec());

    let mut drafter: Box<dyn Drafter> = match &args.draft {
        DraftSource::None => Box::new(NoDraft),
        DraftSource::Lookup => Box::new(PromptLookup::new(std::slice::from_ref(&prompt), DEFAULT_MIN_NGRAM)),
        DraftSource::Text(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Box::new(TextDraft::new(tokenizer.encode(&text, false)?))
        }
    };

    let eos = params.stop_ids.clone();
    let tokenizer = std::sync::Arc::clone(engine.tokenizer());
    let mut stream = tokenizer.decode_stream();
    let mut stdout = std::io::stdout().lock();
    let mut print_error = None;
    let on_token = |token| {
        if eos.contains(&token) || print_error.is_some() {
            return;
        }
        match stream.step(token) {
            Ok(Some(text)) => {
                let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
            }
            Ok(None) => {}
            Err(err) => print_error = Some(err),
        }
    };
    let generation = match args.draft {
        DraftSource::None => engine.generate(&prompt, &params, on_token)?,
        _ => engine.generate_speculative(&prompt, &params, drafter.as_mut(), args.max_width, on_token)?,
    };
    if let Some(err) = print_error {
        return Err(err.into());
    }
    writeln!(stdout)?;
    let s = &generation.stats;
    if args.stats_json {
        eprintln!("{}", stats_json(s, generation.stop));
        return Ok(());
    }
    eprintln!(
        "prompt {} tok, output {} tok, prefill {:.1} ms, decode {:.1} ms, {:.1} tok/s",
        s.prompt_tokens,
        s.output_tokens,
        s.prefill.as_secs_f64() * 1e3,
        s.decode.as_secs_f64() * 1e3,
        s.decode_tokens_per_second()
    );
    Ok(())
}
