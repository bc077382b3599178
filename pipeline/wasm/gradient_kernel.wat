;; SIMD kernel of Tight's gradient filter (sinks/vnc/encodings/tight.ts,
;; gradientDifferences) over 32-bpp pixels whose red, green and blue are bytes.
;; sinks/vnc/encodings/gradient_wasm.ts feeds it; `deno task wasm` assembles this
;; file into gradient_kernel.ts.
;;
;; Per byte, with the neighbours left (a), above (b) and above-left (c), the
;; prediction clamp(a + b - c, 0, 255) is, without widening,
;;   sub_sat_u(add_sat_u(a, sub_sat_u(b, c)), sub_sat_u(c, b))
;; (one of the two inner differences is 0: b >= c adds b - c and saturates at 255,
;; b < c takes c - b away and saturates at 0), and the difference sent is the
;; wrapping value - prediction. The prediction reads original pixels only, so 4
;; pixels (16 bytes, the fourth byte of each computed and dropped) go at a time.
;;
;; A row's left neighbours are its own bytes moved up by one pixel, the previous
;; vector's last pixel shifted in (0 at the row's start); above-left likewise from
;; the row above. The row above the first is read from src - 4w: the caller puts the
;; previous band's last row there, or zeros.
;;
;; Each vector's 4 differences go through the R, G, B byte permutation at 0 into 12
;; bytes, stored as 16 with the next store 12 bytes on: a row's last vector writes
;; past its end (at most 13 bytes, which the next row overwrites), and reads up to
;; 3 pixels past it. Callers leave 16 bytes of scratch after a band's input and its
;; output. Zero differences are counted from the stored lanes' bitmask, only over
;; the row's pixels (the last vector's lanes by the mask $tail). $w and $h are never 0.
(module
  (memory (export "memory") 1)

  ;; Parameters at 0: PERM, v128: output lane 3p + c takes byte 4p + at[c] (p 0-3,
  ;; c 0-2); lanes 12-15 any index 0-15 (written, then overwritten). Pixels from 16.

  ;; Writes the 3·$w·$h differences of the $w x $h pixels at $src (rows 4·$w bytes
  ;; apart, the row above at $src - 4·$w) to $dst; returns how many are zero.
  ;; $tail: the bits of the last vector's lanes inside the row, 2^(3·k) - 1 for
  ;; k = $w - 4·(ceil($w/4) - 1) pixels.
  (func (export "gradient") (param $src i32) (param $dst i32) (param $w i32) (param $h i32)
    (param $tail i32) (result i32)
    (local $row i32) (local $x i32) (local $out i32) (local $zeros i32) (local $bits i32)
    (local $perm v128) (local $cur v128) (local $up v128) (local $prev v128) (local $prevUp v128)
    (local $left v128) (local $upLeft v128) (local $diff v128)
    (local.set $perm (v128.load (i32.const 0)))
    (local.set $row (i32.shl (local.get $w) (i32.const 2)))
    (loop $rows
      (local.set $x (i32.const 0))
      (local.set $out (local.get $dst))
      (local.set $prev (v128.const i64x2 0 0))
      (local.set $prevUp (v128.const i64x2 0 0))
      (loop $px4
        (local.set $cur (v128.load (i32.add (local.get $src) (local.get $x))))
        (local.set $up (v128.load (i32.sub (i32.add (local.get $src) (local.get $x))
          (local.get $row))))
        (local.set $left (i8x16.shuffle 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27
          (local.get $prev) (local.get $cur)))
        (local.set $upLeft (i8x16.shuffle 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27
          (local.get $prevUp) (local.get $up)))
        (local.set $diff (i8x16.relaxed_swizzle
          (i8x16.sub (local.get $cur) (i8x16.sub_sat_u
            (i8x16.add_sat_u (local.get $left) (i8x16.sub_sat_u (local.get $up) (local.get $upLeft)))
            (i8x16.sub_sat_u (local.get $upLeft) (local.get $up))))
          (local.get $perm)))
        (v128.store (local.get $out) (local.get $diff))
        (local.set $bits (i32.and (i32.const 0xfff)
          (i8x16.bitmask (i8x16.eq (local.get $diff) (v128.const i64x2 0 0)))))
        (local.set $zeros (i32.add (local.get $zeros) (i32.popcnt (local.get $bits))))
        (local.set $prev (local.get $cur))
        (local.set $prevUp (local.get $up))
        (local.set $out (i32.add (local.get $out) (i32.const 12)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br_if $px4 (i32.lt_u (local.get $x) (local.get $row))))
      ;; the last vector's zeros past the row's end
      (local.set $zeros (i32.sub (local.get $zeros) (i32.popcnt (i32.and (local.get $bits)
        (i32.xor (local.get $tail) (i32.const 0xfff))))))
      (local.set $src (i32.add (local.get $src) (local.get $row)))
      (local.set $dst (i32.add (local.get $dst) (i32.mul (local.get $w) (i32.const 3))))
      (br_if $rows (local.tee $h (i32.sub (local.get $h) (i32.const 1)))))
    (local.get $zeros))
)
