/*
 * avx2/finalize_backward.c -- finalize (states -> max, log_sum) and the
 * backward kernels over rows and columns
 */
#include "common.h"

#ifdef CSM_BUILD_AVX2

void csm_finalize_avx2(const csm_lse_state *states, ptrdiff_t n, double scale,
                       double *max, double *log_sum)
{
    ptrdiff_t r = 0;
    for (; r + 4 <= n; r += 4) {
        const csm_lse_state *s = states + r;
        __m256d mx = _mm256_setr_pd(s[0].max, s[1].max, s[2].max, s[3].max);
        __m256d cn = _mm256_setr_pd(s[0].count, s[1].count, s[2].count, s[3].count);
        __m256d rs = _mm256_setr_pd(s[0].rest, s[1].rest, s[2].rest, s[3].rest);
        __m256d fin = _mm256_and_pd(
            _mm256_cmp_pd(mx, _mm256_set1_pd(-INFINITY), _CMP_GT_OQ),
            _mm256_cmp_pd(mx, _mm256_set1_pd(INFINITY), _CMP_LT_OQ));
        if (_mm256_movemask_pd(fin) != 15) {
            csm_finalize_scalar(s, 4, scale, max + r, log_sum + r);
            continue;
        }
        /* u = count + rest with its rounding error c (TwoSum); log(u) + c/u */
        __m256d u = _mm256_add_pd(cn, rs);
        __m256d bb = _mm256_sub_pd(u, cn);
        __m256d c = _mm256_add_pd(_mm256_sub_pd(cn, _mm256_sub_pd(u, bb)),
                                  _mm256_sub_pd(rs, bb));
        __m256d ls = _mm256_add_pd(log_ge1_pd_(u), _mm256_div_pd(c, u));
        _mm256_storeu_pd(max + r, mx);
        _mm256_storeu_pd(log_sum + r, ls);
    }
    if (r < n) csm_finalize_scalar(states + r, n - r, scale, max + r, log_sum + r);
}

/* ---- backward (VJP) over contiguous rows --------------------------------
 * Both passes widen to float64 (4 lanes) and sum with 4 accumulators.
 * log_softmax needs exp(y): the vector exp is valid for y <= 0 (what a
 * log-probability is); a row holding y > 0 or NaN is done by the scalar
 * kernel (libm exp, IEEE propagation).  dy - exp(y) * sum is one fused
 * multiply-add rounded to float64, then once to the result type, with an
 * exp accurate enough for the difference: float32 data, exp_mid_ (2^-43);
 * float64 data, the float64 exp. */
#define DEFINE_AVX2_BWD(T, SUF, EXP)                                           \
void csm_softmax_bwd_rows_##SUF##_avx2(const T *y, const T *dy, T *o,          \
                                       ptrdiff_t n_rows, ptrdiff_t n)          \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;           \
        __m256d a, b, c, d;                                                    \
        ptrdiff_t i = 0;                                                       \
        for (; i + 16 <= n; i += 16) {                                         \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
            load8_##SUF##_(yr + i + 8, &a, &b);                                \
            load8_##SUF##_(gr + i + 8, &c, &d);                                \
            s2 = _mm256_fmadd_pd(a, c, s2); s3 = _mm256_fmadd_pd(b, d, s3);    \
        }                                                                      \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
        }                                                                      \
        const __m256d sv = _mm256_set1_pd(                                     \
            hsum_pd_(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)))); \
        for (i = 0; i + 8 <= n; i += 8) {                                      \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            store8_##SUF##_(orow + i, _mm256_mul_pd(a, _mm256_sub_pd(c, sv)),  \
                            _mm256_mul_pd(b, _mm256_sub_pd(d, sv)));           \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            store8m_##SUF##_(orow + i, n - i,                                  \
                             _mm256_mul_pd(a, _mm256_sub_pd(c, sv)),           \
                             _mm256_mul_pd(b, _mm256_sub_pd(d, sv)));          \
        }                                                                      \
    }                                                                          \
}                                                                              \
void csm_log_softmax_bwd_rows_##SUF##_avx2(const T *y, const T *dy, T *o,      \
                                           ptrdiff_t n_rows, ptrdiff_t n)      \
{                                                                              \
    const __m256d zero = _mm256_setzero_pd();                                  \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        __m256d s0 = zero, s1 = zero, s2 = zero, s3 = zero, bad = zero;        \
        __m256d a, b, c, d;                                                    \
        ptrdiff_t i = 0;                                                       \
        for (; i + 16 <= n; i += 16) {                                         \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
            load8_##SUF##_(yr + i + 8, &a, &b);                                \
            load8_##SUF##_(gr + i + 8, &c, &d);                                \
            s2 = _mm256_add_pd(s2, c); s3 = _mm256_add_pd(s3, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        if (_mm256_movemask_pd(bad)) {                                         \
            csm_log_softmax_bwd_rows_##SUF##_scalar(yr, gr, orow, 1, n);       \
            continue;                                                          \
        }                                                                      \
        const __m256d sv = _mm256_set1_pd(                                     \
            hsum_pd_(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)))); \
        for (i = 0; i + 8 <= n; i += 8) {                                      \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            store8_##SUF##_(orow + i, EXP(a, sv, c),         \
                            EXP(b, sv, d));                  \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            store8m_##SUF##_(orow + i, n - i, EXP(a, sv, c), \
                             EXP(b, sv, d));                 \
        }                                                                      \
    }                                                                          \
}
DEFINE_AVX2_BWD(float, f32, lsb_f32_)
DEFINE_AVX2_BWD(double, f64, lsb_f64_)

/* ---- backward (VJP) over columns ----------------------------------------
 * n_cols columns of n rows (row_stride apart; the same for y, dy and o,
 * which may be dy itself): the row kernels' arithmetic (float64 lanes and
 * sums) 8 columns at a time.  log_softmax: a group of 8 columns holding
 * y > 0 or NaN is done column by column with libm exp (IEEE propagation),
 * as the row kernel does such a row. */
#define DEFINE_AVX2_BWD_COLS(T, SUF, EXP)                                      \
static void log_bwd_col_##SUF##_(const T *y, const T *dy, T *o, ptrdiff_t n,   \
                                 ptrdiff_t rs)                                 \
{                                                                              \
    double s = 0.0;                                                            \
    for (ptrdiff_t i = 0; i < n; ++i) s += (double)dy[i * rs];                 \
    for (ptrdiff_t i = 0; i < n; ++i)                                          \
        o[i * rs] = (T)((double)dy[i * rs] - exp((double)y[i * rs]) * s);      \
}                                                                              \
void csm_softmax_bwd_cols_##SUF##_avx2(const T *y, const T *dy, T *o,          \
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs)                           \
{                                                                              \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        const ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                   \
        __m256d s0 = _mm256_setzero_pd(), s1 = s0, a, b, c, d;                 \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
            }                                                                  \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
        }                                                                      \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
                store8_##SUF##_(o + i * rs + j, _mm256_mul_pd(a, _mm256_sub_pd(c, s0)), \
                                _mm256_mul_pd(b, _mm256_sub_pd(d, s1)));       \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
                store8m_##SUF##_(o + i * rs + j, w,                            \
                                 _mm256_mul_pd(a, _mm256_sub_pd(c, s0)),       \
                                 _mm256_mul_pd(b, _mm256_sub_pd(d, s1)));      \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}                                                                              \
void csm_log_softmax_bwd_cols_##SUF##_avx2(const T *y, const T *dy, T *o,      \
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs)                           \
{                                                                              \
    const __m256d zero = _mm256_setzero_pd();                                  \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        const ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                   \
        __m256d s0 = zero, s1 = zero, bad = zero, a, b, c, d;                  \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
            }                                                                  \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        if (_mm256_movemask_pd(bad)) {                                         \
            for (ptrdiff_t k = 0; k < w; ++k)                                  \
                log_bwd_col_##SUF##_(y + j + k, dy + j + k, o + j + k, n, rs); \
            continue;                                                          \
        }                                                                      \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
                store8_##SUF##_(o + i * rs + j, EXP(a, s0, c), \
                                EXP(b, s1, d));              \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
                store8m_##SUF##_(o + i * rs + j, w,                            \
                                 EXP(a, s0, c),              \
                                 EXP(b, s1, d));             \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}
DEFINE_AVX2_BWD_COLS(float, f32, lsb_f32_)
DEFINE_AVX2_BWD_COLS(double, f64, lsb_f64_)
#undef DEFINE_AVX2_BWD_COLS

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
