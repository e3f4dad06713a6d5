//! Named items of a parsed file (functions, methods, classes, types, impls,
//! modules...), found by the data-file queries `queries/<lang>/items.scm`.
//! The structural merge anchors the pieces of an update by (kind, name).
//!
//! Query conventions: each pattern captures the item node as `@item.<kind>`
//! and its name as `@name`; Rust trait impls add `@trait` (named
//! "Trait for Type"), Go methods add `@receiver` (named "Receiver.Method").
//! After matching, this module
//! - widens an item to a wrapper that belongs to it: `export`/`declare`
//!   statements, Python decorators, a Go `type` declaration holding a single
//!   spec;
//! - links every item to its innermost enclosing item (`parent`);
//! - renames kind "function" to "method" when the parent is a class, impl,
//!   trait or interface.

use std::ops::Range;
use std::sync::OnceLock;

use tree_sitter::{Node, Query, QueryCursor, StreamingIterator, Tree};

use crate::{GrammarError, Language};

/// A named item of a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What the item is: function, method, class, struct, enum, union,
    /// trait, impl, interface, type, module/mod, const, static, macro (the
    /// `@item.<kind>` capture of the query).
    pub kind: String,
    /// The item's name as written (see the module doc for impls and Go
    /// methods).
    pub name: String,
    /// Bytes of the item in the source, wrappers (export, decorators) included.
    pub byte_range: Range<usize>,
    /// Lines of the item, 0-based, end exclusive.
    pub line_range: Range<usize>,
    /// Index of the innermost enclosing item in the same `Vec`.
    pub parent: Option<usize>,
}

const ITEMS_QUERY: &str = "items.scm";

/// The items query's source for a language (TSX shares TypeScript's).
fn items_query_source(language: Language) -> &'static str {
    match language {
        Language::Rust => include_str!("../queries/rust/items.scm"),
        Language::Python => include_str!("../queries/python/items.scm"),
        Language::TypeScript | Language::Tsx => include_str!("../queries/typescript/items.scm"),
        Language::JavaScript => include_str!("../queries/javascript/items.scm"),
        Language::Go => include_str!("../queries/go/items.scm"),
    }
}

/// The compiled items query of a language, compiled once per process.
fn items_query(language: Language) -> Result<&'static Query, GrammarError> {
    static QUERIES: [OnceLock<Result<Query, String>>; Language::ALL.len()] = [const { OnceLock::new() }; 6];
    let slot = &QUERIES[language as usize];
    slot.get_or_init(|| Query::new(&language.ts_language(), items_query_source(language)).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|message| GrammarError::Query { language, query: ITEMS_QUERY, message: message.clone() })
}

/// Node kinds that wrap an item and belong to it.
const WRAPPERS: [&str; 3] = ["export_statement", "decorated_definition", "ambient_declaration"];

/// The node whose range an item covers: the matched node, widened to
/// wrappers that hold nothing else.
fn widen(node: Node<'_>) -> Node<'_> {
    let mut node = node;
    while let Some(parent) = node.parent() {
        let wraps = WRAPPERS.contains(&parent.kind())
            || (parent.kind() == "type_declaration" && parent.named_child_count() == 1);
        if !wraps {
            break;
        }
        node = parent;
    }
    node
}

/// The items of `tree`, parsed from `source` as `language`, in source order
/// (outer before inner at the same start).
pub fn items(language: Language, tree: &Tree, source: &str) -> Result<Vec<Item>, GrammarError> {
    let query = items_query(language)?;
    let names = query.capture_names();
    let text = |node: Node<'_>| source.get(node.byte_range()).unwrap_or_default();
    let mut found: Vec<Item> = Vec::new();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(query, tree.root_node(), source.as_bytes());
    while let Some(m) = matches.next() {
        let (mut item, mut name, mut qualifier) = (None, None, None);
        for capture in m.captures {
            let capture_name = names.get(capture.index as usize).copied().unwrap_or_default();
            match capture_name {
                "name" => name = Some(capture.node),
                "trait" | "receiver" => qualifier = Some((capture_name, capture.node)),
                _ => {
                    if let Some(kind) = capture_name.strip_prefix("item.") {
                        item = Some((kind, capture.node));
                    }
                }
            }
        }
        let (Some((kind, node)), Some(name)) = (item, name) else { continue };
        let name = match qualifier {
            Some(("trait", q)) => format!("{} for {}", text(q), text(name)),
            Some((_, q)) => format!("{}.{}", text(q), text(name)),
            None => text(name).to_string(),
        };
        let node = widen(node);
        let end_row = node.end_position().row;
        found.push(Item {
            kind: kind.to_string(),
            name,
            byte_range: node.byte_range(),
            line_range: node.start_position().row..end_row + 1,
            parent: None,
        });
    }
    found.sort_by(|a, b| {
        (a.byte_range.start, std::cmp::Reverse(a.byte_range.end), &a.kind, &a.name).cmp(&(
            b.byte_range.start,
            std::cmp::Reverse(b.byte_range.end),
            &b.kind,
            &b.name,
        ))
    });
    found.dedup();
    link_parents(&mut found);
    Ok(found)
}

/// Sets each item's `parent` to its innermost enclosing item (items sorted
/// by start, longer first) and renames functions inside types to methods.
fn link_parents(items: &mut [Item]) {
    let mut open: Vec<usize> = Vec::new();
    for i in 0..items.len() {
        let range = items[i].byte_range.clone();
        while open.last().is_some_and(|&top| items[top].byte_range.end < range.end) {
            open.pop();
        }
        if let Some(&parent) = open.last() {
            items[i].parent = Some(parent);
            let in_type = matches!(items[parent].kind.as_str(), "class" | "impl" | "trait" | "interface");
            if items[i].kind == "function" && in_type {
                items[i].kind = "method".to_string();
            }
        }
        open.push(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, name, parent's name) of every item, for compact assertions.
    fn summary(language: Language, source: &str) -> Vec<(String, String, Option<String>)> {
        let tree = crate::parse(language, source).unwrap_or_else(|e| panic!("{e}"));
        assert!(!tree.root_node().has_error(), "{}: {}", language.name(), tree.root_node().to_sexp());
        let found = items(language, &tree, source).unwrap_or_else(|e| panic!("{e}"));
        found
            .iter()
            .map(|item| (item.kind.clone(), item.name.clone(), item.parent.map(|p| found[p].name.clone())))
            .collect()
    }

    fn expect(rows: &[(&str, &str, Option<&str>)]) -> Vec<(String, String, Option<String>)> {
        rows.iter().map(|(k, n, p)| (k.to_string(), n.to_string(), p.map(str::to_string))).collect()
    }

    #[test]
    fn every_items_query_compiles_against_its_grammar() {
        for language in Language::ALL {
            items_query(language).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn rust_items() {
        let source = r#"
mod util {
    pub fn helper() {}
}
pub struct Point { x: i32 }
enum Shape { Circle }
union Bits { a: u32 }
pub trait Area { fn area(&self) -> f64; }
impl Point {
    pub fn new() -> Self { Point { x: 0 } }
}
impl Area for Point {
    fn area(&self) -> f64 { 0.0 }
}
const MAX: usize = 3;
static NAME: &str = "x";
type Alias = Point;
macro_rules! square { ($x:expr) => { $x * $x }; }
fn main() {}
"#;
        assert_eq!(
            summary(Language::Rust, source),
            expect(&[
                ("mod", "util", None),
                ("function", "helper", Some("util")),
                ("struct", "Point", None),
                ("enum", "Shape", None),
                ("union", "Bits", None),
                ("trait", "Area", None),
                ("method", "area", Some("Area")),
                ("impl", "Point", None),
                ("method", "new", Some("Point")),
                ("impl", "Area for Point", None),
                ("method", "area", Some("Area for Point")),
                ("const", "MAX", None),
                ("static", "NAME", None),
                ("type", "Alias", None),
                ("macro", "square", None),
                ("function", "main", None),
            ])
        );
    }

    #[test]
    fn python_items_include_decorators_and_methods() {
        let source = "import os\n\n@cache\ndef load(path):\n    return path\n\nclass Store:\n    @property\n    def size(self):\n        return 0\n\n    def put(self, key):\n        def inner():\n            pass\n";
        assert_eq!(
            summary(Language::Python, source),
            expect(&[
                ("function", "load", None),
                ("class", "Store", None),
                ("method", "size", Some("Store")),
                ("method", "put", Some("Store")),
                ("function", "inner", Some("put")),
            ])
        );
        let tree = crate::parse(Language::Python, source).unwrap_or_else(|e| panic!("{e}"));
        let found = items(Language::Python, &tree, source).unwrap_or_else(|e| panic!("{e}"));
        // The decorator belongs to the function: lines 2..5, starting at `@cache`.
        assert_eq!(found[0].line_range, 2..5);
        assert!(source[found[0].byte_range.clone()].starts_with("@cache\ndef load"));
    }

    #[test]
    fn typescript_items_include_exports_interfaces_and_arrow_functions() {
        let source = r#"
export interface Props { name: string }
type Id = string;
enum Color { Red }
namespace NS { export const v = 1; }
export const greet = (p: Props): string => p.name;
let legacy = function () { return 1; };
const plain = 3;
export default class Widget {
  private count = 0;
  onClick = () => { this.count++; };
  render(): string { return "w"; }
}
export function main(): void {}
"#;
        let expected = expect(&[
            ("interface", "Props", None),
            ("type", "Id", None),
            ("enum", "Color", None),
            ("module", "NS", None),
            ("function", "greet", None),
            ("function", "legacy", None),
            ("class", "Widget", None),
            ("method", "onClick", Some("Widget")),
            ("method", "render", Some("Widget")),
            ("function", "main", None),
        ]);
        assert_eq!(summary(Language::TypeScript, source), expected);
        let tree = crate::parse(Language::TypeScript, source).unwrap_or_else(|e| panic!("{e}"));
        let found = items(Language::TypeScript, &tree, source).unwrap_or_else(|e| panic!("{e}"));
        assert!(source[found[0].byte_range.clone()].starts_with("export interface Props"));
    }

    #[test]
    fn tsx_items() {
        let source = "export function App(): JSX.Element {\n  return <div>{items.map((i) => <Row key={i} />)}</div>;\n}\nconst Row = ({ key }: { key: number }) => <span>{key}</span>;\n";
        assert_eq!(summary(Language::Tsx, source), expect(&[("function", "App", None), ("function", "Row", None)]));
    }

    #[test]
    fn javascript_items() {
        let source = r#"
'use strict'
const fs = require('fs')
function handle (req) { return req }
function* ids () { yield 1 }
export const run = async () => {}
var old = function () {}
Server.prototype.close = function () {}
class Server {
  handler = () => {}
  listen (port) { return port }
}
describe('server', () => {
  it('listens', () => {})
})
module.exports = { handle }
"#;
        assert_eq!(
            summary(Language::JavaScript, source),
            expect(&[
                ("function", "handle", None),
                ("function", "ids", None),
                ("function", "run", None),
                ("function", "old", None),
                ("function", "Server.prototype.close", None),
                ("class", "Server", None),
                ("method", "handler", Some("Server")),
                ("method", "listen", Some("Server")),
                ("test", "server", None),
                ("test", "listens", Some("server")),
            ])
        );
    }

    #[test]
    fn go_items_name_methods_by_receiver() {
        let source = r#"package main

type Server struct {
	addr string
}

type (
	ID    int
	Alias = string
)

type Stack[T any] struct{ items []T }

func (s *Server) Start() error { return nil }

func (s Server) Addr() string { return s.addr }

func (st *Stack[T]) Push(v T) {}

func main() {}
"#;
        assert_eq!(
            summary(Language::Go, source),
            expect(&[
                ("type", "Server", None),
                ("type", "ID", None),
                ("type", "Alias", None),
                ("type", "Stack", None),
                ("method", "Server.Start", None),
                ("method", "Server.Addr", None),
                ("method", "Stack.Push", None),
                ("function", "main", None),
            ])
        );
        let tree = crate::parse(Language::Go, source).unwrap_or_else(|e| panic!("{e}"));
        let found = items(Language::Go, &tree, source).unwrap_or_else(|e| panic!("{e}"));
        // A lone spec is widened to its `type` declaration; grouped specs are not.
        assert!(source[found[0].byte_range.clone()].starts_with("type Server struct"));
        assert!(source[found[1].byte_range.clone()].starts_with("ID"));
    }
}
