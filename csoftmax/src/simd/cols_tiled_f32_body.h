/*
 * simd/cols_tiled_f32_body.h -- float32 columns with one exp per element
 * (fused softmax), the padded tiles with streaming output, and the
 * log_softmax write.  Written once against the lane abstraction, compiled
 * per ISA by src/avx2/cols_tiled_f32.c and src/avx512/cols_tiled_f32.c.
 * (internal; included once, by those files, after common.h)
 */
#include "cols_f32.h"

/* ---- fused float32 softmax columns (one exp per element) ---------------
 *
 * The fused row scheme (csm_softmax_fused_rows_f32) on a group of G
 * vectors of VLEN columns, each lane with its own max: max pass; the lane-wise
 * all-float32 reduction storing e'_i = 2^XR_BIAS exp(r_M) exp(s (x_i - M))
 * into y (sentinel -1 where x_i == M) and summing it; per lane
 * f = alpha 2^96 factor / S, ym = fl32(alpha / S); then the rescale pass
 * y = (e' f) 2^-XR_BIAS, sentinels ym.  A group with a NaN, an infinite
 * max or no representable clamp is decided before anything is written
 * and takes the reduction + finalize + write kernels (so x == y is fine);
 * so does everything when alpha is outside [FUSED_ALPHA_MIN,
 * FUSED_ALPHA_MAX] (then f is in the range of xr_scale_row_f32_ for every
 * clean lane: S in [1, 2^30]). */
static inline __attribute__((always_inline)) int
softmax_fused_cols_group_f32_(const float *x, ptrdiff_t n, ptrdiff_t rs,
                              double scale, double span_s, double alpha,
                              float *y, ptrdiff_t ys, const int G, const int S1)
{
    const V ninf = v_set1(-INFINITY), neg1 = v_set1(-1.0f);
    const VD sv = vd_set1(scale);
    V mm[2] = { ninf, ninf };
    VM bad = vm_none();
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        COLS_PF(xi + 2 * G * VLEN, G * VLEN);
        V a = v_load(xi);
        mm[0] = v_max(mm[0], a);
        if (G == 2) {
            V b = v_load(xi + VLEN);
            mm[1] = v_max(mm[1], b);
            bad = vm_or(bad, v_cmpunord(a, b));
        } else {
            bad = vm_or(bad, v_cmpunord(a, a));
        }
    }
    if (v_anynan(bad)) return 0;
    VD mx[4];
    V L[2] = { ninf, ninf };
    for (int g = 0; g < G; ++g) {
        mx[2 * g] = v_lo_pd(mm[g]);
        mx[2 * g + 1] = v_hi_pd(mm[g]);
        if (!clamp_bound_v_(mx[2 * g], mx[2 * g + 1], sv, XR_SPAN, span_s, &L[g]))
            return 0;
    }
    xr_row_ xc[2];
    VD fac[4];
    for (int g = 0; g < G; ++g)
        xr_lanes_init_(&xc[g], scale, mx[2 * g], mx[2 * g + 1], &fac[2 * g],
                       &fac[2 * g + 1], 0);
    VD r[4] = { vd_zero(), vd_zero(), vd_zero(), vd_zero() };
    VI cnt[2] = { vi_zero(), vi_zero() };
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        float *yi = y + i * ys;
        for (int g = 0; g < G; ++g) {
            V a = v_load(xi + VLEN * g);
            VM eq = v_cmpeq(a, mm[g]);
            cnt[g] = vi_count(cnt[g], eq);
            V e = xr_exp_(v_select(eq, v_max(a, L[g]), L[g]), &xc[g], S1);
            v_store(yi + VLEN * g, v_select(eq, e, neg1));
            r[2 * g] = vd_add(r[2 * g], v_lo_pd(e));
            r[2 * g + 1] = vd_add(r[2 * g + 1], v_hi_pd(e));
        }
    }
    const VD av = vd_set1(alpha), up = vd_set1(0x1p96);
    V fh[2], fl[2], ym[2];
    for (int g = 0; g < G; ++g) {
        VD f[2], m[2];
        for (int k = 0; k < 2; ++k) {
            VD c = k ? vi_hi_pd(cnt[g]) : vi_lo_pd(cnt[g]);
            VD S = vd_fmadd(r[2 * g + k], fac[2 * g + k], c);
            f[k] = vd_div(vd_mul(av, vd_mul(up, fac[2 * g + k])), S);
            m[k] = vd_div(av, S);
        }
        fh[g] = v_from_pd(f[0], f[1]);
        fl[g] = v_from_pd(vd_sub(f[0], v_lo_pd(fh[g])), vd_sub(f[1], v_hi_pd(fh[g])));
        ym[g] = v_from_pd(m[0], m[1]);
    }
    const V down = v_set1(0x1p-96f);
    for (ptrdiff_t i = 0; i < n; ++i) {
        float *yi = y + i * ys;
        for (int g = 0; g < G; ++g) {
            V e = v_load(yi + VLEN * g);
            V v = v_fmadd(e, fh[g], v_mul(e, fl[g]));
            v_store(yi + VLEN * g, v_select(v_signmask(e), v_mul(v, down), ym[g]));
        }
    }
    return 1;
}

static void softmax_fused_cols_direct_f32_(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    ptrdiff_t j = 0;
    for (; j + VLEN <= n_cols; ) {
        const int G = j + 2 * VLEN <= n_cols ? 2 : 1;
        int ok = G == 2
            ? (scale == 1.0
               ? softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 2, 1)
               : softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 2, 0))
            : (scale == 1.0
               ? softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 1, 1)
               : softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 1, 0));
        if (!ok) {
            csm_lse_state st[2 * VLEN];
            double mx[2 * VLEN], ls[2 * VLEN];
            SUFFIX(csm_lse_cols_f32)(x + j, VLEN * G, n, x_row_stride, scale, st);
            SUFFIX(csm_finalize)(st, VLEN * G, scale, mx, ls);
            SUFFIX(csm_softmax_cols_f32)(x + j, VLEN * G, n, x_row_stride, scale,
                                         mx, ls, alpha, y + j, y_row_stride);
        }
        j += VLEN * G;
    }
    if (j < n_cols) {
#if VLEN == 8
        csm_lse_state st[8];
        double mx[8], ls[8];
        ptrdiff_t w = n_cols - j;
        csm_lse_cols_f32_avx2(x + j, w, n, x_row_stride, scale, st);
        SUFFIX(csm_finalize)(st, w, scale, mx, ls);
        csm_softmax_cols_f32_avx2(x + j, w, n, x_row_stride, scale, mx, ls,
                                  alpha, y + j, y_row_stride);
#else
        /* < 16 columns: the AVX2 kernel (8 fused, the rest unfused); fewer
         * than 64 columns are not tiled */
        csm_softmax_fused_cols_f32_avx2(x + j, n_cols - j, n, x_row_stride,
                                        scale, alpha, y + j, y_row_stride);
#endif
    }
}

/* y[0:w] = s[0:w] for an output that is not read back soon: whole cache
 * lines with streaming stores (no read-for-ownership), the partial lines
 * at either end with plain stores; nt == 0: plain stores throughout (the
 * caller's hint csm_stream_stores(), off for a fresh output: its pages
 * are zeroed by the kernel on first touch and sit dirty in the cache,
 * where streaming stores cost more than plain ones -- Xeon, one core,
 * (32,21,128,128) axis 1, fresh output, ns/element, streaming / plain:
 * softmax 2.08 / 1.53, cross-entropy 3.20 / 2.71, softmax_backward 2.23 /
 * 1.90; into an output already written: 1.14 / 1.18, 2.23 / 2.38, 1.43 /
 * 1.64).  The caller fences (_mm_sfence). */
static void copy_out_nt_f32_(float *d, const float *s, ptrdiff_t w, int nt)
{
    uintptr_t a = (uintptr_t)d;
    ptrdiff_t k = 0;
    if (!nt || a % sizeof(float)) {
        memcpy(d, s, (size_t)w * sizeof(float));
        return;
    }
    ptrdiff_t head = (ptrdiff_t)(((64 - a % 64) % 64) / sizeof(float));
    if (head > w) head = w;
    for (; k < head; ++k) d[k] = s[k];
    for (; k + 16 <= w; k += 16)
        for (int q = 0; q < 16; q += VLEN)
            v_stream(d + k + q, v_load(s + k + q));
    for (; k < w; ++k) d[k] = s[k];
}

/* Column tiles: the n rows of a non-last-axis block are usually a multiple
 * of 4 KiB apart (64 KiB for 128 x 128 images), so in every cache level
 * they fall into the same sets and the three passes of the fused kernel
 * evict each other's lines; the store pass also reads-for-ownership every
 * output line from DRAM.  Rows of n <= COLS_TILE / 64 columns are copied,
 * COLS_TILE floats at a time (at least 64 columns), into a tile with a
 * padded pitch, processed there into a second tile (fused softmax, or the
 * log_softmax kernels), and the result streamed out (copy_out_nt_f32_).  Measured on (32, 21, 128, 128),
 * axis 1, 1 thread (AVX2): 1.8-2.2 -> 1.5-1.6 ns/el. */
#define COLS_TILE 8192

/* log_softmax of a block of columns: reduction, finalize, write */
static void log_softmax_cols_block_f32_(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride, csm_lse_state *st, double *mx,
        double *ls)
{
    SUFFIX(csm_lse_cols_f32)(x, n_cols, n, x_row_stride, scale, st);
    SUFFIX(csm_finalize)(st, n_cols, scale, mx, ls);
    SUFFIX(csm_log_softmax_cols_f32)(x, n_cols, n, x_row_stride, scale, mx, ls,
                                  alpha, y, y_row_stride);
}

static void softmax_cols_unfused_f32_(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t j = 0; j < n_cols; j += 16) {
        csm_lse_state st[16];
        double mx[16], ls[16];
        ptrdiff_t w = n_cols - j < 16 ? n_cols - j : 16;
        SUFFIX(csm_lse_cols_f32)(x + j, w, n, x_row_stride, scale, st);
        SUFFIX(csm_finalize)(st, w, scale, mx, ls);
        SUFFIX(csm_softmax_cols_f32)(x + j, w, n, x_row_stride, scale, mx, ls,
                                  alpha, y + j, y_row_stride);
    }
}

/* The tile loop shared by the column softmax (log = 0: fused kernel) and
 * log_softmax (log = 1: reduction + finalize + write on the tile). */
static void cols_tiled_f32_(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, double alpha, float *y,
        ptrdiff_t y_row_stride, const int log)
{
    ptrdiff_t tw = n > 0 ? (COLS_TILE / n) & ~(ptrdiff_t)15 : 0;
    if (tw > n_cols) tw = (n_cols + 15) & ~(ptrdiff_t)15;
    const ptrdiff_t P = tw + 16;          /* pitch: rows 64 bytes off a multiple */
    size_t tile_bytes = 2 * sizeof(float) * (size_t)(n * P);
    size_t st_bytes = log ? (sizeof(csm_lse_state) + 2 * sizeof(double)) * (size_t)tw : 0;
    void *raw = tw >= 64 && n_cols >= 64 ? malloc(tile_bytes + st_bytes + 64) : NULL;
    if (raw == NULL) {
        if (log) {
            csm_lse_state st[64];
            double mx[64], ls[64];
            for (ptrdiff_t j = 0; j < n_cols; j += 64)
                log_softmax_cols_block_f32_(x + j, n_cols - j < 64 ? n_cols - j : 64,
                    n, x_row_stride, scale, alpha, y + j, y_row_stride, st, mx, ls);
        } else {
            softmax_fused_cols_direct_f32_(x, n_cols, n, x_row_stride, scale,
                                           alpha, y, y_row_stride);
        }
        return;
    }
    const int nt = csm_stream_stores();
    float *tx = (float *)(((uintptr_t)raw + 63) & ~(uintptr_t)63), *ty = tx + n * P;
    csm_lse_state *st = (csm_lse_state *)(ty + n * P);
    double *mx = (double *)(st + tw), *ls = mx + tw;
    for (ptrdiff_t j = 0; j < n_cols; j += tw) {
        ptrdiff_t w = n_cols - j < tw ? n_cols - j : tw;
        for (ptrdiff_t i = 0; i < n; ++i) {
            const float *src = x + i * x_row_stride + j;
            /* the next tile's row, while this one is copied */
            for (ptrdiff_t k = 0; k < w; k += 16)
                _mm_prefetch((const char *)(src + w + k), _MM_HINT_T0);
            memcpy(tx + i * P, src, (size_t)w * sizeof(float));
        }
        if (log)
            log_softmax_cols_block_f32_(tx, w, n, P, scale, alpha, ty, P, st, mx, ls);
        else
            softmax_fused_cols_direct_f32_(tx, w, n, P, scale, alpha, ty, P);
        for (ptrdiff_t i = 0; i < n; ++i)
            copy_out_nt_f32_(y + i * y_row_stride + j, ty + i * P, w, nt);
    }
    _mm_sfence();
    free(raw);
}

void SUFFIX(csm_softmax_fused_cols_f32)(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    const int ok_a = alpha >= FUSED_ALPHA_MIN && alpha <= FUSED_ALPHA_MAX &&
                     n <= ((ptrdiff_t)1 << 30);
    if (!ok_a)
        softmax_cols_unfused_f32_(x, n_cols, n, x_row_stride, scale, alpha, y,
                                  y_row_stride);
    else
        cols_tiled_f32_(x, n_cols, n, x_row_stride, scale, alpha, y,
                        y_row_stride, 0);
}

void SUFFIX(csm_copy_rows_nt_f32)(float *d, ptrdiff_t d_row_stride,
        const float *s, ptrdiff_t s_row_stride, ptrdiff_t n_rows, ptrdiff_t n)
{
    const int nt = csm_stream_stores();
    for (ptrdiff_t i = 0; i < n_rows; ++i)
        copy_out_nt_f32_(d + i * d_row_stride, s + i * s_row_stride, n, nt);
    _mm_sfence();
}

void SUFFIX(csm_log_softmax_tiled_cols_f32)(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    cols_tiled_f32_(x, n_cols, n, x_row_stride, scale, alpha, y, y_row_stride, 1);
}

/* c = max + log_sum of VLEN lanes (float32 max, finite log_sum) as three
 * float32 parts c1 + c2 + c3, as in log_softmax_row_f32_c3_ */
static inline void c3_split_v_(VD ml, VD mh, VD ll, VD lh, V *c1, V *c2, V *c3)
{
    V f1 = v_from_pd(vd_add(ml, ll), vd_add(mh, lh));
    VD rl = vd_add(vd_sub(ml, v_lo_pd(f1)), ll);
    VD rh = vd_add(vd_sub(mh, v_hi_pd(f1)), lh);
    V f2 = v_from_pd(rl, rh);
    *c1 = f1;
    *c2 = f2;
    *c3 = v_from_pd(vd_sub(rl, v_lo_pd(f2)), vd_sub(rh, v_hi_pd(f2)));
}

/* log-softmax write: y = scale * (x - max) - log_sum per lane (finite max);
 * at scale 1 (and finite log_sum) in float32 lanes (logsm_c3_f32_).  Blocks
 * of 2 VLEN columns; the rest: AVX2 generic, AVX-512 the AVX2 kernel. */
void SUFFIX(csm_log_softmax_cols_f32)(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const VD sv = vd_set1(scale), inf = vd_set1(INFINITY);
    ptrdiff_t j = 0;
    for (; j + 2 * VLEN <= n_cols; j += 2 * VLEN) {
        VD m0 = vd_loadu(max + j), m1 = vd_loadu(max + j + VDLEN);
        VD m2 = vd_loadu(max + j + 2 * VDLEN), m3 = vd_loadu(max + j + 3 * VDLEN);
        VDM fin = vdm_and(
            vdm_and(vd_cmp(vd_abs(m0), inf, _CMP_LT_OQ), vd_cmp(vd_abs(m1), inf, _CMP_LT_OQ)),
            vdm_and(vd_cmp(vd_abs(m2), inf, _CMP_LT_OQ), vd_cmp(vd_abs(m3), inf, _CMP_LT_OQ)));
        if (!vdm_all(fin)) {
            csm_log_softmax_cols_f32_generic_avx2(x + j, 2 * VLEN, n, x_row_stride,
                scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
            continue;
        }
        VD l0 = vd_loadu(log_sum + j), l1 = vd_loadu(log_sum + j + VDLEN);
        VD l2 = vd_loadu(log_sum + j + 2 * VDLEN), l3 = vd_loadu(log_sum + j + 3 * VDLEN);
        VDM lfin = vdm_and(
            vdm_and(vd_cmp(l0, inf, _CMP_LT_OQ), vd_cmp(l1, inf, _CMP_LT_OQ)),
            vdm_and(vd_cmp(l2, inf, _CMP_LT_OQ), vd_cmp(l3, inf, _CMP_LT_OQ)));
        if (scale == 1.0 && vdm_all(lfin)) {
            /* float32 lanes, as log_softmax_row_f32_c3_ */
            V a1, a2, a3, b1, b2, b3;
            c3_split_v_(m0, m1, l0, l1, &a1, &a2, &a3);
            c3_split_v_(m2, m3, l2, l3, &b1, &b2, &b3);
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                float *yi = y + i * y_row_stride + j;
                COLS_PF(xi + 2 * VLEN, 2 * VLEN);
                v_store(yi, logsm_c3_f32_(v_load(xi), a1, a2, a3));
                v_store(yi + VLEN, logsm_c3_f32_(v_load(xi + VLEN), b1, b2, b3));
            }
            continue;
        }
        for (ptrdiff_t i = 0; i < n; ++i) {
            const float *xi = x + i * x_row_stride + j;
            float *yi = y + i * y_row_stride + j;
            COLS_PF(xi + 2 * VLEN, 2 * VLEN);
            V a = logsmc_f32_(v_load(xi), sv, m0, m1, l0, l1);
            V b = logsmc_f32_(v_load(xi + VLEN), sv, m2, m3, l2, l3);
            v_store(yi, a);
            v_store(yi + VLEN, b);
        }
    }
    if (j < n_cols)
#if VLEN == 8
        csm_log_softmax_cols_f32_generic_avx2(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
#else
        csm_log_softmax_cols_f32_avx2(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
#endif
}
