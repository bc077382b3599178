;; SIMD kernel of the `video` workload's region V (WORKLOADS.md; the JavaScript
;; reference is drawVideoJs in sources/sim/programs/workloads.ts, which
;; sources/sim/programs/video_wasm.ts stands in for with this kernel). `deno task
;; wasm` assembles this file into video_kernel.ts. Plain SIMD only: both builds are
;; the same.
;;
;; Pixel (u, v) of frame n, every operation wrapping uint32 as in the spec:
;;   R = (((u*u + v*v) >> 6) + 4n) & 255, G = (u + 2n) & 255,
;;   B = ((2v + n) & 255) ^ (mix32(n*1000003 + v*640 + u) & 15).
;; R and G are computed in place, without shifting back down:
;;   R << 16 = ((u*u << 10) + (v*v << 10) + (4n << 16)) & 0xff0000 (bits 16-23 of the
;;   sum are (((u*u + v*v) >> 6) + 4n) & 255; a left shift distributes over a wrapping
;;   add), G << 8 = ((u << 8) + (2n << 8)) & 0xff00.
;; 4 pixels (u .. u+3) go at a time.
(module
  (memory (export "memory") 1)

  ;; Writes rows v0 .. v1-1, columns ua .. ub-1 of V for frame $n: row v at
  ;; $dst + (v - v0)·$pitch, pixel u at + 4·(u - ua). Each row is written in whole
  ;; vectors, up to 3 pixels past ub: $pitch is a multiple of 16, at least
  ;; 4·(ub - ua) rounded up to 16. ub > ua and v1 > v0.
  (func (export "video") (param $dst i32) (param $pitch i32) (param $n i32)
    (param $ua i32) (param $ub i32) (param $v0 i32) (param $v1 i32)
    (local $v i32) (local $p i32) (local $end i32) (local $hashBase i32)
    (local $u v128) (local $g v128) (local $x v128) (local $r v128) (local $d v128) (local $b v128)
    (local $h v128) (local $c1 v128) (local $c2 v128) (local $maskR v128) (local $maskG v128)
    (local $four v128) (local $gStep v128) (local $low v128) (local $dInit v128) (local $dStep v128)
    ;; The constants sit in locals: V8 builds a v128.const anew at each use, several
    ;; instructions each, in the loop (this made the kernel about twice as slow).
    (local.set $c1 (v128.const i32x4 0x7feb352d 0x7feb352d 0x7feb352d 0x7feb352d))
    (local.set $c2 (v128.const i32x4 0x846ca68b 0x846ca68b 0x846ca68b 0x846ca68b))
    (local.set $maskR (v128.const i32x4 0xff0000 0xff0000 0xff0000 0xff0000))
    (local.set $maskG (v128.const i32x4 0xff00 0xff00 0xff00 0xff00))
    (local.set $low (v128.const i32x4 15 15 15 15))
    (local.set $four (v128.const i32x4 4 4 4 4))
    (local.set $gStep (v128.const i32x4 1024 1024 1024 1024))
    (local.set $dInit (v128.const i32x4 16384 16384 16384 16384))
    (local.set $dStep (v128.const i32x4 32768 32768 32768 32768))
    (local.set $hashBase (i32.mul (local.get $n) (i32.const 1000003)))
    (local.set $v (local.get $v0))
    (loop $rows
      (local.set $p (local.get $dst))
      (local.set $end (i32.add (local.get $dst) (i32.shl
        (i32.shr_u (i32.add (i32.sub (local.get $ub) (local.get $ua)) (i32.const 3)) (i32.const 2))
        (i32.const 4))))
      (local.set $u (i32x4.add (i32x4.splat (local.get $ua)) (v128.const i32x4 0 1 2 3)))
      ;; (u + 2n) << 8, masked per vector.
      (local.set $g (i32x4.shl
        (i32x4.add (local.get $u) (i32x4.splat (i32.shl (local.get $n) (i32.const 1))))
        (i32.const 8)))
      ;; mix32's input n*1000003 + v*640 + u.
      (local.set $x (i32x4.add (local.get $u) (i32x4.splat
        (i32.add (local.get $hashBase) (i32.mul (local.get $v) (i32.const 640))))))
      ;; R's sum (u*u << 10) + (v*v << 10) + (4n << 16), then stepped by adds:
      ;; (u + 4)^2 - u^2 = 8u + 16, which grows by 32 a step.
      (local.set $r (i32x4.add (i32x4.shl (i32x4.mul (local.get $u) (local.get $u)) (i32.const 10))
        (i32x4.splat (i32.add
          (i32.shl (i32.mul (local.get $v) (local.get $v)) (i32.const 10))
          (i32.shl (local.get $n) (i32.const 18))))))
      (local.set $d (i32x4.add (i32x4.shl (local.get $u) (i32.const 13)) (local.get $dInit)))
      ;; (2v + n) & 255: B's high bits.
      (local.set $b (i32x4.splat (i32.and
        (i32.add (i32.shl (local.get $v) (i32.const 1)) (local.get $n)) (i32.const 255))))
      (loop $px4
        ;; mix32
        (local.set $h (v128.xor (local.get $x) (i32x4.shr_u (local.get $x) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (local.get $c1)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 15))))
        (local.set $h (i32x4.mul (local.get $h) (local.get $c2)))
        (v128.store (local.get $p)
          (v128.xor
            (v128.or
              (v128.or
                (v128.and (local.get $r) (local.get $maskR))
                (v128.and (local.get $g) (local.get $maskG)))
              (local.get $b))
            ;; the last xor-shift of mix32, low 4 bits
            (v128.and (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16)))
              (local.get $low))))
        (local.set $r (i32x4.add (local.get $r) (local.get $d)))
        (local.set $d (i32x4.add (local.get $d) (local.get $dStep)))
        (local.set $g (i32x4.add (local.get $g) (local.get $gStep)))
        (local.set $x (i32x4.add (local.get $x) (local.get $four)))
        (br_if $px4 (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 16)))
          (local.get $end))))
      (local.set $dst (i32.add (local.get $dst) (local.get $pitch)))
      (br_if $rows (i32.lt_u (local.tee $v (i32.add (local.get $v) (i32.const 1)))
        (local.get $v1))))))
