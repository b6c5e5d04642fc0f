/*
 * avx2/generic.h -- the generic row/column kernels (float64 lanes), one
 * body stamped out per dtype by DEFINE_AVX2_KERNELS (rows_f32.c: the
 * float32 fallbacks, rows_f64.c: the float64 kernels)
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX2_GENERIC_H
#define CSM_AVX2_GENERIC_H

/* ---- shared per-dtype bodies, stamped out for float and double ----------- */

/* One exp-sum step on 8 elements: equal-to-max lanes are counted apart. */
#define SUM_STEP(EXP, lo, hi)                                                  \
    do {                                                                       \
        __m256d e0 = _mm256_cmp_pd(lo, mv, _CMP_EQ_OQ);                        \
        __m256d e1 = _mm256_cmp_pd(hi, mv, _CMP_EQ_OQ);                        \
        __m256d t0 = EXP(_mm256_mul_pd(_mm256_sub_pd(lo, mv), sv));            \
        __m256d t1 = EXP(_mm256_mul_pd(_mm256_sub_pd(hi, mv), sv));            \
        r0 = _mm256_add_pd(r0, _mm256_andnot_pd(e0, t0));                      \
        r1 = _mm256_add_pd(r1, _mm256_andnot_pd(e1, t1));                      \
        c0 = _mm256_add_pd(c0, _mm256_and_pd(e0, one));                        \
        c1 = _mm256_add_pd(c1, _mm256_and_pd(e1, one));                        \
    } while (0)

/* Prefetch hints of the reduction passes, per 8 elements: pf = the same
 * offset of the next chunk or row of the input (the exp pass runs from L1
 * and would leave the memory idle), pw (if not NULL) = the destination the
 * write pass will store to, fetched for writing so that its
 * read-for-ownership overlaps the exp pass instead of stalling the write
 * pass.  Hints only: they cannot fault, past the end of an array either. */
#define PF_STEP(T, pf, pw, i)                                                  \
    do {                                                                       \
        if ((i) % (64 / sizeof(T)) == 0) {                                     \
            _mm_prefetch((const char *)((pf) + (i)), _MM_HINT_T0);             \
            if (pw) __builtin_prefetch((pw) + (i), 1, 3);                      \
        }                                                                      \
    } while (0)

#define DEFINE_AVX2_KERNELS(T, SUF, EXP, G, ST)                                    \
static CSM_MAYBE_UNUSED void lse_chunk_##SUF##G##_(const T *x, ptrdiff_t n, double scale,          \
                               csm_lse_state *st, const T *pf, const T *pw)    \
{                                                                              \
    double m = row_max_##SUF##_(x, n);                                         \
    if (!(m > -INFINITY && m < INFINITY)) { /* NaN, +-inf, empty: rare */      \
        csm_lse_rows_##SUF##_scalar(x, 1, n, n, scale, st);                    \
        return;                                                                \
    }                                                                          \
    const __m256d mv = _mm256_set1_pd(m), sv = _mm256_set1_pd(scale);         \
    const __m256d one = _mm256_set1_pd(1.0);                                   \
    __m256d r0 = _mm256_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;               \
    __m256d lo, hi;                                                            \
    ptrdiff_t i = 0;                                                           \
    for (; i + 8 <= n; i += 8) {                                               \
        PF_STEP(T, pf, pw, i);                                                 \
        load8_##SUF##_(x + i, &lo, &hi);                                       \
        SUM_STEP(EXP, lo, hi);                                                 \
    }                                                                          \
    if (i < n) {                                                               \
        load8m_##SUF##_(x + i, n - i, -INFINITY, &lo, &hi);                    \
        SUM_STEP(EXP, lo, hi);                                                 \
    }                                                                          \
    st->max = m;                                                               \
    st->count = hsum_pd_(_mm256_add_pd(c0, c1));                               \
    st->rest = hsum_pd_(_mm256_add_pd(r0, r1));                                \
}                                                                              \
static CSM_MAYBE_UNUSED void lse_rows_##SUF##G##_(const T *x, ptrdiff_t n_rows, ptrdiff_t n,        \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states, const T *w,              \
                               ptrdiff_t w_row_stride)                         \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * row_stride;                                      \
        const T *wr = w ? w + r * w_row_stride : NULL;                         \
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;                     \
        if (n <= CHUNK) {                                                      \
            lse_chunk_##SUF##G##_(xr, n, scale, &acc, xr + row_stride, wr);    \
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {                      \
            lse_chunk_##SUF##G##_(xr + c, n - c < CHUNK ? n - c : CHUNK, scale,   \
                               &part,                                          \
                               n - c > CHUNK ? xr + c + CHUNK : xr + row_stride, \
                               wr ? wr + c : NULL);                            \
            csm_lse_merge(&acc, &part, scale);                                 \
        }                                                                      \
        states[r] = acc;                                                       \
    }                                                                          \
}                                                                              \
ST void csm_lse_rows_##SUF##G##_avx2(const T *x, ptrdiff_t n_rows, ptrdiff_t n,      \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    lse_rows_##SUF##G##_(x, n_rows, n, row_stride, scale, states, NULL, 0);    \
}                                                                              \
ST void csm_softmax_rows_##SUF##G##_avx2(const T *x, ptrdiff_t n_rows, ptrdiff_t n,  \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);      \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {                      \
            csm_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,       \
                                            log_sum + r, alpha, yr, 0);        \
            continue;                                                          \
        }                                                                      \
        const __m256d mv = _mm256_set1_pd(max[r]);                             \
        const __m256d lv = _mm256_set1_pd(log_sum[r]);                         \
        __m256d lo, hi;                                                        \
        ptrdiff_t i = 0;                                                       \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(xr + i, &lo, &hi);                                  \
            lo = EXP(_mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv));          \
            hi = EXP(_mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));          \
            store8_##SUF##_(yr + i, _mm256_mul_pd(lo, av), _mm256_mul_pd(hi, av)); \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(xr + i, n - i, -INFINITY, &lo, &hi);               \
            lo = EXP(_mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv));          \
            hi = EXP(_mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));          \
            store8m_##SUF##_(yr + i, n - i, _mm256_mul_pd(lo, av),             \
                             _mm256_mul_pd(hi, av));                           \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void csm_log_softmax_rows_##SUF##G##_avx2(const T *x, ptrdiff_t n_rows,           \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale);                                  \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {                      \
            csm_log_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,   \
                                                log_sum + r, alpha, yr, 0);    \
            continue;                                                          \
        }                                                                      \
        const __m256d mv = _mm256_set1_pd(max[r]);                             \
        const __m256d lv = _mm256_set1_pd(log_sum[r]);                         \
        __m256d lo, hi;                                                        \
        ptrdiff_t i = 0;                                                       \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(xr + i, &lo, &hi);                                  \
            store8_##SUF##_(yr + i,                                            \
                            _mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv),    \
                            _mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));   \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(xr + i, n - i, 0, &lo, &hi);                       \
            store8m_##SUF##_(yr + i, n - i,                                    \
                             _mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv),   \
                             _mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));  \
        }                                                                      \
    }                                                                          \
}                                                                              \
/* Columns: 8 columns per block, lanes = columns; the last block is masked. */ \
ST void csm_lse_cols_##SUF##G##_avx2(const T *x, ptrdiff_t n_cols, ptrdiff_t n,      \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);       \
    const __m256d ninf = _mm256_set1_pd(-INFINITY);                            \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                         \
        __m256d m0 = ninf, m1 = ninf, bad = _mm256_setzero_pd(), lo, hi;       \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) load8_##SUF##_(x + i * row_stride + j, &lo, &hi);      \
            else load8m_##SUF##_(x + i * row_stride + j, w, 0, &lo, &hi);      \
            m0 = _mm256_max_pd(m0, lo); m1 = _mm256_max_pd(m1, hi);            \
            bad = _mm256_or_pd(bad, _mm256_cmp_pd(lo, hi, _CMP_UNORD_Q));     \
        }                                                                      \
        double mx[8];                                                          \
        _mm256_storeu_pd(mx, m0); _mm256_storeu_pd(mx + 4, m1);                \
        int finite = !_mm256_movemask_pd(bad);                                 \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (mx[k] > -INFINITY && mx[k] < INFINITY);                 \
        if (!finite) { /* NaN or inf somewhere in the block: rare */           \
            csm_lse_cols_##SUF##_scalar(x + j, w, n, row_stride, scale,        \
                                        states + j);                           \
            continue;                                                          \
        }                                                                      \
        __m256d r0 = _mm256_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;           \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) load8_##SUF##_(x + i * row_stride + j, &lo, &hi);      \
            else load8m_##SUF##_(x + i * row_stride + j, w, 0, &lo, &hi);      \
            __m256d e0 = _mm256_cmp_pd(lo, m0, _CMP_EQ_OQ);                    \
            __m256d e1 = _mm256_cmp_pd(hi, m1, _CMP_EQ_OQ);                    \
            __m256d t0 = EXP(_mm256_mul_pd(_mm256_sub_pd(lo, m0), sv));        \
            __m256d t1 = EXP(_mm256_mul_pd(_mm256_sub_pd(hi, m1), sv));        \
            r0 = _mm256_add_pd(r0, _mm256_andnot_pd(e0, t0));                  \
            r1 = _mm256_add_pd(r1, _mm256_andnot_pd(e1, t1));                  \
            c0 = _mm256_add_pd(c0, _mm256_and_pd(e0, one));                    \
            c1 = _mm256_add_pd(c1, _mm256_and_pd(e1, one));                    \
        }                                                                      \
        double cn[8], rs[8];                                                   \
        _mm256_storeu_pd(cn, c0); _mm256_storeu_pd(cn + 4, c1);                \
        _mm256_storeu_pd(rs, r0); _mm256_storeu_pd(rs + 4, r1);                \
        for (ptrdiff_t k = 0; k < w; ++k) {                                    \
            states[j + k].max = mx[k];                                         \
            states[j + k].count = cn[k];                                       \
            states[j + k].rest = rs[k];                                        \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void csm_softmax_cols_##SUF##G##_avx2(const T *x, ptrdiff_t n_cols, ptrdiff_t n,  \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);      \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                         \
        int finite = 1;                                                        \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (max[j + k] > -INFINITY && max[j + k] < INFINITY);       \
        if (!finite) {                                                         \
            csm_softmax_cols_##SUF##_scalar(x + j, w, n, x_row_stride, scale,  \
                max + j, log_sum + j, alpha, y + j, y_row_stride);             \
            continue;                                                          \
        }                                                                      \
        __m256d m0, m1, l0, l1, lo, hi;                                        \
        load8m_f64_(max + j, w, 0.0, &m0, &m1);                                \
        load8m_f64_(log_sum + j, w, 0.0, &l0, &l1);                            \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            const T *xi = x + i * x_row_stride + j;                            \
            T *yi = y + i * y_row_stride + j;                                  \
            if (w == 8) load8_##SUF##_(xi, &lo, &hi);                          \
            else load8m_##SUF##_(xi, w, 0, &lo, &hi);                          \
            lo = _mm256_mul_pd(av, EXP(_mm256_fmsub_pd(_mm256_sub_pd(lo, m0), sv, l0))); \
            hi = _mm256_mul_pd(av, EXP(_mm256_fmsub_pd(_mm256_sub_pd(hi, m1), sv, l1))); \
            if (w == 8) store8_##SUF##_(yi, lo, hi);                           \
            else store8m_##SUF##_(yi, w, lo, hi);                              \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void csm_log_softmax_cols_##SUF##G##_avx2(const T *x, ptrdiff_t n_cols,           \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale);                                  \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                         \
        int finite = 1;                                                        \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (max[j + k] > -INFINITY && max[j + k] < INFINITY);       \
        if (!finite) {                                                         \
            csm_log_softmax_cols_##SUF##_scalar(x + j, w, n, x_row_stride,     \
                scale, max + j, log_sum + j, alpha, y + j, y_row_stride);      \
            continue;                                                          \
        }                                                                      \
        __m256d m0, m1, l0, l1, lo, hi;                                        \
        load8m_f64_(max + j, w, 0.0, &m0, &m1);                                \
        load8m_f64_(log_sum + j, w, 0.0, &l0, &l1);                            \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            const T *xi = x + i * x_row_stride + j;                            \
            T *yi = y + i * y_row_stride + j;                                  \
            if (w == 8) load8_##SUF##_(xi, &lo, &hi);                          \
            else load8m_##SUF##_(xi, w, 0, &lo, &hi);                          \
            lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, m0), sv, l0);               \
            hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, m1), sv, l1);               \
            if (w == 8) store8_##SUF##_(yi, lo, hi);                           \
            else store8m_##SUF##_(yi, w, lo, hi);                              \
        }                                                                      \
    }                                                                          \
}

#endif /* CSM_AVX2_GENERIC_H */
