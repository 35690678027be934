;; A component that imports DNS lookups (wasi:sockets/ip-name-lookup), which no policy can grant:
;; it loads (as `warden inspect` says), and its first call to a socket function kills it.
(component
  ;; `network` has no functions, only a resource: a types-only import of a capability the host
  ;; never grants. Its resource must still be linked (to a type no value ever has).
  (import "wasi:sockets/network@0.2.0" (instance $network
    (export "network" (type (sub resource)))))
  (alias export $network "network" (type $net))
  (import "wasi:sockets/instance-network@0.2.0" (instance $inet
    (alias outer 1 $net (type $n))
    (export "network" (type $nn (eq $n)))
    (export "instance-network" (func (result (own $nn))))))
  (import "wasi:sockets/ip-name-lookup@0.2.0" (instance $lookup
    (alias outer 1 $net (type $n))
    (export "network" (type $nn (eq $n)))
    (export "resolve-address-stream" (type $r (sub resource)))
    (export "resolve-addresses"
      (func (param "network" (borrow $nn)) (param "name" string) (result (own $r))))))
  (alias export $inet "instance-network" (func $instance-network))
  (core func $call (canon lower (func $instance-network)))
  (core instance $host (export "call" (func $call)))
  (core module $m
    (import "host" "call" (func $call (result i32)))
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $heap))
      (global.set $heap (i32.add (global.get $heap) (local.get 3)))
      (local.get $p))
    (func (export "run") (param $ptr i32) (param $len i32) (result i32)
      ;; instance-network(), to pass to resolve-addresses: the host kills the instance here; the rest never runs.
      (drop (call $call))
      (i32.store (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (local.get $ptr))
      (i32.store (i32.const 8) (local.get $len))
      (i32.const 0))
    (func (export "describe") (result i32)
      (i32.store (i32.const 64) (i32.const 0x6b636f73)) ;; "sock"
      (i32.store (i32.const 128) (i32.const 64)) (i32.store (i32.const 132) (i32.const 4))
      (i32.store (i32.const 136) (i32.const 64)) (i32.store (i32.const 140) (i32.const 4))
      (i32.store (i32.const 144) (i32.const 64)) (i32.store (i32.const 148) (i32.const 4))
      (i32.store16 (i32.const 80) (i32.const 0x7d7b)) ;; "{}": both schemas take any JSON
      (i32.store (i32.const 152) (i32.const 80)) (i32.store (i32.const 156) (i32.const 2))
      (i32.store (i32.const 160) (i32.const 80)) (i32.store (i32.const 164) (i32.const 2))
      (i32.const 128))
  )
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (type $err' (variant (case "invalid-input" string) (case "failed" string)))
  (export $err "agent-error" (type $err'))
  (type $desc' (record (field "name" string) (field "version" string) (field "summary" string)
                       (field "input-schema" string) (field "output-schema" string)))
  (export $desc "description" (type $desc'))
  (func $run (param "task" string) (result (result string (error $err)))
    (canon lift (core func $i "run") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (export "run" (func $run))
  (func $describe (result $desc)
    (canon lift (core func $i "describe") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (export "describe" (func $describe))
)
