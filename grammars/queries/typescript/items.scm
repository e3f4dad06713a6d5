; Items of a TypeScript or TSX file (both grammars share these node kinds):
; each pattern captures the item as @item.<kind> and its name as @name. An
; `export`/`declare` wrapper is included in the item's range in code
; (items.rs). Arrow functions and function expressions bound by
; const/let/var (or by a class field) count as functions (methods). Test
; blocks (describe/it/test with a string title) are items of kind "test".

(function_declaration name: (identifier) @name) @item.function
(generator_function_declaration name: (identifier) @name) @item.function
(function_signature name: (identifier) @name) @item.function
(class_declaration name: (type_identifier) @name) @item.class
(abstract_class_declaration name: (type_identifier) @name) @item.class
(method_definition name: (_) @name) @item.method
(abstract_method_signature name: (_) @name) @item.method
(public_field_definition
  name: (_) @name
  value: [(arrow_function) (function_expression)]) @item.method
(interface_declaration name: (type_identifier) @name) @item.interface
(type_alias_declaration name: (type_identifier) @name) @item.type
(enum_declaration name: (identifier) @name) @item.enum
(internal_module name: (_) @name) @item.module
(lexical_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function) (function_expression) (generator_function)])) @item.function
(variable_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function) (function_expression) (generator_function)])) @item.function

; Test-framework blocks: describe('name', ...), it('name', ...), test.only(...).
(expression_statement
  (call_expression
    function: [
      (identifier) @callee
      (member_expression object: (identifier) @callee)
    ]
    arguments: (arguments . (string (string_fragment) @name)))
  (#any-of? @callee "describe" "context" "suite" "it" "test")) @item.test

; Functions assigned to a name: module.exports = function () {...},
; Foo.prototype.bar = () => {...}; the name is the assigned expression.
(expression_statement
  (assignment_expression
    left: [(identifier) (member_expression)] @name
    right: [(arrow_function) (function_expression) (generator_function)])) @item.function
