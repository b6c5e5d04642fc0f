/*
 * avx2/cols_tiled_f32.c -- float32 columns with one exp per element
 * (fused softmax), the padded tiles with streaming output, and the
 * log_softmax write
 */
#include "common.h"
#include "cols.h"

#ifdef CSM_BUILD_AVX2

/* ---- fused float32 softmax columns (one exp per element) ---------------
 *
 * The fused row scheme (csm_softmax_fused_rows_f32_avx2) on a group of 16
 * (or 8) columns, each lane with its own max: max pass; the lane-wise
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
    const __m256 ninf = _mm256_set1_ps(-INFINITY), neg1 = _mm256_set1_ps(-1.0f);
    const __m256d sv = _mm256_set1_pd(scale);
    __m256 mm[2] = { ninf, ninf }, bad = _mm256_setzero_ps();
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        COLS_PF(xi + 16 * G);
        __m256 a = _mm256_loadu_ps(xi);
        mm[0] = _mm256_max_ps(mm[0], a);
        if (G == 2) {
            __m256 b = _mm256_loadu_ps(xi + 8);
            mm[1] = _mm256_max_ps(mm[1], b);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
        } else {
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        }
    }
    if (_mm256_movemask_ps(bad)) return 0;
    __m256d mx[4];
    __m256 L[2] = { ninf, ninf };
    for (int g = 0; g < G; ++g) {
        mx[2 * g] = _mm256_cvtps_pd(_mm256_castps256_ps128(mm[g]));
        mx[2 * g + 1] = _mm256_cvtps_pd(_mm256_extractf128_ps(mm[g], 1));
        if (!clamp_bound8_(mx[2 * g], mx[2 * g + 1], sv, XR_SPAN, span_s, &L[g]))
            return 0;
    }
    xr_row_ xc[2];
    __m256d fac[4];
    for (int g = 0; g < G; ++g)
        xr_lanes_init_(&xc[g], scale, mx[2 * g], mx[2 * g + 1], &fac[2 * g],
                       &fac[2 * g + 1]);
    __m256d r[4] = { _mm256_setzero_pd(), _mm256_setzero_pd(),
                     _mm256_setzero_pd(), _mm256_setzero_pd() };
    __m256i cnt[2] = { _mm256_setzero_si256(), _mm256_setzero_si256() };
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        float *yi = y + i * ys;
        for (int g = 0; g < G; ++g) {
            __m256 a = _mm256_loadu_ps(xi + 8 * g);
            __m256 eq = _mm256_cmp_ps(a, mm[g], _CMP_EQ_OQ);
            cnt[g] = _mm256_sub_epi32(cnt[g], _mm256_castps_si256(eq));
            __m256 e = xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a, L[g]), L[g], eq),
                               &xc[g], S1);
            _mm256_storeu_ps(yi + 8 * g, _mm256_blendv_ps(e, neg1, eq));
            r[2 * g] = _mm256_add_pd(r[2 * g], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            r[2 * g + 1] = _mm256_add_pd(r[2 * g + 1],
                                         _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
    }
    const __m256d av = _mm256_set1_pd(alpha), up = _mm256_set1_pd(0x1p96);
    __m256 fh[2], fl[2], ym[2];
    for (int g = 0; g < G; ++g) {
        __m128 h[2], l[2], m[2];
        for (int k = 0; k < 2; ++k) {
            __m128i c4 = k ? _mm256_extracti128_si256(cnt[g], 1)
                           : _mm256_castsi256_si128(cnt[g]);
            __m256d S = _mm256_fmadd_pd(r[2 * g + k], fac[2 * g + k],
                                        _mm256_cvtepi32_pd(c4));
            __m256d f = _mm256_div_pd(_mm256_mul_pd(av, _mm256_mul_pd(up, fac[2 * g + k])), S);
            h[k] = _mm256_cvtpd_ps(f);
            l[k] = _mm256_cvtpd_ps(_mm256_sub_pd(f, _mm256_cvtps_pd(h[k])));
            m[k] = _mm256_cvtpd_ps(_mm256_div_pd(av, S));
        }
        fh[g] = _mm256_set_m128(h[1], h[0]);
        fl[g] = _mm256_set_m128(l[1], l[0]);
        ym[g] = _mm256_set_m128(m[1], m[0]);
    }
    const __m256 down = _mm256_set1_ps(0x1p-96f);
    for (ptrdiff_t i = 0; i < n; ++i) {
        float *yi = y + i * ys;
        for (int g = 0; g < G; ++g) {
            __m256 e = _mm256_loadu_ps(yi + 8 * g);
            __m256 v = _mm256_fmadd_ps(e, fh[g], _mm256_mul_ps(e, fl[g]));
            _mm256_storeu_ps(yi + 8 * g,
                             _mm256_blendv_ps(_mm256_mul_ps(v, down), ym[g], e));
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
    for (; j + 8 <= n_cols; ) {
        const int G = j + 16 <= n_cols ? 2 : 1;
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
            csm_lse_state st[16];
            double mx[16], ls[16];
            csm_lse_cols_f32_avx2(x + j, 8 * G, n, x_row_stride, scale, st);
            csm_finalize_avx2(st, 8 * G, scale, mx, ls);
            csm_softmax_cols_f32_avx2(x + j, 8 * G, n, x_row_stride, scale, mx,
                                      ls, alpha, y + j, y_row_stride);
        }
        j += 8 * G;
    }
    if (j < n_cols) {
        csm_lse_state st[8];
        double mx[8], ls[8];
        ptrdiff_t w = n_cols - j;
        csm_lse_cols_f32_avx2(x + j, w, n, x_row_stride, scale, st);
        csm_finalize_avx2(st, w, scale, mx, ls);
        csm_softmax_cols_f32_avx2(x + j, w, n, x_row_stride, scale, mx, ls,
                                  alpha, y + j, y_row_stride);
    }
}

/* y[0:w] = s[0:w] for an output that is not read back soon: whole cache
 * lines with streaming stores (no read-for-ownership), the partial lines
 * at either end with plain stores.  The caller fences (_mm_sfence). */
static void copy_out_nt_f32_(float *d, const float *s, ptrdiff_t w)
{
    uintptr_t a = (uintptr_t)d;
    ptrdiff_t k = 0;
    if (a % sizeof(float)) {
        memcpy(d, s, (size_t)w * sizeof(float));
        return;
    }
    ptrdiff_t head = (ptrdiff_t)(((64 - a % 64) % 64) / sizeof(float));
    if (head > w) head = w;
    for (; k < head; ++k) d[k] = s[k];
    for (; k + 16 <= w; k += 16) {
        _mm256_stream_ps(d + k, _mm256_loadu_ps(s + k));
        _mm256_stream_ps(d + k + 8, _mm256_loadu_ps(s + k + 8));
    }
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
 * axis 1, 1 thread: 1.8-2.2 -> 1.5-1.6 ns/el. */
#define COLS_TILE 8192

/* log_softmax of a block of columns: reduction, finalize, write */
static void log_softmax_cols_block_f32_(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride, csm_lse_state *st, double *mx,
        double *ls)
{
    csm_lse_cols_f32_avx2(x, n_cols, n, x_row_stride, scale, st);
    csm_finalize_avx2(st, n_cols, scale, mx, ls);
    csm_log_softmax_cols_f32_avx2(x, n_cols, n, x_row_stride, scale, mx, ls,
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
        csm_lse_cols_f32_avx2(x + j, w, n, x_row_stride, scale, st);
        csm_finalize_avx2(st, w, scale, mx, ls);
        csm_softmax_cols_f32_avx2(x + j, w, n, x_row_stride, scale, mx, ls,
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
            copy_out_nt_f32_(y + i * y_row_stride + j, ty + i * P, w);
    }
    _mm_sfence();
    free(raw);
}

void csm_softmax_fused_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
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

void csm_copy_rows_nt_f32_avx2(float *d, ptrdiff_t d_row_stride,
        const float *s, ptrdiff_t s_row_stride, ptrdiff_t n_rows, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n_rows; ++i)
        copy_out_nt_f32_(d + i * d_row_stride, s + i * s_row_stride, n);
    _mm_sfence();
}

void csm_log_softmax_tiled_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    cols_tiled_f32_(x, n_cols, n, x_row_stride, scale, alpha, y, y_row_stride, 1);
}

/* c = max + log_sum of 8 lanes (float32 max, finite log_sum) as three
 * float32 parts c1 + c2 + c3, as in log_softmax_row_f32_c3_ */
static inline void c3_split8_(__m256d ml, __m256d mh, __m256d ll, __m256d lh,
                              __m256 *c1, __m256 *c2, __m256 *c3)
{
    __m256 f1 = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_add_pd(mh, lh)),
                                _mm256_cvtpd_ps(_mm256_add_pd(ml, ll)));
    __m256d rl = _mm256_add_pd(_mm256_sub_pd(ml, _mm256_cvtps_pd(_mm256_castps256_ps128(f1))), ll);
    __m256d rh = _mm256_add_pd(_mm256_sub_pd(mh, _mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1))), lh);
    __m128 f2l = _mm256_cvtpd_ps(rl), f2h = _mm256_cvtpd_ps(rh);
    __m128 f3l = _mm256_cvtpd_ps(_mm256_sub_pd(rl, _mm256_cvtps_pd(f2l)));
    __m128 f3h = _mm256_cvtpd_ps(_mm256_sub_pd(rh, _mm256_cvtps_pd(f2h)));
    *c1 = f1;
    *c2 = _mm256_set_m128(f2h, f2l);
    *c3 = _mm256_set_m128(f3h, f3l);
}

/* log-softmax write: y = scale * (x - max) - log_sum per lane (finite max);
 * at scale 1 (and finite log_sum) in float32 lanes (logsm_c3_f32_). */
void csm_log_softmax_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const __m256d sv = _mm256_set1_pd(scale);
    const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    const __m256d inf = _mm256_set1_pd(INFINITY);
    ptrdiff_t j = 0;
    for (; j + 16 <= n_cols; j += 16) {
        __m256d m0 = _mm256_loadu_pd(max + j), m1 = _mm256_loadu_pd(max + j + 4);
        __m256d m2 = _mm256_loadu_pd(max + j + 8), m3 = _mm256_loadu_pd(max + j + 12);
        __m256d fin = _mm256_and_pd(
            _mm256_and_pd(_mm256_cmp_pd(_mm256_and_pd(m0, absmask), inf, _CMP_LT_OQ),
                          _mm256_cmp_pd(_mm256_and_pd(m1, absmask), inf, _CMP_LT_OQ)),
            _mm256_and_pd(_mm256_cmp_pd(_mm256_and_pd(m2, absmask), inf, _CMP_LT_OQ),
                          _mm256_cmp_pd(_mm256_and_pd(m3, absmask), inf, _CMP_LT_OQ)));
        if (_mm256_movemask_pd(fin) != 15) {
            csm_log_softmax_cols_f32_generic_avx2(x + j, 16, n, x_row_stride,
                scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
            continue;
        }
        __m256d l0 = _mm256_loadu_pd(log_sum + j), l1 = _mm256_loadu_pd(log_sum + j + 4);
        __m256d l2 = _mm256_loadu_pd(log_sum + j + 8), l3 = _mm256_loadu_pd(log_sum + j + 12);
        __m256d lfin = _mm256_and_pd(
            _mm256_and_pd(_mm256_cmp_pd(l0, inf, _CMP_LT_OQ), _mm256_cmp_pd(l1, inf, _CMP_LT_OQ)),
            _mm256_and_pd(_mm256_cmp_pd(l2, inf, _CMP_LT_OQ), _mm256_cmp_pd(l3, inf, _CMP_LT_OQ)));
        if (scale == 1.0 && _mm256_movemask_pd(lfin) == 15) {
            /* float32 lanes, as log_softmax_row_f32_c3_ */
            __m256 a1, a2, a3, b1, b2, b3;
            c3_split8_(m0, m1, l0, l1, &a1, &a2, &a3);
            c3_split8_(m2, m3, l2, l3, &b1, &b2, &b3);
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                float *yi = y + i * y_row_stride + j;
                COLS_PF(xi + 16);
                _mm256_storeu_ps(yi, logsm_c3_f32_(_mm256_loadu_ps(xi), a1, a2, a3));
                _mm256_storeu_ps(yi + 8, logsm_c3_f32_(_mm256_loadu_ps(xi + 8), b1, b2, b3));
            }
            continue;
        }
        for (ptrdiff_t i = 0; i < n; ++i) {
            const float *xi = x + i * x_row_stride + j;
            float *yi = y + i * y_row_stride + j;
            COLS_PF(xi + 16);
            __m256 a = logsmc8_f32_(_mm256_loadu_ps(xi), sv, m0, m1, l0, l1);
            __m256 b = logsmc8_f32_(_mm256_loadu_ps(xi + 8), sv, m2, m3, l2, l3);
            _mm256_storeu_ps(yi, a);
            _mm256_storeu_ps(yi + 8, b);
        }
    }
    if (j < n_cols)
        csm_log_softmax_cols_f32_generic_avx2(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
}

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
