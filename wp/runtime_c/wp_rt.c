/* wp runtime kernels (see wp_rt.h). Plain C99, no dynamic allocation: the scratch buffers below are
 * static and sized by WP_MAX_FILTERS (largest output channel count) and WP_MAX_K (largest pool). */
#include "wp_rt.h"

#include <math.h>
#include <string.h>

#ifndef WP_MAX_FILTERS
#define WP_MAX_FILTERS 512
#endif
#ifndef WP_MAX_K
#define WP_MAX_K 256
#endif

static int32_t wp_holder[WP_MAX_FILTERS];       /* per-pixel accumulators of a LUT conv */
static wp_lut_t wp_cache[8 * WP_MAX_K] __attribute__((aligned(4)));          /* the active table: the B rows of this group's patterns */
static int32_t wp_result[WP_MAX_K];             /* precomputation: every pool vector's dot product */

__attribute__((noinline)) void wp_mark(int i)
{
    __asm__ volatile("" : : "r"(i) : "memory");
}

static inline uint32_t ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 8x8 bit transpose of a little-endian 8-byte vector: byte j bit b -> byte b bit j. */
static inline void transpose8(uint32_t *plo, uint32_t *phi)
{
    uint32_t x = *plo, y = *phi, t;
    t = (x ^ (x >> 7)) & 0x00AA00AAu; x ^= t ^ (t << 7);
    t = (y ^ (y >> 7)) & 0x00AA00AAu; y ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCCu; x ^= t ^ (t << 14);
    t = (y ^ (y >> 14)) & 0x0000CCCCu; y ^= t ^ (t << 14);
    t = ((x >> 4) ^ y) & 0x0F0F0F0Fu; y ^= t; x ^= t << 4;
    *plo = x; *phi = y;
}

void wp_transpose8(uint32_t *lo, uint32_t *hi) { transpose8(lo, hi); }

/* ---- requantization ------------------------------------------------------------------------------- */

static inline int32_t requant(const wp_op *op, int c, int32_t acc, int32_t in1)
{
    if (op->pre_lo) {
        if (acc < op->pre_lo[c]) acc = op->pre_lo[c];
        if (acc > op->pre_hi[c]) acc = op->pre_hi[c];
    }
    int64_t v = (int64_t)acc * op->m0[c] + op->b[c];
    if (op->in1_kind != WP_NONE)
        v += (int64_t)in1 * op->m1[c];
    if (op->shift)
        v = (v + ((int64_t)1 << (op->shift - 1))) >> op->shift;
    if (v < op->lo) v = op->lo;
    if (v > op->hi) v = op->hi;
    return (int32_t)v;
}

static inline int32_t read_in1(const wp_op *op, const uint8_t *arena, long i)
{
    if (op->in1_kind == WP_CODES)
        return (int32_t)(int8_t)arena[op->in1 + i] + op->in1_zp;
    if (op->in1_kind == WP_INT32) {
        int32_t v;
        memcpy(&v, arena + op->in1 + 4 * i, 4);
        return v;
    }
    return 0;
}

static inline void store(const wp_op *op, uint8_t *arena, long i, int32_t q)
{
    if (op->out_kind == WP_INT32)
        memcpy(arena + op->out + 4 * i, &q, 4);
    else
        arena[op->out + i] = (uint8_t)(int8_t)(q - op->out_zp);
}

/* ---- int8 convolution, CMSIS-NN arm_convolve_s8 (no DSP) order and arithmetic ------------------------- */

__attribute__((noinline)) static void conv8(const wp_op *op, uint8_t *arena)
{
    const int8_t *in = (const int8_t *)(arena + op->in0);
    const int8_t *w = (const int8_t *)op->w;
    const int ic = op->in_c, ih = op->in_h, iw = op->in_w, oc = op->out_c, oh = op->out_h, ow = op->out_w;
    const int kh = op->kh, kw = op->kw;
    const int32_t in_off = op->in_zp;
    for (int o = 0; o < oc; o++) {
        const int8_t *wo = w + (long)o * kh * kw * ic;
        for (int oy = 0; oy < oh; oy++) {
            const int y0 = oy * op->sh - op->ph;
            const int ky0 = y0 < 0 ? -y0 : 0, ky1 = ih - y0 < kh ? ih - y0 : kh;
            for (int ox = 0; ox < ow; ox++) {
                const int x0 = ox * op->sw - op->pw;
                const int kx0 = x0 < 0 ? -x0 : 0, kx1 = iw - x0 < kw ? iw - x0 : kw;
                int32_t sum = 0;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const int8_t *a = in + ((long)(y0 + ky) * iw + (x0 + kx)) * ic;
                        const int8_t *b = wo + (ky * kw + kx) * ic;
                        for (int c = 0; c < ic; c++)
                            sum += ((int32_t)a[c] + in_off) * b[c];
                    }
                const long i = ((long)oy * ow + ox) * oc + o;
                store(op, arena, i, requant(op, o, sum, read_in1(op, arena, i)));
            }
        }
    }
}

/* ---- depthwise int8 convolution, CMSIS-NN arm_depthwise_conv_s8 (generic, channel multiplier 1) ---------- */

__attribute__((noinline)) static void dwconv8(const wp_op *op, uint8_t *arena)
{
    const int8_t *in = (const int8_t *)(arena + op->in0);
    const int8_t *w = (const int8_t *)op->w;
    const int c_n = op->in_c, ih = op->in_h, iw = op->in_w, kw = op->kw;
    const int32_t in_off = op->in_zp;
    for (int oy = 0; oy < op->out_h; oy++) {
        const int y0 = oy * op->sh - op->ph;
        const int ky0 = y0 < 0 ? -y0 : 0, ky1 = ih - y0 < op->kh ? ih - y0 : op->kh;
        for (int ox = 0; ox < op->out_w; ox++) {
            const int x0 = ox * op->sw - op->pw;
            const int kx0 = x0 < 0 ? -x0 : 0, kx1 = iw - x0 < kw ? iw - x0 : kw;
            const long base = ((long)oy * op->out_w + ox) * c_n;
            for (int c = 0; c < c_n; c++) {
                int32_t sum = 0;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++)
                        sum += ((int32_t)in[((long)(y0 + ky) * iw + (x0 + kx)) * c_n + c] + in_off) *
                               w[(ky * kw + kx) * c_n + c];
                store(op, arena, base + c, requant(op, c, sum, read_in1(op, arena, base + c)));
            }
        }
    }
}

/* ---- bit-serial LUT kernels --------------------------------------------------------------------------
 * One call handles one input z-vector (8 channels at one tap) for all F filters. Bit plane b weighs 2^b;
 * with signed (two's-complement) codes the top plane is subtracted. The kernels are instantiated per bit
 * width (unrolled bit loop) and signedness, and the cached ones per pool size (constant row offsets). */

#define TP(b) ((int32_t)r##b[i] << (b))
#define TC(b) ((int32_t)c[i + (b) * KC] << (b))
#define LOW0(T) 0
#define LOW1(T) T(0)
#define LOW2(T) LOW1(T) + T(1)
#define LOW3(T) LOW2(T) + T(2)
#define LOW4(T) LOW3(T) + T(3)
#define LOW5(T) LOW4(T) + T(4)
#define LOW6(T) LOW5(T) + T(5)
#define LOW7(T) LOW6(T) + T(6)
#define SUMU(B, BM1, T) (LOW##BM1(T) + T(BM1))
#define SUMS(B, BM1, T) (LOW##BM1(T) - T(BM1))

typedef void (*plain_fn)(int32_t *acc, const uint8_t *ix, int f_n, const wp_lut_t *const *rows);
typedef void (*cache_fn)(int32_t *acc, const uint8_t *ix, int f_n, const wp_lut_t *c, int k);
typedef void (*pre_fn)(int32_t *res, const wp_lut_t *c, int k);

#define ROWS const wp_lut_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3], *r4 = rows[4], \
                            *r5 = rows[5], *r6 = rows[6], *r7 = rows[7]; \
    (void)r0; (void)r1; (void)r2; (void)r3; (void)r4; (void)r5; (void)r6; (void)r7;

#define DEF_PLAIN(B, BM1, SG, SUM)                                                                      \
    static void plain_##SG##B(int32_t *acc, const uint8_t *ix, int f_n, const wp_lut_t *const *rows) \
    {                                                                                                   \
        ROWS                                                                                            \
        for (int f = 0; f < f_n; f++) {                                                                 \
            const unsigned i = ix[f];                                                                   \
            acc[f] += SUM(B, BM1, TP);                                                                  \
        }                                                                                               \
    }
#define DEF_CACHE(B, BM1, SG, SUM, KN, KEXPR)                                                           \
    static void cache_##SG##B##_##KN(int32_t *acc, const uint8_t *ix, int f_n, const wp_lut_t *c, int k) \
    {                                                                                                   \
        const int KC = KEXPR;                                                                           \
        (void)k;                                                                                        \
        for (int f = 0; f < f_n; f++) {                                                                 \
            const unsigned i = ix[f];                                                                   \
            acc[f] += SUM(B, BM1, TC);                                                                  \
        }                                                                                               \
    }                                                                                                   \
    static void pre_##SG##B##_##KN(int32_t *res, const wp_lut_t *c, int k)                              \
    {                                                                                                   \
        const int KC = KEXPR;                                                                           \
        (void)k;                                                                                        \
        for (unsigned i = 0; i < (unsigned)KC; i++)                                                     \
            res[i] = SUM(B, BM1, TC);                                                                   \
    }

#define DEF_ALL(B, BM1, SG, SUM)                \
    DEF_PLAIN(B, BM1, SG, SUM)                  \
    DEF_CACHE(B, BM1, SG, SUM, 32, 32)          \
    DEF_CACHE(B, BM1, SG, SUM, 64, 64)          \
    DEF_CACHE(B, BM1, SG, SUM, 128, 128)        \
    DEF_CACHE(B, BM1, SG, SUM, any, k)

DEF_ALL(1, 0, u, SUMU) DEF_ALL(2, 1, u, SUMU) DEF_ALL(3, 2, u, SUMU) DEF_ALL(4, 3, u, SUMU)
DEF_ALL(5, 4, u, SUMU) DEF_ALL(6, 5, u, SUMU) DEF_ALL(7, 6, u, SUMU) DEF_ALL(8, 7, u, SUMU)
DEF_ALL(2, 1, s, SUMS) DEF_ALL(3, 2, s, SUMS) DEF_ALL(4, 3, s, SUMS)
DEF_ALL(5, 4, s, SUMS) DEF_ALL(6, 5, s, SUMS) DEF_ALL(7, 6, s, SUMS) DEF_ALL(8, 7, s, SUMS)

#define TAB8(P, SG, SFX) {0, P##SG##1##SFX, P##SG##2##SFX, P##SG##3##SFX, P##SG##4##SFX, P##SG##5##SFX, \
                          P##SG##6##SFX, P##SG##7##SFX, P##SG##8##SFX}
#define TAB8S(P, SFX) {0, 0, P##s2##SFX, P##s3##SFX, P##s4##SFX, P##s5##SFX, P##s6##SFX, P##s7##SFX, P##s8##SFX}

static const plain_fn plain_tab[2][9] = {TAB8(plain_, u, ), TAB8S(plain_, )};
static const cache_fn cache_tab[4][2][9] = {
    {TAB8(cache_, u, _32), TAB8S(cache_, _32)}, {TAB8(cache_, u, _64), TAB8S(cache_, _64)},
    {TAB8(cache_, u, _128), TAB8S(cache_, _128)}, {TAB8(cache_, u, _any), TAB8S(cache_, _any)}};
static const pre_fn pre_tab[4][2][9] = {
    {TAB8(pre_, u, _32), TAB8S(pre_, _32)}, {TAB8(pre_, u, _64), TAB8S(pre_, _64)},
    {TAB8(pre_, u, _128), TAB8S(pre_, _128)}, {TAB8(pre_, u, _any), TAB8S(pre_, _any)}};

static int k_slot(int k) { return k == 32 ? 0 : k == 64 ? 1 : k == 128 ? 2 : 3; }

/* The active table: rows pat[b] of the table, K entries each, copied 16 bytes at a time (as a library
 * memcpy does with multi-word loads and stores), then word by word. */
static void fill_cache(const wp_lut_t *lut, const uint8_t *pat, int bits, int k)
{
    const int words = (int)(k * sizeof(wp_lut_t) / 4);
    for (int b = 0; b < bits; b++) {
        const uint32_t *src = (const uint32_t *)(const void *)(lut + (long)pat[b] * k);
        uint32_t *dst = (uint32_t *)(void *)(wp_cache + b * k);
        int j = 0;
        for (; j + 4 <= words; j += 4) {
            const uint32_t w0 = src[j], w1 = src[j + 1], w2 = src[j + 2], w3 = src[j + 3];
            dst[j] = w0; dst[j + 1] = w1; dst[j + 2] = w2; dst[j + 3] = w3;
        }
        for (; j < words; j++)
            dst[j] = src[j];
    }
}

__attribute__((noinline)) static void lutconv(const wp_op *op, uint8_t *arena)
{
    const uint8_t *in = arena + op->in0;
    const uint8_t *idx = (const uint8_t *)op->w;
    const int ic = op->in_c, ih = op->in_h, iw = op->in_w, f_n = op->out_c, oh = op->out_h, ow = op->out_w;
    const int kh = op->kh, kw = op->kw, groups = ic / 8, k = op->k, bits = op->bits, sg = op->is_signed;
    const uint32_t flip = op->in_zp == 128 ? 0x80808080u : 0u; /* stored = code - 128: code bits = stored ^ 0x80 */
    const int variant = (sizeof(wp_lut_t) * k) % 4 == 0 ? op->variant : WP_PLAIN; /* the cache copies words */
    const plain_fn pf = plain_tab[sg][bits];
    const cache_fn cf = cache_tab[k_slot(k)][sg][bits];
    const pre_fn rf = pre_tab[k_slot(k)][sg][bits];
    const wp_lut_t *rows[8];
    uint8_t pat[8];
    for (int b = 0; b < 8; b++)
        rows[b] = op->lut;
    for (int oy = 0; oy < oh; oy++) {
        const int y0 = oy * op->sh - op->ph;
        const int ky0 = y0 < 0 ? -y0 : 0, ky1 = ih - y0 < kh ? ih - y0 : kh;
        for (int ox = 0; ox < ow; ox++) {
            const int x0 = ox * op->sw - op->pw;
            const int kx0 = x0 < 0 ? -x0 : 0, kx1 = iw - x0 < kw ? iw - x0 : kw;
            for (int f = 0; f < f_n; f++)
                wp_holder[f] = 0;
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) {
                    const uint8_t *a = in + ((long)(y0 + ky) * iw + (x0 + kx)) * ic;
                    const uint8_t *ix = idx + (long)(ky * kw + kx) * groups * f_n;
                    for (int g = 0; g < groups; g++, a += 8, ix += f_n) {
                        uint32_t lo = ld32(a) ^ flip, hi = ld32(a + 4) ^ flip;
                        transpose8(&lo, &hi);
                        pat[0] = (uint8_t)lo; pat[1] = (uint8_t)(lo >> 8);
                        pat[2] = (uint8_t)(lo >> 16); pat[3] = (uint8_t)(lo >> 24);
                        pat[4] = (uint8_t)hi; pat[5] = (uint8_t)(hi >> 8);
                        pat[6] = (uint8_t)(hi >> 16); pat[7] = (uint8_t)(hi >> 24);
                        if (variant == WP_PLAIN) {
                            for (int b = 0; b < bits; b++)
                                rows[b] = op->lut + (long)pat[b] * k;
                            pf(wp_holder, ix, f_n, rows);
                        } else if (variant == WP_CACHE) {
                            fill_cache(op->lut, pat, bits, k);
                            cf(wp_holder, ix, f_n, wp_cache, k);
                        } else {
                            fill_cache(op->lut, pat, bits, k);
                            rf(wp_result, wp_cache, k);
                            for (int f = 0; f < f_n; f++)
                                wp_holder[f] += wp_result[ix[f]];
                        }
                    }
                }
            const long base = ((long)oy * ow + ox) * f_n;
            for (int f = 0; f < f_n; f++)
                store(op, arena, base + f, requant(op, f, wp_holder[f], read_in1(op, arena, base + f)));
        }
    }
}

/* ---- pooling, requantization, input ------------------------------------------------------------------ */

static void maxpool(const wp_op *op, uint8_t *arena)
{
    const int8_t *in = (const int8_t *)(arena + op->in0);
    int8_t *out = (int8_t *)(arena + op->out);
    const int c_n = op->in_c;
    for (int oy = 0; oy < op->out_h; oy++)
        for (int ox = 0; ox < op->out_w; ox++)
            for (int c = 0; c < c_n; c++) {
                int m = -129;
                for (int ky = 0; ky < op->kh; ky++)
                    for (int kx = 0; kx < op->kw; kx++) {
                        const int y = oy * op->sh - op->ph + ky, x = ox * op->sw - op->pw + kx;
                        if (y < 0 || y >= op->in_h || x < 0 || x >= op->in_w)
                            continue;
                        const int v = in[((long)y * op->in_w + x) * c_n + c];
                        if (v > m) m = v;
                    }
                out[((long)oy * op->out_w + ox) * c_n + c] = (int8_t)m;
            }
}

static void sumpool(const wp_op *op, uint8_t *arena)
{
    const int8_t *in = (const int8_t *)(arena + op->in0);
    const int c_n = op->in_c;
    for (int oy = 0; oy < op->out_h; oy++)
        for (int ox = 0; ox < op->out_w; ox++)
            for (int c = 0; c < c_n; c++) {
                int32_t s = 0;
                for (int ky = 0; ky < op->kh; ky++)
                    for (int kx = 0; kx < op->kw; kx++) {
                        const int y = oy * op->sh - op->ph + ky, x = ox * op->sw - op->pw + kx;
                        if (y < 0 || y >= op->in_h || x < 0 || x >= op->in_w)
                            continue;
                        s += (int32_t)in[((long)y * op->in_w + x) * c_n + c] + op->in_zp;
                    }
                memcpy(arena + op->out + 4 * (((long)oy * op->out_w + ox) * c_n + c), &s, 4);
            }
}

static void flatten(const wp_op *op, uint8_t *arena)
{
    const uint8_t *in = arena + op->in0;
    uint8_t *out = arena + op->out;
    const long hw = (long)op->in_h * op->in_w;
    const int c_n = op->in_c;
    for (int c = 0; c < c_n; c++)
        for (long p = 0; p < hw; p++)
            *out++ = in[p * c_n + c];
}

static void requant_op(const wp_op *op, uint8_t *arena)
{
    const long n = (long)op->out_h * op->out_w * op->out_c;
    for (long i = 0; i < n; i++) {
        int32_t a;
        memcpy(&a, arena + op->in0 + 4 * i, 4);
        store(op, arena, i, requant(op, (int)(i % op->out_c), a, read_in1(op, arena, i)));
    }
}

static void quant_input(const wp_op *op, uint8_t *arena, const float *image)
{
    const long n = (long)op->out_h * op->out_w * op->out_c;
    for (long i = 0; i < n; i++) {
        float q = rintf(image[i] * op->inv_step);
        int32_t v = q < (float)op->lo ? op->lo : q > (float)op->hi ? op->hi : (int32_t)q;
        arena[op->out + i] = (uint8_t)(int8_t)(v - op->out_zp);
    }
}

void wp_run_op(const wp_net *net, int i, const float *image)
{
    const wp_op *op = &net->ops[i];
    switch (op->type) {
    case WP_QUANT_INPUT: quant_input(op, net->arena, image); break;
    case WP_CONV8: conv8(op, net->arena); break;
    case WP_DWCONV8: dwconv8(op, net->arena); break;
    case WP_LUTCONV: lutconv(op, net->arena); break;
    case WP_MAXPOOL: maxpool(op, net->arena); break;
    case WP_SUMPOOL: sumpool(op, net->arena); break;
    case WP_REQUANT: requant_op(op, net->arena); break;
    case WP_FLATTEN: flatten(op, net->arena); break;
    default: break;
    }
}

void wp_run(const wp_net *net, const float *image)
{
    for (int i = 0; i < net->n_ops; i++) {
        wp_run_op(net, i, image);
        wp_mark(i);
    }
}
