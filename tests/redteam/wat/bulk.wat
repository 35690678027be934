;; A hand-written component whose every loop iteration is one bulk instruction: wasmtime runs
;; each `memory.fill`, `memory.copy` or `table.fill` in a single call into the host's runtime,
;; with no epoch check inside, so the CPU it burns is the host's, spent on the guest's behalf.
;; `run` reads its task, a JSON string such as "f6": the first letter is the operation, the
;; second the size as a power of two (`0`-`9`, `a` = 10):
;;   "fN"  grow memory to 2^N MiB, then `memory.fill` all of it, for ever
;;   "cN"  grow memory to 2^N MiB, then `memory.copy` its lower half over its upper half, for ever
;;   "tN"  grow the table to 2^N Ki elements, then `table.fill` all of it, for ever
;;   "FN"  grow memory to 2^N MiB, `memory.fill` all but its first page once, return the task
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
    (func (export "run") (param $ptr i32) (param $len i32) (result i32)
      (local $op i32) (local $n i32) (local $bytes i32) (local $elems i32)
      (if (i32.gt_u (local.get $len) (i32.const 2))
        (then
          (local.set $op (i32.load8_u offset=1 (local.get $ptr)))
          (local.set $n (i32.load8_u offset=2 (local.get $ptr)))
          ;; '0'-'9' -> 0-9, 'a' -> 10
          (local.set $n (select (i32.const 10) (i32.sub (local.get $n) (i32.const 48))
                                (i32.eq (local.get $n) (i32.const 97))))))
      (local.set $bytes (i32.shl (i32.const 1048576) (local.get $n)))
      (local.set $elems (i32.shl (i32.const 1024) (local.get $n)))
      (if (i32.or (i32.or (i32.eq (local.get $op) (i32.const 102)) (i32.eq (local.get $op) (i32.const 99)))
                  (i32.eq (local.get $op) (i32.const 70)))
        (then
          ;; One page is there already; the rest up to 2^N MiB (64 KiB pages, 16 per MiB).
          (drop (memory.grow (i32.sub (i32.shr_u (local.get $bytes) (i32.const 16)) (i32.const 1))))))
      (if (i32.eq (local.get $op) (i32.const 102)) ;; f
        (then (loop $l
          (memory.fill (i32.const 0) (i32.const 0x5a) (local.get $bytes))
          (br $l))))
      (if (i32.eq (local.get $op) (i32.const 70)) ;; F
        ;; Above the first page, which holds the task it returns.
        (then (memory.fill (i32.const 65536) (i32.const 0x5a)
                           (i32.sub (local.get $bytes) (i32.const 65536)))))
      (if (i32.eq (local.get $op) (i32.const 99)) ;; c
        (then (loop $l
          (memory.copy (i32.shr_u (local.get $bytes) (i32.const 1)) (i32.const 0)
                       (i32.shr_u (local.get $bytes) (i32.const 1)))
          (br $l))))
      (if (i32.eq (local.get $op) (i32.const 116)) ;; t
        (then
          (drop (table.grow $t (ref.null func) (i32.sub (local.get $elems) (i32.const 1))))
          (loop $l
            (table.fill $t (i32.const 0) (ref.null func) (local.get $elems))
            (br $l))))
      ;; result<string, agent-error>: tag 0 (ok) at 0, then the string (ptr, len) at 4 and 8.
      (i32.store (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (local.get $ptr))
      (i32.store (i32.const 8) (local.get $len))
      (i32.const 0))
    (func (export "describe") (result i32)
      ;; Five strings, all pointing at "bulk" stored at 64.
      (i32.store (i32.const 64) (i32.const 0x6b6c7562))
      (i32.store (i32.const 128) (i32.const 64)) (i32.store (i32.const 132) (i32.const 4))
      (i32.store (i32.const 136) (i32.const 64)) (i32.store (i32.const 140) (i32.const 4))
      (i32.store (i32.const 144) (i32.const 64)) (i32.store (i32.const 148) (i32.const 4))
      (i32.store16 (i32.const 80) (i32.const 0x7d7b)) ;; "{}": both schemas take any JSON
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
