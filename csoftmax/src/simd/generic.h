/*
 * simd/generic.h -- the generic row/column kernels (float64 lanes), one
 * body stamped out per dtype and ISA by DEFINE_KERNELS (avx2/rows_f32.c:
 * the float32 fallbacks of both ISAs; avx2/rows_f64.c, avx512/rows_f64.c:
 * the float64 kernels), written against the lane abstraction: a step is
 * VLEN elements as two float64 halves.
 * (internal; included by the kernel files after common.h)
 */
#ifndef CSM_SIMD_GENERIC_H
#define CSM_SIMD_GENERIC_H

/* ---- shared per-dtype bodies, stamped out for float and double ----------- */

/* One exp-sum step on VLEN elements: equal-to-max lanes are counted apart. */
#define SUM_STEP(EXP, lo, hi)                                                  \
    do {                                                                       \
        VDM e0 = vd_cmp(lo, mv, _CMP_EQ_OQ);                                   \
        VDM e1 = vd_cmp(hi, mv, _CMP_EQ_OQ);                                   \
        VD t0 = EXP(vd_mul(vd_sub(lo, mv), sv));                               \
        VD t1 = EXP(vd_mul(vd_sub(hi, mv), sv));                               \
        r0 = vd_add(r0, vd_unless(e0, t0));                                    \
        r1 = vd_add(r1, vd_unless(e1, t1));                                    \
        c0 = vd_add(c0, vd_when(e0, one));                                     \
        c1 = vd_add(c1, vd_when(e1, one));                                     \
    } while (0)

/* Prefetch hints of the reduction passes, per VLEN elements: pf = the same
 * offset of the next chunk or row of the input (the exp pass runs from L1
 * and would leave the memory idle), pw (if not NULL) = the destination the
 * write pass will store to, fetched for writing so that its
 * read-for-ownership overlaps the exp pass instead of stalling the write
 * pass.  Hints only: they cannot fault, past the end of an array either. */
#define PF_STEP(T, pf, pw, i)                                                  \
    do {                                                                       \
        for (ptrdiff_t k_ = 0; k_ < VLEN; k_ += (ptrdiff_t)(64 / sizeof(T)))   \
            if (((i) + k_) % (ptrdiff_t)(64 / sizeof(T)) == 0) {               \
                _mm_prefetch((const char *)((pf) + (i) + k_), _MM_HINT_T0);    \
                if (pw) __builtin_prefetch((pw) + (i) + k_, 1, 3);             \
            }                                                                  \
    } while (0)

/* log_softmax writes in float64 lanes: a value that rounds to a float32
 * zero is stored as +0.0 (logsm_f32_, simd/rows_f32_body.h: the float32
 * reductions' clamp terms make log_sum a positive value below 2^-150 where
 * the exact result is 0); float64 data as computed. */
static CSM_MAYBE_UNUSED inline VD lsm_zero_f32_(VD v)
{
    return vd_unless(vd_cmp(vd_abs(v), vd_set1(0x1p-150), _CMP_LE_OQ), v);
}
#define lsm_zero_f64_(v) (v)

#define DEFINE_KERNELS(T, SUF, EXP, G, ST)                                     \
static CSM_MAYBE_UNUSED void lse_chunk_##SUF##G##_(const T *x, ptrdiff_t n, double scale, \
                               csm_lse_state *st, const T *pf, const T *pw)    \
{                                                                              \
    double m = row_max_##SUF##_(x, n);                                          \
    if (!(m > -INFINITY && m < INFINITY)) { /* NaN, +-inf, empty: rare */      \
        csm_lse_rows_##SUF##_scalar(x, 1, n, n, scale, st);                    \
        return;                                                                \
    }                                                                          \
    const VD mv = vd_set1(m), sv = vd_set1(scale);                             \
    const VD one = vd_set1(1.0);                                               \
    VD r0 = vd_zero(), r1 = r0, c0 = r0, c1 = r0;                              \
    VD lo, hi;                                                                 \
    ptrdiff_t i = 0;                                                           \
    for (; i + VLEN <= n; i += VLEN) {                                         \
        PF_STEP(T, pf, pw, i);                                                 \
        vload2_##SUF(x + i, &lo, &hi);                                         \
        SUM_STEP(EXP, lo, hi);                                                 \
    }                                                                          \
    if (i < n) {                                                               \
        vload2m_##SUF(x + i, n - i, -INFINITY, &lo, &hi);                      \
        SUM_STEP(EXP, lo, hi);                                                 \
    }                                                                          \
    st->max = m;                                                               \
    st->count = vd_hsum(vd_add(c0, c1));                                       \
    st->rest = vd_hsum(vd_add(r0, r1));                                        \
}                                                                              \
static CSM_MAYBE_UNUSED void lse_rows_##SUF##G##_(const T *x, ptrdiff_t n_rows, ptrdiff_t n, \
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
            lse_chunk_##SUF##G##_(xr + c, n - c < CHUNK ? n - c : CHUNK, scale, \
                               &part,                                          \
                               n - c > CHUNK ? xr + c + CHUNK : xr + row_stride, \
                               wr ? wr + c : NULL);                            \
            csm_lse_merge(&acc, &part, scale);                                 \
        }                                                                      \
        states[r] = acc;                                                       \
    }                                                                          \
}                                                                              \
ST void SUFFIX(csm_lse_rows_##SUF##G)(const T *x, ptrdiff_t n_rows, ptrdiff_t n, \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    lse_rows_##SUF##G##_(x, n_rows, n, row_stride, scale, states, NULL, 0);    \
}                                                                              \
ST void SUFFIX(csm_softmax_rows_##SUF##G)(const T *x, ptrdiff_t n_rows, ptrdiff_t n, \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const VD sv = vd_set1(scale), av = vd_set1(alpha);                         \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {                      \
            csm_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,       \
                                            log_sum + r, alpha, yr, 0);        \
            continue;                                                          \
        }                                                                      \
        const VD mv = vd_set1(max[r]);                                         \
        const VD lv = vd_set1(log_sum[r]);                                     \
        VD lo, hi;                                                             \
        ptrdiff_t i = 0;                                                       \
        for (; i + VLEN <= n; i += VLEN) {                                     \
            vload2_##SUF(xr + i, &lo, &hi);                                    \
            lo = EXP(vd_fmsub(vd_sub(lo, mv), sv, lv));                        \
            hi = EXP(vd_fmsub(vd_sub(hi, mv), sv, lv));                        \
            vstore2_##SUF(yr + i, vd_mul(lo, av), vd_mul(hi, av));             \
        }                                                                      \
        if (i < n) {                                                           \
            vload2m_##SUF(xr + i, n - i, -INFINITY, &lo, &hi);                 \
            lo = EXP(vd_fmsub(vd_sub(lo, mv), sv, lv));                        \
            hi = EXP(vd_fmsub(vd_sub(hi, mv), sv, lv));                        \
            vstore2m_##SUF(yr + i, n - i, vd_mul(lo, av),                      \
                             vd_mul(hi, av));                                  \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void SUFFIX(csm_log_softmax_rows_##SUF##G)(const T *x, ptrdiff_t n_rows,    \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const VD sv = vd_set1(scale);                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {                      \
            csm_log_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,   \
                                                log_sum + r, alpha, yr, 0);    \
            continue;                                                          \
        }                                                                      \
        const VD mv = vd_set1(max[r]);                                         \
        const VD lv = vd_set1(log_sum[r]);                                     \
        VD lo, hi;                                                             \
        ptrdiff_t i = 0;                                                       \
        for (; i + VLEN <= n; i += VLEN) {                                     \
            vload2_##SUF(xr + i, &lo, &hi);                                    \
            vstore2_##SUF(yr + i,                                              \
                          lsm_zero_##SUF##_(vd_fmsub(vd_sub(lo, mv), sv, lv)), \
                          lsm_zero_##SUF##_(vd_fmsub(vd_sub(hi, mv), sv, lv)));\
        }                                                                      \
        if (i < n) {                                                           \
            vload2m_##SUF(xr + i, n - i, 0, &lo, &hi);                         \
            vstore2m_##SUF(yr + i, n - i,                                      \
                           lsm_zero_##SUF##_(vd_fmsub(vd_sub(lo, mv), sv, lv)),\
                           lsm_zero_##SUF##_(vd_fmsub(vd_sub(hi, mv), sv, lv)));\
        }                                                                      \
    }                                                                          \
}                                                                              \
/* Columns: VLEN columns per block, lanes = columns; the last block masked. */ \
ST void SUFFIX(csm_lse_cols_##SUF##G)(const T *x, ptrdiff_t n_cols, ptrdiff_t n, \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    const VD sv = vd_set1(scale), one = vd_set1(1.0);                          \
    const VD ninf = vd_set1(-INFINITY);                                        \
    for (ptrdiff_t j = 0; j < n_cols; j += VLEN) {                             \
        ptrdiff_t w = n_cols - j < VLEN ? n_cols - j : VLEN;                   \
        VD m0 = ninf, m1 = ninf, lo, hi; VDM bad = vdm_none();                 \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == VLEN) vload2_##SUF(x + i * row_stride + j, &lo, &hi);     \
            else vload2m_##SUF(x + i * row_stride + j, w, 0, &lo, &hi);        \
            m0 = vd_max(m0, lo); m1 = vd_max(m1, hi);                          \
            bad = vdm_or(bad, vd_cmp(lo, hi, _CMP_UNORD_Q));                   \
        }                                                                      \
        double mx[VLEN];                                                       \
        vd_storeu(mx, m0); vd_storeu(mx + VDLEN, m1);                          \
        int finite = !vdm_any(bad);                                            \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (mx[k] > -INFINITY && mx[k] < INFINITY);                 \
        if (!finite) { /* NaN or inf somewhere in the block: rare */           \
            csm_lse_cols_##SUF##_scalar(x + j, w, n, row_stride, scale,        \
                                        states + j);                           \
            continue;                                                          \
        }                                                                      \
        /* a lane sums its column's n terms: in blocks of 32 rows, the      \
         * block sums in blocks of 32 blocks (s0/s1, q0/q1), so one-sided    \
         * rounding grows like (32 + 32 + n / 1024) u, not n u (measured     \
         * 715 ULP at n = 4099 in one accumulator) */                        \
        VD r0 = vd_zero(), r1 = r0, c0 = r0, c1 = r0;                          \
        VD s0 = r0, s1 = r0, q0 = r0, q1 = r0;                                 \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == VLEN) vload2_##SUF(x + i * row_stride + j, &lo, &hi);     \
            else vload2m_##SUF(x + i * row_stride + j, w, 0, &lo, &hi);        \
            VDM e0 = vd_cmp(lo, m0, _CMP_EQ_OQ);                               \
            VDM e1 = vd_cmp(hi, m1, _CMP_EQ_OQ);                               \
            VD t0 = EXP(vd_mul(vd_sub(lo, m0), sv));                           \
            VD t1 = EXP(vd_mul(vd_sub(hi, m1), sv));                           \
            s0 = vd_add(s0, vd_unless(e0, t0));                                \
            s1 = vd_add(s1, vd_unless(e1, t1));                                \
            c0 = vd_add(c0, vd_when(e0, one));                                 \
            c1 = vd_add(c1, vd_when(e1, one));                                 \
            if ((i & 31) == 31) {                                              \
                q0 = vd_add(q0, s0); q1 = vd_add(q1, s1);                      \
                s0 = s1 = vd_zero();                                           \
                if ((i & 1023) == 1023) {                                      \
                    r0 = vd_add(r0, q0); r1 = vd_add(r1, q1);                  \
                    q0 = q1 = vd_zero();                                       \
                }                                                              \
            }                                                                  \
        }                                                                      \
        r0 = vd_add(r0, vd_add(q0, s0));                                       \
        r1 = vd_add(r1, vd_add(q1, s1));                                       \
        double cn[VLEN], rs[VLEN];                                             \
        vd_storeu(cn, c0); vd_storeu(cn + VDLEN, c1);                          \
        vd_storeu(rs, r0); vd_storeu(rs + VDLEN, r1);                          \
        for (ptrdiff_t k = 0; k < w; ++k) {                                    \
            states[j + k].max = mx[k];                                         \
            states[j + k].count = cn[k];                                       \
            states[j + k].rest = rs[k];                                        \
            /* float32: EXP is exp_f32acc_ (2^-28.5), so a column whose LSE  \
             * cancels near 0 is redone with libm's exp, as the groups of    \
             * lse_cols_f32 and the rows (lse_cancels_ sweep) do: without    \
             * it the tail columns and the groups sent here (a NaN lane)     \
             * lost up to 7.5e6 ULP (logsumexp of [[-0.8197, 0],             \
             * [-0.5808, 0]] along axis 0) */                                \
            if (sizeof(T) == 4 && lse_cancels_(states + j + k, scale))         \
                csm_lse_cols_##SUF##_scalar(x + j + k, 1, n, row_stride,       \
                                            scale, states + j + k);            \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void SUFFIX(csm_softmax_cols_##SUF##G)(const T *x, ptrdiff_t n_cols, ptrdiff_t n, \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const VD sv = vd_set1(scale), av = vd_set1(alpha);                         \
    for (ptrdiff_t j = 0; j < n_cols; j += VLEN) {                             \
        ptrdiff_t w = n_cols - j < VLEN ? n_cols - j : VLEN;                   \
        int finite = 1;                                                        \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (max[j + k] > -INFINITY && max[j + k] < INFINITY);       \
        if (!finite) {                                                         \
            csm_softmax_cols_##SUF##_scalar(x + j, w, n, x_row_stride, scale,  \
                max + j, log_sum + j, alpha, y + j, y_row_stride);             \
            continue;                                                          \
        }                                                                      \
        VD m0, m1, l0, l1, lo, hi;                                             \
        vload2m_f64(max + j, w, 0.0, &m0, &m1);                                \
        vload2m_f64(log_sum + j, w, 0.0, &l0, &l1);                            \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            const T *xi = x + i * x_row_stride + j;                            \
            T *yi = y + i * y_row_stride + j;                                  \
            if (w == VLEN) vload2_##SUF(xi, &lo, &hi);                         \
            else vload2m_##SUF(xi, w, 0, &lo, &hi);                            \
            lo = vd_mul(av, EXP(vd_fmsub(vd_sub(lo, m0), sv, l0)));            \
            hi = vd_mul(av, EXP(vd_fmsub(vd_sub(hi, m1), sv, l1)));            \
            if (w == VLEN) vstore2_##SUF(yi, lo, hi);                          \
            else vstore2m_##SUF(yi, w, lo, hi);                                \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void SUFFIX(csm_log_softmax_cols_##SUF##G)(const T *x, ptrdiff_t n_cols,    \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const VD sv = vd_set1(scale);                                              \
    for (ptrdiff_t j = 0; j < n_cols; j += VLEN) {                             \
        ptrdiff_t w = n_cols - j < VLEN ? n_cols - j : VLEN;                   \
        int finite = 1;                                                        \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (max[j + k] > -INFINITY && max[j + k] < INFINITY);       \
        if (!finite) {                                                         \
            csm_log_softmax_cols_##SUF##_scalar(x + j, w, n, x_row_stride,     \
                scale, max + j, log_sum + j, alpha, y + j, y_row_stride);      \
            continue;                                                          \
        }                                                                      \
        VD m0, m1, l0, l1, lo, hi;                                             \
        vload2m_f64(max + j, w, 0.0, &m0, &m1);                                \
        vload2m_f64(log_sum + j, w, 0.0, &l0, &l1);                            \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            const T *xi = x + i * x_row_stride + j;                            \
            T *yi = y + i * y_row_stride + j;                                  \
            if (w == VLEN) vload2_##SUF(xi, &lo, &hi);                         \
            else vload2m_##SUF(xi, w, 0, &lo, &hi);                            \
            lo = lsm_zero_##SUF##_(vd_fmsub(vd_sub(lo, m0), sv, l0));          \
            hi = lsm_zero_##SUF##_(vd_fmsub(vd_sub(hi, m1), sv, l1));          \
            if (w == VLEN) vstore2_##SUF(yi, lo, hi);                          \
            else vstore2m_##SUF(yi, w, lo, hi);                                \
        }                                                                      \
    }                                                                          \
}

#endif /* CSM_SIMD_GENERIC_H */
