/* One pooled layer of a wp network, computed bit-serially from its lookup table (the C side of
 * `python -m wp export`; the same arithmetic as wp.lut.lut_conv2d).
 *
 * Include the generated header first: it defines wp_lut_t (the table entry type) and wp_index_t
 * (the pool index type), and per layer the arrays and #defines passed below, e.g.
 *
 *     wp_lut_conv2d(codes, H, W, WP_CONV2_IN_CHANNELS, WP_CONV2_OUT_CHANNELS, WP_CONV2_KERNEL_H,
 *                   WP_CONV2_KERNEL_W, WP_CONV2_STRIDE_H, WP_CONV2_STRIDE_W, WP_CONV2_PAD_H, WP_CONV2_PAD_W,
 *                   WP_CONV2_INDICES, WP_CONV2_LUT, WP_K, WP_CONV2_ACT_BITS, WP_CONV2_ACT_SIGNED,
 *                   WP_SIGNED_SPLIT, out);
 *
 * The float output of the layer is out * WP_CONV2_SCALE + bias (WP_CONV2_SCALE = activation step x
 * table step), times the layer's pool scale where it has one (WP_CONV2_POOL_SCALE, WP_CONV2_POOL_SCALES
 * values: 1 for the layer or one per output channel): wp_requantize. A pooled Linear layer is a 1x1
 * convolution of a 1x1 image.
 *
 * Layouts: codes [C][H][W] integer activation codes (unsigned in [0, 2^bits), or signed in
 * [-2^(bits-1), 2^(bits-1)), read as two's complement); indices [O][KH][KW][C/8], one pool index per
 * z-vector (8 consecutive input channels); lut [256][K]: lut[s*K + k] is pool vector k's dot product
 * with the 8-bit pattern s (bit j of s = channel j of the group); out [O][OH][OW].
 */
#include <stdint.h>

#define WP_VECTOR 8
#define WP_MAX_PLANES 32

/* Pool index i of a bit-packed index stream (bits per index, least significant bit first). */
static unsigned wp_packed_index(const uint8_t *packed, long i, int bits)
{
    unsigned value = 0;
    for (int j = 0; j < bits; j++) {
        long bit = i * bits + j;
        value |= (unsigned)((packed[bit >> 3] >> (bit & 7)) & 1) << j;
    }
    return value;
}

/* The 8-bit table row of bit plane b over channels 8g..8g+7 at pixel (y, x). */
static int wp_pattern(const int32_t *codes, int h, int w, int g, int y, int x, int b)
{
    int s = 0;
    for (int j = 0; j < WP_VECTOR; j++) {
        int32_t a = codes[((long)(WP_VECTOR * g + j) * h + y) * w + x];
        s |= ((a >> b) & 1) << j; /* arithmetic shift: two's-complement bits of a negative code */
    }
    return s;
}

/* split: signed codes as a+ - a- (two lookups per bit) instead of two's complement. */
static void wp_lut_conv2d(const int32_t *codes, int h, int w, int in_c, int out_c, int kh, int kw,
                          int sh, int sw, int ph, int pw, const wp_index_t *indices, const wp_lut_t *lut,
                          int k, int bits, int is_signed, int split, int64_t *out)
{
    int groups = in_c / WP_VECTOR;
    int oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1;
    int planes = (is_signed && split) ? 2 * bits - 1 : bits;
    int pattern[WP_MAX_PLANES];
    int64_t weight[WP_MAX_PLANES]; /* +-2^b: the top plane of a two's-complement code is subtracted */
    int32_t split_codes[2][WP_VECTOR];

    for (long i = 0; i < (long)out_c * oh * ow; i++)
        out[i] = 0;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int ky = 0; ky < kh; ky++)
                for (int kx = 0; kx < kw; kx++) {
                    int y = oy * sh - ph + ky, x = ox * sw - pw + kx;
                    if (y < 0 || y >= h || x < 0 || x >= w)
                        continue; /* zero padding: pattern 0 in every plane, and lut[0][k] = 0 */
                    for (int g = 0; g < groups; g++) {
                        /* the input vector's bit-plane patterns, once for all filters */
                        if (!(is_signed && split)) {
                            for (int b = 0; b < bits; b++) {
                                pattern[b] = wp_pattern(codes, h, w, g, y, x, b);
                                weight[b] = (is_signed && b == bits - 1) ? -((int64_t)1 << b) : (int64_t)1 << b;
                            }
                        } else {
                            for (int j = 0; j < WP_VECTOR; j++) {
                                int32_t a = codes[((long)(WP_VECTOR * g + j) * h + y) * w + x];
                                split_codes[0][j] = a > 0 ? a : 0;
                                split_codes[1][j] = a < 0 ? -a : 0;
                            }
                            for (int p = 0; p < planes; p++) {
                                int neg = p >= bits - 1, b = neg ? p - (bits - 1) : p;
                                pattern[p] = 0;
                                for (int j = 0; j < WP_VECTOR; j++)
                                    pattern[p] |= ((split_codes[neg][j] >> b) & 1) << j;
                                weight[p] = neg ? -((int64_t)1 << b) : (int64_t)1 << b;
                            }
                        }
                        for (int o = 0; o < out_c; o++) {
                            int idx = indices[(((long)o * kh + ky) * kw + kx) * groups + g];
                            int64_t acc = 0;
                            for (int p = 0; p < planes; p++)
                                acc += weight[p] * lut[(long)pattern[p] * k + idx];
                            out[((long)o * oh + oy) * ow + ox] += acc;
                        }
                    }
                }
}

/* The layer's float output from its accumulators out[O][P] (P output pixels): (float)(acc * scale *
 * pool_scale[o]) + bias[o], the product in double, then rounded to float, then the bias added in float:
 * the same operations as wp.lutnet.LUTLayer. pool_scale: pool_scales values (1: one for the layer, or
 * one per output channel), NULL for a pool without scale; bias NULL for a layer without one. */
static void wp_requantize(const int64_t *acc, int out_c, long pixels, double scale, const float *pool_scale,
                          int pool_scales, const float *bias, float *out)
{
    for (int o = 0; o < out_c; o++)
        for (long p = 0; p < pixels; p++) {
            double v = (double)acc[(long)o * pixels + p] * scale;
            if (pool_scale)
                v *= (double)pool_scale[pool_scales == 1 ? 0 : o];
            float y = (float)v;
            out[(long)o * pixels + p] = bias ? y + bias[o] : y;
        }
}
