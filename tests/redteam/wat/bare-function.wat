;; Imports a bare top-level function instead of an interface: refused at load.
(component
  (import "spawn-process" (func))
)
