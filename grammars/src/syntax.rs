//! [`syntax_problems`]: where tree-sitter had to recover from a syntax
//! error (ERROR nodes) or invent a token (MISSING nodes). Validation of an
//! apply result compares these with the original's: a result must not add
//! any.

use tree_sitter::Tree;

/// One place tree-sitter could not parse as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxProblem {
    /// 0-based line where the problem starts.
    pub line: usize,
    /// True for a MISSING node (a token tree-sitter invented), false for an
    /// ERROR node (text it had to skip).
    pub missing: bool,
}

/// Every ERROR and MISSING node of `tree`, outermost first in document
/// order; the children of an ERROR node are not searched further.
pub fn syntax_problems(tree: &Tree) -> Vec<SyntaxProblem> {
    let mut problems = Vec::new();
    let root = tree.root_node();
    if !root.has_error() {
        return problems;
    }
    let mut cursor = root.walk();
    let mut descend = true;
    loop {
        let node = cursor.node();
        if descend && (node.is_error() || node.is_missing()) {
            problems.push(SyntaxProblem { line: node.start_position().row, missing: node.is_missing() });
            descend = false;
        }
        if descend && node.has_error() && cursor.goto_first_child() {
            continue;
        }
        descend = true;
        if cursor.goto_next_sibling() {
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                return problems;
            }
            if cursor.goto_next_sibling() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, Language};

    #[test]
    fn clean_source_has_no_problems() {
        let tree = parse(Language::Rust, "fn a() { let x = 1; }\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(syntax_problems(&tree).is_empty());
    }

    #[test]
    fn missing_brace_and_stray_text_are_found_on_their_lines() {
        let tree = parse(Language::Rust, "fn a() {\n    let x = 1;\n").unwrap_or_else(|e| panic!("{e}"));
        let problems = syntax_problems(&tree);
        assert!(!problems.is_empty());
        let tree = parse(Language::Python, "def f():\n    return 1\n)\n").unwrap_or_else(|e| panic!("{e}"));
        let problems = syntax_problems(&tree);
        assert_eq!(problems.first().map(|p| (p.line, p.missing)), Some((2, false)), "{problems:?}");
    }
}
