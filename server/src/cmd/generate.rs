//! `graft generate`: greedy generation from a prompt. The generated text is
//! streamed to stdout as it is decoded (end-of-sequence tokens are not
//! printed); a one-line stats summary goes to
//! stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use graft_engine::decode::GenerateParams;
use graft_engine::tokenizer::ChatMessage;
use graft_engine::{Engine, EngineOptions};

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
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let model_path = crate::resolve_model(args.model)?;
    let mut engine = Engine::load(&model_path, &EngineOptions::default())
        .with_context(|| format!("loading {}", model_path.display()))?;
    let tokenizer = engine.tokenizer();
    let (text, add_bos) = if args.chat {
        let messages = [ChatMessage { role: "user".into(), content: args.prompt.clone() }];
        // The template writes its own BOS where the model wants one.
        (tokenizer.apply_chat_template(&messages, true)?, false)
    } else {
        (args.prompt.clone(), true)
    };
    let prompt = tokenizer.encode(&text, add_bos)?;
    let params = GenerateParams { max_tokens: args.max_tokens, stop_ids: tokenizer.eos_ids().to_vec() };

    let eos = params.stop_ids.clone();
    let tokenizer = std::sync::Arc::clone(engine.tokenizer());
    let mut stream = tokenizer.decode_stream();
    let mut stdout = std::io::stdout().lock();
    let mut print_error = None;
    let generation = engine.generate(&prompt, &params, |token| {
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
    })?;
    if let Some(err) = print_error {
        return Err(err.into());
    }
    writeln!(stdout)?;
    let s = &generation.stats;
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

