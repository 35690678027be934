;; Imports a known WASI interface with a member this host's version of it does not have: refused
;; at load in Warden's words (not wasmtime's "function implementation is missing").
(component
  (import "wasi:io/error@0.2.0" (instance
    (export "error" (type (sub resource)))
    (export "open-backdoor" (func))))
)
