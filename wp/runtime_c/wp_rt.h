/* wp runtime: a whole weight-pool network on integer data, in plain C99, with no dynamic allocation.
 *
 * A network is a list of ops (wp_op) that read and write one static byte arena; python -m wp's
 * wp.intnet writes the list, the constant arrays and the arena size into a header (see wp.intnet for the
 * arithmetic, which this file follows bit for bit). Activations are HWC (channel fastest), stored as one
 * byte per value: stored = code - zp (zp is 128 for unsigned 8-bit codes, else 0), the CMSIS-NN
 * convention of an int8 tensor and an input offset.
 *
 * Ops:
 *   WP_QUANT_INPUT  float HWC image -> codes: clamp(rint(x * inv_step)) (round half to even, as torch.round)
 *   WP_CONV8        int8 weights OHWI, CMSIS arm_convolve_s8 loop order (out_ch, y, x, ky, kx, in_ch),
 *                   int32 accumulator, fused requantization
 *   WP_LUTCONV      bit-serial lookup-table conv of a pooled layer (indices [ky][kx][C/8][F]), variants
 *                   plain / active-table cache / cache + precomputation, fused requantization
 *   WP_DWCONV8      depthwise conv, int8 weights [kh][kw][C], CMSIS arm_depthwise_conv_s8 order (y, x, ch, ky, kx)
 *   WP_MAXPOOL      codes -> codes
 *   WP_SUMPOOL      codes -> int32 window sums (average pooling with the divisor folded into a requant)
 *   WP_REQUANT      int32 -> codes or int32
 *   WP_FLATTEN      codes HWC -> codes in torch's NCHW flatten order (channel slowest), for a pooled linear
 * Requantization of output channel c (every op that has one):
 *   v = clamp(acc, pre_lo[c], pre_hi[c]) * m0[c] + in1 * m1[c] + b[c]   (int64; pre_* optional, in1 optional)
 *   q = (v + 2^(shift-1)) >> shift (arithmetic), clamped to [lo, hi]; stored as q - out_zp
 *   (codes) or as int32 q (out_kind WP_INT32).
 */
#ifndef WP_RT_H
#define WP_RT_H

#include <stdint.h>

#ifdef WP_LUT16
typedef int16_t wp_lut_t;
#else
typedef int8_t wp_lut_t;
#endif

enum { WP_QUANT_INPUT = 1, WP_CONV8, WP_LUTCONV, WP_MAXPOOL, WP_SUMPOOL, WP_REQUANT, WP_DWCONV8, WP_FLATTEN };
enum { WP_PLAIN = 0, WP_CACHE = 1, WP_PRECOMPUTE = 2 };
enum { WP_NONE = 0, WP_CODES = 1, WP_INT32 = 2 };

typedef struct {
    uint8_t type, variant;   /* op, LUT kernel variant */
    uint8_t bits, is_signed; /* LUT: input activation bits and signedness */
    int16_t in_zp, out_zp;   /* stored = code - zp */
    uint16_t in_h, in_w, in_c, out_h, out_w, out_c;
    uint8_t kh, kw, sh, sw, ph, pw;
    uint16_t k;              /* pool size */
    uint8_t in1_kind, out_kind, shift;
    int16_t in1_zp;
    int32_t lo, hi;          /* output clamp */
    int32_t in0, in1, out;   /* arena byte offsets */
    float inv_step;          /* WP_QUANT_INPUT */
    const void *w;           /* int8 weights OHWI ([kh][kw][C] depthwise), or uint8 indices [ky][kx][C/8][F] */
    const wp_lut_t *lut;     /* [256][K] */
    const int32_t *m0, *m1;  /* per output channel multipliers */
    const int64_t *b;        /* per output channel offsets */
    const int32_t *pre_lo, *pre_hi; /* per output channel clamp of the accumulator (optional) */
} wp_op;

typedef struct {
    const wp_op *ops;
    int n_ops;
    uint8_t *arena;
    int32_t input_off, output_off, n_out;
} wp_net;

/* Runs op i of the net (input image already in place for WP_QUANT_INPUT: float HWC at `image`). */
void wp_run_op(const wp_net *net, int i, const float *image);
/* Runs the whole net; the logits (int32) are at net->arena + net->output_off. */
void wp_run(const wp_net *net, const float *image);
/* Called after every op (a no-op; an emulator reads instruction counts at its address). */
void wp_mark(int i);
/* One bit-plane transpose: 8 bytes (channel j = byte j) -> 8 patterns (pattern b = byte b). */
void wp_transpose8(uint32_t *lo, uint32_t *hi);

#endif
