;; SIMD kernels of convertPixels for a 32-bpp source whose red, green and blue are
;; whole bytes (or absent), to 8, 16 or 32 bpp with destination maxima up to 255.
;; pipeline/convert_wasm.ts fills in the parameters and checks the arithmetic;
;; `deno task wasm` assembles this file into convert_kernel.ts.
;;
;; Pixels go 8 at a time: two 16-byte loads give px 0-3 (a) and px 4-7 (b), and byte
;; swizzles spread the channels over 16-bit lanes:
;;   c01a = [c0 of px 0-3 | c1 of px 0-3],  c01b = the same for px 4-7,
;;   c2   = [c2 of px 0-7].
;; Each lane is scaled by q15mulr, (c * X + 2^14) >> 15, with an X that is exact for
;; all 256 inputs; moved into place by multiplying by 2^shift (a 16-bit lane drops
;; what falls off its top); and ORed into 8 pixels of 16 bits: with L, the low 16 bits
;; of each destination pixel, with H (32 bpp) the high 16 bits. The result is
;; little-endian; `swap` then reorders the bytes of a big-endian destination.
;;
;; The relaxed-SIMD forms are single instructions on x86 and ARM. `deno task wasm`
;; also builds a plain-SIMD copy by renaming them to their exact counterparts; both
;; compute the same here, as swizzle indices are 0-15 or 0x80 (0 in both) and no lane
;; is -32768 (the one input where relaxed q15mulr may differ).
;;
;; The kernels repeat the same steps rather than call a helper: their speed would
;; then hang on V8 inlining it. They work in whole groups of 8 pixels (conv8: 16), so
;; they read and write up to 15 pixels past the last: callers leave 64 bytes of
;; scratch after a band's input and its output. $n is never 0.
(module
  (memory (export "memory") 1)

  ;; Parameters at 0, v128 each; pixels from 256.
  ;;   0 M01  swizzle to c01a / c01b        16 M2A, 32 M2B  swizzles to c2 (ORed)
  ;;  48 X01  q15 multipliers of c0 | c1    64 X2
  ;;  80 L01  2^shift, low 16 bits          96 L2
  ;; 112 H01  2^(shift - 16), high 16 bits 128 H2
  ;; 144 SWAP byte order, for `swap`       160 PERM  byte permutation, for `perm32`

  ;; 32 bpp -> 16 bpp.
  (func (export "conv16") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32)
    (local $m01 v128) (local $m2a v128) (local $m2b v128) (local $x01 v128) (local $x2 v128)
    (local $l01 v128) (local $l2 v128)
    (local $a v128) (local $b v128) (local $p01a v128) (local $p01b v128)
    (local.set $m01 (v128.load (i32.const 0)))
    (local.set $m2a (v128.load (i32.const 16)))
    (local.set $m2b (v128.load (i32.const 32)))
    (local.set $x01 (v128.load (i32.const 48)))
    (local.set $x2 (v128.load (i32.const 64)))
    (local.set $l01 (v128.load (i32.const 80)))
    (local.set $l2 (v128.load (i32.const 96)))
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (loop $px8
      (local.set $a (v128.load (local.get $src)))
      (local.set $b (v128.load offset=16 (local.get $src)))
      (local.set $p01a (i16x8.mul (local.get $l01) (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $a) (local.get $m01)))))
      (local.set $p01b (i16x8.mul (local.get $l01) (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $b) (local.get $m01)))))
      (v128.store (local.get $dst) (v128.or
        (v128.or
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $p01a) (local.get $p01b))
          (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $p01a) (local.get $p01b)))
        (i16x8.mul (local.get $l2) (i16x8.relaxed_q15mulr_s (local.get $x2) (v128.or
          (i8x16.relaxed_swizzle (local.get $a) (local.get $m2a))
          (i8x16.relaxed_swizzle (local.get $b) (local.get $m2b)))))))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (br_if $px8 (i32.lt_u (local.get $src) (local.get $end)))))

  ;; 32 bpp -> 8 bpp: conv16's steps twice, keeping the low byte of 16 pixels.
  (func (export "conv8") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32)
    (local $m01 v128) (local $m2a v128) (local $m2b v128) (local $x01 v128) (local $x2 v128)
    (local $l01 v128) (local $l2 v128)
    (local $a v128) (local $b v128) (local $p01a v128) (local $p01b v128) (local $lo v128)
    (local.set $m01 (v128.load (i32.const 0)))
    (local.set $m2a (v128.load (i32.const 16)))
    (local.set $m2b (v128.load (i32.const 32)))
    (local.set $x01 (v128.load (i32.const 48)))
    (local.set $x2 (v128.load (i32.const 64)))
    (local.set $l01 (v128.load (i32.const 80)))
    (local.set $l2 (v128.load (i32.const 96)))
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (loop $px16
      ;; px 0-7 into $lo
      (local.set $a (v128.load (local.get $src)))
      (local.set $b (v128.load offset=16 (local.get $src)))
      (local.set $p01a (i16x8.mul (local.get $l01) (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $a) (local.get $m01)))))
      (local.set $p01b (i16x8.mul (local.get $l01) (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $b) (local.get $m01)))))
      (local.set $lo (v128.or
        (v128.or
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $p01a) (local.get $p01b))
          (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $p01a) (local.get $p01b)))
        (i16x8.mul (local.get $l2) (i16x8.relaxed_q15mulr_s (local.get $x2) (v128.or
          (i8x16.relaxed_swizzle (local.get $a) (local.get $m2a))
          (i8x16.relaxed_swizzle (local.get $b) (local.get $m2b)))))))
      ;; px 8-15, then the even bytes of both
      (local.set $a (v128.load offset=32 (local.get $src)))
      (local.set $b (v128.load offset=48 (local.get $src)))
      (local.set $p01a (i16x8.mul (local.get $l01) (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $a) (local.get $m01)))))
      (local.set $p01b (i16x8.mul (local.get $l01) (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $b) (local.get $m01)))))
      (v128.store (local.get $dst) (i8x16.shuffle
        0 2 4 6 8 10 12 14 16 18 20 22 24 26 28 30
        (local.get $lo)
        (v128.or
          (v128.or
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $p01a) (local.get $p01b))
            (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $p01a) (local.get $p01b)))
          (i16x8.mul (local.get $l2) (i16x8.relaxed_q15mulr_s (local.get $x2) (v128.or
            (i8x16.relaxed_swizzle (local.get $a) (local.get $m2a))
            (i8x16.relaxed_swizzle (local.get $b) (local.get $m2b))))))))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (br_if $px16 (i32.lt_u (local.get $src) (local.get $end)))))

  ;; 32 bpp -> 32 bpp: the low and the high 16 bits, interleaved.
  (func (export "conv32") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32)
    (local $m01 v128) (local $m2a v128) (local $m2b v128) (local $x01 v128) (local $x2 v128)
    (local $l01 v128) (local $l2 v128) (local $h01 v128) (local $h2 v128)
    (local $a v128) (local $b v128) (local $d01a v128) (local $d01b v128) (local $d2 v128)
    (local $p01a v128) (local $p01b v128) (local $lo v128) (local $hi v128)
    (local.set $m01 (v128.load (i32.const 0)))
    (local.set $m2a (v128.load (i32.const 16)))
    (local.set $m2b (v128.load (i32.const 32)))
    (local.set $x01 (v128.load (i32.const 48)))
    (local.set $x2 (v128.load (i32.const 64)))
    (local.set $l01 (v128.load (i32.const 80)))
    (local.set $l2 (v128.load (i32.const 96)))
    (local.set $h01 (v128.load (i32.const 112)))
    (local.set $h2 (v128.load (i32.const 128)))
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (loop $px8
      (local.set $a (v128.load (local.get $src)))
      (local.set $b (v128.load offset=16 (local.get $src)))
      (local.set $d01a (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $a) (local.get $m01))))
      (local.set $d01b (i16x8.relaxed_q15mulr_s (local.get $x01)
        (i8x16.relaxed_swizzle (local.get $b) (local.get $m01))))
      (local.set $d2 (i16x8.relaxed_q15mulr_s (local.get $x2) (v128.or
        (i8x16.relaxed_swizzle (local.get $a) (local.get $m2a))
        (i8x16.relaxed_swizzle (local.get $b) (local.get $m2b)))))
      ;; low 16 bits
      (local.set $p01a (i16x8.mul (local.get $l01) (local.get $d01a)))
      (local.set $p01b (i16x8.mul (local.get $l01) (local.get $d01b)))
      (local.set $lo (v128.or
        (v128.or
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $p01a) (local.get $p01b))
          (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $p01a) (local.get $p01b)))
        (i16x8.mul (local.get $l2) (local.get $d2))))
      ;; high 16 bits
      (local.set $p01a (i16x8.mul (local.get $h01) (local.get $d01a)))
      (local.set $p01b (i16x8.mul (local.get $h01) (local.get $d01b)))
      (local.set $hi (v128.or
        (v128.or
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $p01a) (local.get $p01b))
          (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $p01a) (local.get $p01b)))
        (i16x8.mul (local.get $h2) (local.get $d2))))
      ;; px 0-3, px 4-7
      (v128.store (local.get $dst)
        (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $lo) (local.get $hi)))
      (v128.store offset=16 (local.get $dst)
        (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $lo) (local.get $hi)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
      (br_if $px8 (i32.lt_u (local.get $src) (local.get $end)))))

  ;; 32 bpp -> 32 bpp when each channel is copied unscaled into a byte of its own:
  ;; one byte permutation (0x80 for a zero byte) per 4 pixels, either byte order.
  (func (export "perm32") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32) (local $perm v128)
    (local.set $perm (v128.load (i32.const 160)))
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (loop $px8
      (v128.store (local.get $dst)
        (i8x16.relaxed_swizzle (v128.load (local.get $src)) (local.get $perm)))
      (v128.store offset=16 (local.get $dst)
        (i8x16.relaxed_swizzle (v128.load offset=16 (local.get $src)) (local.get $perm)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
      (br_if $px8 (i32.lt_u (local.get $src) (local.get $end)))))

  ;; Reorders the bytes of $n (a multiple of 16, not 0) bytes at $p in place: the
  ;; conv kernels' little-endian pixels into a big-endian destination's order.
  (func (export "swap") (param $p i32) (param $n i32)
    (local $end i32) (local $swap v128)
    (local.set $swap (v128.load (i32.const 144)))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (loop $b16
      (v128.store (local.get $p)
        (i8x16.relaxed_swizzle (v128.load (local.get $p)) (local.get $swap)))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br_if $b16 (i32.lt_u (local.get $p) (local.get $end)))))
)
