//! Chat templates: the Jinja template a model ships (GGUF
//! `tokenizer.chat_template`, or `chat_template` in tokenizer_config.json)
//! rendered with minijinja the way transformers'
//! `apply_chat_template(tokenize=False)` renders it.
//!
//! transformers compiles templates in a Jinja sandbox with `trim_blocks` and
//! `lstrip_blocks` on, a `raise_exception(message)` global, and passes
//! `messages`, `add_generation_prompt` and the special tokens (`bos_token`,
//! `eos_token`) as variables. We do the same; `minijinja-contrib`'s pycompat
//! layer supplies the Python string and dict methods (`.strip()`,
//! `.startswith()`, `.items()`, ...) templates call. A special token the model
//! does not define is left undefined (as in transformers), not set to none.
//!
//! Not provided: tool and document variables, and transformers'
//! `strftime_now` global (templates test `is defined` before using it).

use std::collections::BTreeMap;

use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::error::{Error, Result};

/// Name under which the one template lives in its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation, as chat templates see it (`message['role']`,
/// `message['content']`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may accept others).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// A compiled chat template plus the special tokens it is rendered with.
#[derive(Debug)]
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    /// Special-token variables (`bos_token`, `eos_token`) the model defines.
    special_tokens: BTreeMap<&'static str, String>,
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is reported here, at load time.
    pub(crate) fn new(source: String, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE_NAME, source).map_err(|e| template_error("does not compile", &e))?;
        let special_tokens = [("bos_token", bos_token), ("eos_token", eos_token)]
            .into_iter()
            .filter_map(|(name, token)| token.map(|t| (name, t)))
            .collect();
        Ok(Self { env, special_tokens })
    }

    pub(crate) fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| template_error("is missing", &e))?;
        let mut vars: BTreeMap<&str, Value> =
            self.special_tokens.iter().map(|(name, token)| (*name, Value::from(token.as_str()))).collect();
        vars.insert("messages", Value::from_serialize(messages));
        vars.insert("add_generation_prompt", Value::from(add_generation_prompt));
        template.render(vars).map_err(|e| template_error("failed to render", &e))
    }
}

/// The `raise_exception(message)` global HF templates call to reject input
/// (e.g. roles out of order); it fails the render with that message.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// A minijinja error as [`Error::ChatTemplate`], with its whole cause chain
/// (the chain carries the `raise_exception` message and template line).
fn template_error(what: &str, err: &minijinja::Error) -> Error {
    let mut reason = format!("template {what}: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Error::ChatTemplate { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        ChatTemplate::new(source.to_owned(), Some("<s>".into()), None)?.render(messages, add_generation_prompt)
    }

    #[test]
    fn blocks_are_trimmed_and_stripped_like_hf() {
        let source = "{% for m in messages %}\n    {{ m.role }}: {{ m.content.strip() }}\n{% endfor %}\n{% if add_generation_prompt %}\nassistant:\n{% endif %}";
        let out = render(source, &[ChatMessage::new("user", "  hi  ")], true).unwrap();
        // What jinja2.Environment(trim_blocks=True, lstrip_blocks=True) gives:
        // lstrip applies before block tags only, not before `{{ }}`.
        assert_eq!(out, "    user: hi\nassistant:\n");
    }

    #[test]
    fn raise_exception_fails_with_its_message() {
        let source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}";
        let err = render(source, &[ChatMessage::new("assistant", "x")], false).unwrap_err();
        assert!(err.to_string().contains("Conversation must start with user"), "{err}");
    }

    #[test]
    fn undefined_special_tokens_render_empty() {
        let out = render("[{{ bos_token }}|{{ eos_token }}]", &[], false).unwrap();
        assert_eq!(out, "[<s>|]");
    }

    #[test]
    fn syntax_error_is_reported_at_compile_time() {
        let err = ChatTemplate::new("{% for %}".into(), None, None).unwrap_err();
        assert!(matches!(err, Error::ChatTemplate { .. }), "{err}");
    }
}
