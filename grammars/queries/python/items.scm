; Items of a Python file: each pattern captures the definition as
; @item.<kind> and its name as @name. A decorated definition is widened to
; its decorators in code (items.rs), and a function directly inside a class
; becomes kind "method" there.

(function_definition name: (identifier) @name) @item.function
(class_definition name: (identifier) @name) @item.class
