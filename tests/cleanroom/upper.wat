;; Clean-room Caxton reactor agent in hand-written WebAssembly text (no libc),
;; written only from DESIGN.md section 2 and 3.
;;
;; Replies to every message with
;;   {"performative":"inform","receiver":"<sender>","content":"HELLO FROM WAT"}
;; using only caxton.send. The sender is found by scanning the incoming JSON for
;; the member "sender" (optional whitespace around ':') whose value is a string;
;; its raw (still escaped) characters are copied into the reply verbatim.
;;
;; Memory layout: constants at 16.., reply buffer at 1024.. (max 8 KiB),
;; incoming message at 65536.. (memory grows in caxton_alloc as needed).
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))

  (memory (export "memory") 2)

  ;; "sender" with its quotes: 8 bytes at 16
  (data (i32.const 16) "\22sender\22")
  ;; reply prefix: 37 bytes at 32
  (data (i32.const 32) "{\22performative\22:\22inform\22,\22receiver\22:\22")
  ;; reply suffix: 29 bytes at 96
  (data (i32.const 96) "\22,\22content\22:\22HELLO FROM WAT\22}")

  (global $in_base i32 (i32.const 65536))

  ;; caxton_alloc(len) -> ptr: one fixed input buffer, grown to fit.
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (local $need i32)
    ;; pages needed = ceil((65536 + len) / 65536)
    (local.set $need
      (i32.shr_u
        (i32.add (i32.add (global.get $in_base) (local.get $len)) (i32.const 65535))
        (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq
              (memory.grow (i32.sub (local.get $need) (memory.size)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.get $in_base))

  ;; is byte at p a JSON whitespace?
  (func $is_ws (param $c i32) (result i32)
    (i32.or
      (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
      (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13)))))

  ;; does memory at p match the 8-byte "\"sender\"" pattern?
  (func $match_sender (param $p i32) (result i32)
    (local $i i32)
    (block $no
      (loop $l
        (br_if $no
          (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                  (i32.load8_u (i32.add (i32.const 16) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 8))))
      (return (i32.const 1)))
    (i32.const 0))

  (func (export "caxton_handle") (param $ptr i32) (param $len i32) (result i32)
    (local $p i32)
    (local $end i32)
    (local $q i32)
    (local $c i32)
    (local $out i32)
    (local $found i32)
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $p (local.get $ptr))
    ;; copy the prefix (37 bytes) to the reply buffer at 1024
    (memory.copy (i32.const 1024) (i32.const 32) (i32.const 37))
    (local.set $out (i32.const 1061))

    ;; search for "sender" <ws> : <ws> "
    (block $done
      (loop $scan
        (br_if $done (i32.gt_u (i32.add (local.get $p) (i32.const 8)) (local.get $end)))
        (if (call $match_sender (local.get $p))
          (then
            (local.set $q (i32.add (local.get $p) (i32.const 8)))
            (block $skip1
              (loop $ws1
                (br_if $skip1 (i32.ge_u (local.get $q) (local.get $end)))
                (br_if $skip1 (i32.eqz (call $is_ws (i32.load8_u (local.get $q)))))
                (local.set $q (i32.add (local.get $q) (i32.const 1)))
                (br $ws1)))
            (if (i32.and (i32.lt_u (local.get $q) (local.get $end))
                         (i32.eq (i32.load8_u (local.get $q)) (i32.const 58)))
              (then
                (local.set $q (i32.add (local.get $q) (i32.const 1)))
                (block $skip2
                  (loop $ws2
                    (br_if $skip2 (i32.ge_u (local.get $q) (local.get $end)))
                    (br_if $skip2 (i32.eqz (call $is_ws (i32.load8_u (local.get $q)))))
                    (local.set $q (i32.add (local.get $q) (i32.const 1)))
                    (br $ws2)))
                (if (i32.and (i32.lt_u (local.get $q) (local.get $end))
                             (i32.eq (i32.load8_u (local.get $q)) (i32.const 34)))
                  (then
                    (local.set $found (i32.const 1))
                    (local.set $p (i32.add (local.get $q) (i32.const 1)))
                    (br $done)))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $scan)))
    (if (i32.eqz (local.get $found)) (then (return (i32.const 1))))

    ;; copy the sender's characters up to the closing quote (escapes kept)
    (block $copied
      (loop $copy
        (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const 2))))
        ;; keep room for the suffix inside the 8 KiB reply buffer
        (if (i32.ge_u (local.get $out) (i32.const 9000)) (then (return (i32.const 3))))
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $copied (i32.eq (local.get $c) (i32.const 34)))
        (i32.store8 (local.get $out) (local.get $c))
        (local.set $out (i32.add (local.get $out) (i32.const 1)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (if (i32.eq (local.get $c) (i32.const 92))
          (then
            (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const 2))))
            (i32.store8 (local.get $out) (i32.load8_u (local.get $p)))
            (local.set $out (i32.add (local.get $out) (i32.const 1)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))))
        (br $copy)))

    ;; suffix (29 bytes)
    (memory.copy (local.get $out) (i32.const 96) (i32.const 29))
    (local.set $out (i32.add (local.get $out) (i32.const 29)))

    ;; send; non-zero result from send = this message failed
    (if (i32.ne (call $send (i32.const 1024) (i32.sub (local.get $out) (i32.const 1024))) (i32.const 0))
      (then (return (i32.const 4))))
    (i32.const 0))
)
