//! The prompt format of model apply, in one place: the apply fine-tune
//! trains on exactly what [`render`] produces and [`OUTPUT_END`] closes.
//!
//! A region prompt is a chat (the model's own template) of a fixed system
//! message and one user message, then the assistant's turn opened with
//! [`OUTPUT_START`]:
//!
//! ```text
//! [system] SYSTEM
//! [user]   Apply an edit to a {language} file. The file:
//!          <file>                      (or <file lines="A-B of N"> for a window)
//!          {the file, or a window of whole lines around the region}
//!          </file>
//!          ----- the stable prefix ends here (the same for every region of
//!                the same file: its KV blocks are reused) -----
//!          Rewrite lines {A}-{B} of the file:
//!          <region>
//!          {the region's original lines}
//!          </region>
//!          The edit to apply (comments like `... existing code ...` stand for unchanged code):
//!          <edit>
//!          {the snippet's pieces for this region, markers as written}
//!          </edit>
//!          Instruction: {instruction}      (only when the agent gave one)
//!          Output the region with the edit applied, ...
//! [assistant] <region>
//!          {the new region}</region>
//! ```
//!
//! Texts are given with `\n` line endings (the caller restores the file's
//! own); every embedded text ends with a newline, so the closing tags start
//! lines. Line numbers are 1-based, inclusive.

use std::ops::Range;

use crate::error::Result;
use crate::tokenizer::{ChatMessage, Tokenizer};

/// The system message.
pub const SYSTEM: &str = "You are graft, a precise code-editing tool. You apply an edit snippet to one region of \
a file and output the region's new text exactly, keeping every line the edit does not change, and nothing else.";

/// Opens the model's output (fed as part of the prompt).
pub const OUTPUT_START: &str = "<region>\n";

/// Closes the model's output; the model then ends its turn.
pub const OUTPUT_END: &str = "</region>";

/// Separates the stable prefix from the rest while rendering the template;
/// never part of a prompt.
const SPLIT: &str = "\u{1}graft-split\u{1}";

/// What one region prompt says.
#[derive(Debug, Clone)]
pub struct RegionPrompt<'a> {
    /// The language name (`rust`...), or `None` for an unknown language.
    pub language: Option<&'a str>,
    /// The file, or the window of it given as context.
    pub context: &'a str,
    /// The window's lines (0-based, end exclusive) and the file's line
    /// count, when the context is not the whole file.
    pub window: Option<(Range<usize>, usize)>,
    /// The original lines to rewrite (0-based, end exclusive) and their text.
    pub region_lines: Range<usize>,
    pub region: &'a str,
    /// The snippet's pieces for this region, markers included.
    pub edit: &'a str,
    pub instruction: Option<&'a str>,
}

/// A rendered prompt as token ids: `stable` (header and file context),
/// then `rest` (region, edit, instruction, the opened output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTokens {
    pub stable: Vec<u32>,
    pub rest: Vec<u32>,
}

impl PromptTokens {
    pub fn len(&self) -> usize {
        self.stable.len() + self.rest.len()
    }

    pub fn joined(&self) -> Vec<u32> {
        let mut all = Vec::with_capacity(self.len());
        all.extend_from_slice(&self.stable);
        all.extend_from_slice(&self.rest);
        all
    }
}

/// The prompt's text: (stable prefix, rest).
pub fn render_text(tokenizer: &Tokenizer, prompt: &RegionPrompt<'_>) -> Result<(String, String)> {
    let language = prompt.language.unwrap_or("source");
    let file_tag = match &prompt.window {
        Some((lines, total)) => format!("<file lines=\"{}-{} of {total}\">", lines.start + 1, lines.end),
        None => "<file>".to_string(),
    };
    let stable =
        format!("Apply an edit to a {language} file. The file:\n{file_tag}\n{}</file>\n", with_newline(prompt.context));
    let mut rest = format!(
        "Rewrite lines {}-{} of the file:\n<region>\n{}</region>\n\
         The edit to apply (comments like `... existing code ...` stand for unchanged code):\n<edit>\n{}</edit>\n",
        prompt.region_lines.start + 1,
        prompt.region_lines.end,
        with_newline(prompt.region),
        with_newline(prompt.edit)
    );
    if let Some(instruction) = prompt.instruction.map(str::trim).filter(|i| !i.is_empty()) {
        rest.push_str(&format!("Instruction: {instruction}\n"));
    }
    rest.push_str("Output the region with the edit applied, between <region> and </region>, and nothing else.");
    let user = format!("{stable}{SPLIT}{rest}");
    let rendered = if tokenizer.has_chat_template() {
        let messages = [ChatMessage::new("system", SYSTEM), ChatMessage::new("user", user)];
        tokenizer.apply_chat_template(&messages, true)?
    } else {
        format!("{SYSTEM}\n\n{user}\n\n")
    };
    let (head, tail) = rendered.split_once(SPLIT).unwrap_or((rendered.as_str(), ""));
    Ok((head.to_string(), format!("{tail}{OUTPUT_START}")))
}

/// The prompt as token ids, stable prefix and rest tokenized apart (so the
/// prefix's ids do not depend on the region).
pub fn render(tokenizer: &Tokenizer, prompt: &RegionPrompt<'_>) -> Result<PromptTokens> {
    let (stable, rest) = render_text(tokenizer, prompt)?;
    Ok(PromptTokens { stable: tokenizer.encode(&stable, true)?, rest: tokenizer.encode(&rest, false)? })
}

/// The stable prefix of every region prompt of `file` when the whole file
/// is the context: what a warm-up puts in the prefix cache before any
/// apply. The region prompts of the same file start with exactly these ids.
pub fn stable_prefix(tokenizer: &Tokenizer, language: Option<&str>, file: &str) -> Result<Vec<u32>> {
    let file = file.replace("\r\n", "\n");
    let spec = RegionPrompt {
        language,
        context: &file,
        window: None,
        region_lines: 0..0,
        region: "",
        edit: "",
        instruction: None,
    };
    let (stable, _) = render_text(tokenizer, &spec)?;
    tokenizer.encode(&stable, true)
}

/// The output the model should write for a region whose new text is
/// `region`: the text, then [`OUTPUT_END`].
pub fn expected_output(region: &str) -> String {
    format!("{}{OUTPUT_END}", with_newline(region))
}

/// The region text of a model output, `None` when [`OUTPUT_END`] is missing
/// (the output was cut short).
pub fn parse_output(output: &str) -> Option<&str> {
    output.find(OUTPUT_END).map(|end| &output[..end])
}

/// `text` ending with a newline (unless empty).
fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_round_trips() {
        assert_eq!(parse_output(&expected_output("a\nb\n")), Some("a\nb\n"));
        assert_eq!(parse_output(&expected_output("a")), Some("a\n"));
        assert_eq!(parse_output(&expected_output("")), Some(""));
        assert_eq!(parse_output("a\nb"), None);
    }
}
