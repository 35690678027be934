;; Imports a WASI version this host does not implement: refused at load.
(component
  (import "wasi:filesystem/types@0.3.0" (instance))
)
