;; Imports the same WASI interface twice, under two versions: refused at load.
(component
  (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string))))))
  (import "wasi:cli/environment@0.2.6" (instance (export "get-arguments" (func (result (list string))))))
)
