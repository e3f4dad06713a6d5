; Items of a Go file: each pattern captures the item as @item.<kind> and its
; name as @name. A method also captures its receiver's type name as
; @receiver, and graft names it "Receiver.Method". A type spec alone in its
; `type` declaration is widened to the declaration in code (items.rs).

(function_declaration name: (identifier) @name) @item.function
(method_declaration
  receiver: (parameter_list
    (parameter_declaration
      type: [
        (type_identifier) @receiver
        (pointer_type (type_identifier) @receiver)
        (generic_type type: (type_identifier) @receiver)
        (pointer_type (generic_type type: (type_identifier) @receiver))
      ]))
  name: (field_identifier) @name) @item.method
(type_spec name: (type_identifier) @name) @item.type
(type_alias name: (type_identifier) @name) @item.type
