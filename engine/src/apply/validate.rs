//! [`validate`]: checks every apply result before anyone calls it good: no
//! syntax errors the original did not have (tree-sitter ERROR and MISSING
//! nodes, compared by count), no elision marker left in the file that the
//! original did not have. A result that fails is still returned, flagged
//! with these [`Problem`]s. A region the model did not finish is never
//! spliced in (the merge's text stays, and the region's report says
//! `merge_model_cut_short`), so no result is truncated text.

use graft_grammars::{is_marker_line, parse, syntax_problems, Language};
use serde::Serialize;

/// Why a result is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The result has more tree-sitter ERROR/MISSING nodes than the
    /// original; `line` (0-based) is the first one the original lacks.
    NewSyntaxErrors { original: usize, result: usize, line: usize },
    /// An elision marker the original does not contain is left in the
    /// result at `line` (0-based).
    LeftoverMarker { line: usize },
    /// The result could not be parsed at all (e.g. parse timeout).
    Unparsed { reason: String },
}

/// Checks `result` against `original`. Files of unknown language get the
/// marker check only (the report says the language is unknown).
pub fn validate(original: &str, result: &str, language: Option<Language>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(line) = new_marker_line(original, result, language) {
        problems.push(Problem::LeftoverMarker { line });
    }
    if let Some(language) = language {
        match (parse(language, original), parse(language, result)) {
            (Ok(before), Ok(after)) => {
                let before = syntax_problems(&before);
                let after = syntax_problems(&after);
                if after.len() > before.len() {
                    let line = after
                        .iter()
                        .find(|p| {
                            !before
                                .iter()
                                .any(|b| b.missing == p.missing && line_text_eq(original, b.line, result, p.line))
                        })
                        .or(after.first())
                        .map_or(0, |p| p.line);
                    problems.push(Problem::NewSyntaxErrors { original: before.len(), result: after.len(), line });
                }
            }
            (_, Err(e)) | (Err(e), _) => problems.push(Problem::Unparsed { reason: e.to_string() }),
        }
    }
    problems
}

/// Whether line `a` of `left` and line `b` of `right` have the same text.
fn line_text_eq(left: &str, a: usize, right: &str, b: usize) -> bool {
    left.lines().nth(a).is_some_and(|x| right.lines().nth(b) == Some(x))
}

/// The first marker line of `result` beyond those the original already has
/// (compared by count of each marker text), 0-based.
fn new_marker_line(original: &str, result: &str, language: Option<Language>) -> Option<usize> {
    let mut budget: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for line in original.lines().filter(|l| is_marker_line(language, l)) {
        *budget.entry(line.trim()).or_default() += 1;
    }
    for (number, line) in result.lines().enumerate().filter(|(_, l)| is_marker_line(language, l)) {
        match budget.get_mut(line.trim()) {
            Some(left) if *left > 0 => *left -= 1,
            _ => return Some(number),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_edit_is_valid() {
        let problems = validate("fn a() {}\n", "fn a() {}\nfn b() {}\n", Some(Language::Rust));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_lost_brace_is_a_new_syntax_error() {
        let problems = validate("fn a() {\n}\n", "fn a() {\n    x();\n", Some(Language::Rust));
        assert!(matches!(problems.as_slice(), [Problem::NewSyntaxErrors { original: 0, .. }]), "{problems:?}");
    }

    #[test]
    fn an_error_the_original_had_is_not_new() {
        let broken = "fn a() {\n";
        assert!(validate(broken, &format!("// x\n{broken}"), Some(Language::Rust)).is_empty());
    }

    #[test]
    fn a_leftover_marker_is_found_unless_the_original_has_it() {
        let result = "fn a() {}\n// ... existing code ...\n";
        let problems = validate("fn a() {}\n", result, Some(Language::Rust));
        assert_eq!(problems, vec![Problem::LeftoverMarker { line: 1 }]);
        assert!(validate(result, result, Some(Language::Rust)).is_empty());
        assert_eq!(validate("a\n", "a\n# ...\n", None), vec![Problem::LeftoverMarker { line: 1 }]);
    }
}
