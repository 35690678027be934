;; A hand-written component for attacks Rust cannot express. It exports the warden:agent world
;; (`describe`, `run`); `run` looks at the second byte of its task (the first letter of a JSON
;; string such as "t") and then misbehaves:
;;   "t"  grow a table forever        "m"  grow linear memory forever
;;   "l"  loop forever, no calls      "r"  recurse forever
;;   anything else: return the task unchanged.
(component
  (core module $m
    (memory (export "memory") 1)
    (table $t 1 funcref)
    (global $heap (mut i32) (i32.const 4096))
    (func $realloc (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $heap))
      (global.set $heap (i32.add (global.get $heap) (local.get 3)))
      (local.get $p))
    (func $recurse (param i32) (result i32)
      (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
    (func (export "run") (param $ptr i32) (param $len i32) (result i32)
      (local $c i32)
      (if (i32.gt_u (local.get $len) (i32.const 1))
        (then (local.set $c (i32.load8_u offset=1 (local.get $ptr)))))
      (if (i32.eq (local.get $c) (i32.const 116)) ;; t
        (then (loop $l (drop (table.grow $t (ref.null func) (i32.const 1000))) (br $l))))
      (if (i32.eq (local.get $c) (i32.const 109)) ;; m
        (then (loop $l (drop (memory.grow (i32.const 16))) (br $l))))
      (if (i32.eq (local.get $c) (i32.const 108)) ;; l
        (then (loop $l (br $l))))
      (if (i32.eq (local.get $c) (i32.const 114)) ;; r
        (then (drop (call $recurse (i32.const 0)))))
      ;; result<string, agent-error>: tag 0 (ok) at 0, then the string (ptr, len) at 4 and 8.
      (i32.store (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (local.get $ptr))
      (i32.store (i32.const 8) (local.get $len))
      (i32.const 0))
    (func (export "describe") (result i32)
      ;; Name, version and summary point at "wild" stored at 64; the two schemas at "{}" at 80.
      (i32.store (i32.const 64) (i32.const 0x646c6977))
      (i32.store16 (i32.const 80) (i32.const 0x7d7b))
      (i32.store (i32.const 128) (i32.const 64)) (i32.store (i32.const 132) (i32.const 4))
      (i32.store (i32.const 136) (i32.const 64)) (i32.store (i32.const 140) (i32.const 4))
      (i32.store (i32.const 144) (i32.const 64)) (i32.store (i32.const 148) (i32.const 4))
      (i32.store (i32.const 152) (i32.const 80)) (i32.store (i32.const 156) (i32.const 2))
      (i32.store (i32.const 160) (i32.const 80)) (i32.store (i32.const 164) (i32.const 2))
      (i32.const 128))
  )
  (core instance $i (instantiate $m))
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
