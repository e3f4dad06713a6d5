; Items of a Rust file: each pattern captures the item as @item.<kind> and its
; name as @name. An impl's name is its type; a trait impl also captures
; @trait, and graft names it "Trait for Type". Functions inside an impl or
; trait become kind "method" in code (items.rs), not here.

(function_item name: (identifier) @name) @item.function
(function_signature_item name: (identifier) @name) @item.function
(struct_item name: (type_identifier) @name) @item.struct
(enum_item name: (type_identifier) @name) @item.enum
(union_item name: (type_identifier) @name) @item.union
(trait_item name: (type_identifier) @name) @item.trait
(impl_item !trait type: (_) @name) @item.impl
(impl_item trait: (_) @trait type: (_) @name) @item.impl
(mod_item name: (identifier) @name) @item.mod
(const_item name: (identifier) @name) @item.const
(static_item name: (identifier) @name) @item.static
(type_item name: (type_identifier) @name) @item.type
(macro_definition name: (identifier) @name) @item.macro
