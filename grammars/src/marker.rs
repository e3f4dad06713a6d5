//! Elision markers: the comment lines with which an agent's lazy edit
//! snippet stands for unchanged code (`// ... existing code ...`).
//!
//! # The rule
//!
//! A line is a marker when, after trimming whitespace, it is a single
//! comment — a line comment (`//`, `#`; not a Rust doc comment `///` or
//! `//!`), or a block comment (`/* ... */`, or `{/* ... */}` in JSX) that
//! opens and closes on the line — whose text T (comment syntax stripped,
//! trimmed) satisfies one of:
//!
//! 1. T is only an ellipsis: dots and `…`, at least `...` or one `…`
//!    (`// ...`, `# …`);
//! 2. T starts with an ellipsis, or ends with one set off by whitespace,
//!    names one of the marker words (existing, unchanged, rest, remaining,
//!    same, omitted, previous, other, others, keep, unmodified, elided,
//!    skipped) and has at most 8 words (`// ... rest of the code ...`,
//!    `# ... (unchanged) ...`, `# ... keep existing imports ...`);
//! 3. T without ellipsis (or with one only at its end) is a bare marker phrase: "existing code" or "rest
//!    of (the) code/file", followed only by words of {unchanged, remains,
//!    here, omitted, as, is, above, below, same} (`// existing code
//!    unchanged`).
//!
//! Prose with an ellipsis glued to a word (`other arguments...`) or inside
//! code (`Some(...)`) is not a marker, nor is `// TODO: existing behaviour
//! is wrong` (no ellipsis) or `// ... and then we return` (no marker word).
//! With the language unknown (`None`), any of `//`, `#` and `/* */` counts
//! as comment syntax.

use crate::{CommentSyntax, Language};

/// Words that make an ellipsis comment a marker (rule 2).
const MARKER_WORDS: [&str; 13] = [
    "existing",
    "unchanged",
    "rest",
    "remaining",
    "same",
    "omitted",
    "previous",
    "other",
    "others",
    "keep",
    "unmodified",
    "elided",
    "skipped",
];

/// Words allowed after a bare marker phrase (rule 3).
const PHRASE_TAIL: [&str; 9] = ["unchanged", "remains", "here", "omitted", "as", "is", "above", "below", "same"];

/// Longest ellipsis comment, in words, that still counts as a marker.
const MAX_MARKER_WORDS: usize = 8;

/// Comment syntaxes tried when the language is unknown.
const ANY_SYNTAX: [CommentSyntax; 2] =
    [CommentSyntax { line: "//", block: Some(("/*", "*/")) }, CommentSyntax { line: "#", block: None }];

/// Whether `line` is an elision marker in a file of `language` (`None`:
/// unknown language, any common comment syntax). See the module doc.
pub fn is_marker_line(language: Option<Language>, line: &str) -> bool {
    let line = line.trim();
    let text = match language {
        Some(language) => comment_text(language.comment_syntax(), line),
        None => ANY_SYNTAX.into_iter().find_map(|syntax| comment_text(syntax, line)),
    };
    text.is_some_and(is_marker_text)
}

/// The text of `line` when the whole (trimmed) line is one comment.
fn comment_text(syntax: CommentSyntax, line: &str) -> Option<&str> {
    if let Some(rest) = line.strip_prefix(syntax.line) {
        // `///` and `//!` are Rust doc comments: documentation, not elisions.
        let doc = syntax.line == "//" && (rest.starts_with('/') || rest.starts_with('!'));
        return (!doc).then_some(rest);
    }
    let (open, close) = syntax.block?;
    let inner = line.strip_prefix('{').and_then(|l| l.strip_suffix('}')).unwrap_or(line);
    inner.strip_prefix(open)?.strip_suffix(close)
}

fn is_ellipsis(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c == '.' || c == '…') && (text.contains("...") || text.contains('…'))
}

fn is_marker_text(text: &str) -> bool {
    let text = text.trim();
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if is_ellipsis(&compact) {
        return true;
    }
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let leading = text.starts_with("...") || text.starts_with('…');
    let trailing =
        text.rsplit_once(char::is_whitespace).is_some_and(|(_, last)| is_ellipsis(last) && !text.starts_with(last));
    if (leading || trailing)
        && words.len() <= MAX_MARKER_WORDS
        && words.iter().any(|w| MARKER_WORDS.contains(&w.as_str()))
    {
        return true;
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let tail = match words.as_slice() {
        ["existing", "code", tail @ ..] | ["rest", "of", "the", "code" | "file", tail @ ..] => tail,
        ["rest", "of", "code" | "file", tail @ ..] => tail,
        _ => return false,
    };
    // An ellipsis may close the phrase (`existing code...`), not split it.
    let body = text.trim_end_matches(['.', '…', ' ']);
    !body.contains("...") && !body.contains('…') && tail.iter().all(|w| PHRASE_TAIL.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_agents_write_are_markers() {
        let markers = [
            (Some(Language::Rust), "    // ... existing code ..."),
            (Some(Language::Python), "# ... existing code ...   "),
            (Some(Language::Go), "\t/* ... existing code ... */"),
            (Some(Language::TypeScript), "// ... rest of the code ..."),
            (Some(Language::JavaScript), "// ..."),
            (Some(Language::Go), "// existing code unchanged"),
            (Some(Language::TypeScript), "// existing code..."),
            (Some(Language::Python), "# ... (unchanged) ..."),
            (Some(Language::Rust), "// ... unchanged code ..."),
            (Some(Language::TypeScript), "// ... code above unchanged ..."),
            (Some(Language::Rust), "// ... rest of the file ..."),
            (Some(Language::Python), "# ... keep existing imports ..."),
            (Some(Language::Rust), "// ... rest of file unchanged ..."),
            (Some(Language::Python), "# …"),
            (Some(Language::Tsx), "      {/* ... existing code ... */}"),
            (Some(Language::Rust), "// Rest of the code"),
            (Some(Language::Rust), "// other methods ..."),
            (None, "# ... existing code ..."),
            (None, "// ... existing code ..."),
            (None, "/* ... */"),
        ];
        for (language, line) in markers {
            assert!(is_marker_line(language, line), "{language:?} {line:?} should be a marker");
        }
    }

    #[test]
    fn real_comments_and_code_are_not_markers() {
        let lines = [
            (Some(Language::Rust), "// TODO: existing behaviour is wrong"),
            (Some(Language::Rust), "// ... and then we return"),
            (Some(Language::Rust), "/// Parses any other values as a `Some(...)`."),
            (Some(Language::Rust), "//! ... existing code ..."),
            (Some(Language::Rust), "// Additional configuration goes here, such as other arguments..."),
            (Some(Language::TypeScript), "// Keep the named function, visible via `DEBUG=connect:dispatcher ...`"),
            (Some(Language::Rust), "// existing code relies on this ordering"),
            (Some(Language::Python), "..."),
            (Some(Language::Python), "// ... existing code ..."),
            (Some(Language::Go), "# ... existing code ..."),
            (Some(Language::Go), "x := f(a, b) // ... existing code ..."),
            (Some(Language::JavaScript), "/* ... existing code ... */ foo()"),
            (Some(Language::Rust), "//"),
            (Some(Language::Python), "#"),
            (None, "-- ... existing code ..."),
        ];
        for (language, line) in lines {
            assert!(!is_marker_line(language, line), "{language:?} {line:?} should not be a marker");
        }
    }
}
