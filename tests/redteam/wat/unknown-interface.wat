;; Imports an interface no host provides: refused at load, naming it.
(component
  (import "acme:backdoor/shell@1.0.0" (instance (export "exec" (func (param "cmd" string)))))
)
