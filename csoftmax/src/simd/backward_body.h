/*
 * simd/backward_body.h -- the backward kernels (vector-Jacobian products of
 * softmax / log_softmax) over rows and columns, float32 and float64,
 * written once against the lane abstraction and compiled per ISA by
 * src/avx2/finalize_backward.c and src/avx512/backward.c.
 * (internal; included once, by those files, after common.h)
 */

/* ---- backward (VJP) over contiguous rows --------------------------------
 * Both passes widen to float64 (VLEN / 2 lanes) and sum with 4 accumulators.
 * log_softmax needs exp(y): the vector exp is valid for y <= 0 (what a
 * log-probability is); a row holding y > 0 or NaN is done by the scalar
 * kernel (libm exp, IEEE propagation).  dy - exp(y) * sum is one fused
 * multiply-add rounded to float64, then once to the result type, with an
 * exp accurate enough for the difference: float32 data, exp_mid_ (2^-43);
 * float64 data, the float64 exp.
 * Two kernels per op, the same bits: *_bwd_rows_* and *_bwd_rows_pf_*,
 * whose write pass (from L1) also fetches the same offset of the next row
 * of the call (rows are contiguous): one line a step of VLEN floats, more
 * for doubles is not needed.  Which one serves a call is the planner's
 * (paths ROWS and ROWS_PREFETCH, csoftmax/_plan.pxi SOFTMAX_BWD_PREFETCH:
 * the fetch pays on the Xeon, costs softmax_backward on AMD Zen4). */
#define BWD_PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

/* A float32 row's write pass in float32 lanes: o = F(y, dy) a vector at a
 * time, the tail through masked loads (zeros) and a masked store; with pf
 * the next row's same offsets are fetched. */
#define BWD_ROW_F32(yr, gr, orow, n, pf, F)                                    \
    do {                                                                       \
        ptrdiff_t i_ = 0;                                                      \
        for (; i_ + VLEN <= (n); i_ += VLEN) {                                 \
            if (pf) { BWD_PF((yr) + (n) + i_); BWD_PF((gr) + (n) + i_); }      \
            const V y_ = v_load((yr) + i_), g_ = v_load((gr) + i_);            \
            v_store((orow) + i_, F(y_, g_));                                   \
        }                                                                      \
        if (i_ < (n)) {                                                        \
            VT tm_ = v_tail((n) - i_);                                         \
            const V y_ = v_loadz_tail((yr) + i_, tm_),                         \
                    g_ = v_loadz_tail((gr) + i_, tm_);                         \
            v_store_tail((orow) + i_, tm_, F(y_, g_));                         \
        }                                                                      \
    } while (0)

/* softmax_backward's write pass, o = y (dy - s), s = sum y dy in float64.
 * float64 data: in float64 lanes.  float32 data: in float32 lanes, half
 * the widening form's operations: s split into float32 s_hi + s_lo (s to
 * 2^-48 relative), y s_hi as the exact pair p + e (FMA), then
 *     o = fma(y, dy, -p) - fma(y, s_lo, e),
 * the first rounded once on about the result, the second a term of
 * 2^-24 y s rounded to 2^-48 y s: <= ~1 ULP + 2^-47 y |s| (the contract's
 * 2^-36 cond holds y |s|).  |s| <= 2^100 keeps every product finite where
 * the float64 form is; a larger or non-finite s takes that form. */
#define BWD_SM_WRITE_F64(T, SUF)                                               \
    for (i = 0; i + VLEN <= n; i += VLEN) {                                    \
        if (pf) { BWD_PF(yr + n + i); BWD_PF(gr + n + i); }                    \
        vload2_##SUF(yr + i, &a, &b); vload2_##SUF(gr + i, &c, &d);            \
        vstore2_##SUF(orow + i, vd_mul(a, vd_sub(c, sv)),                      \
                        vd_mul(b, vd_sub(d, sv)));                             \
    }                                                                          \
    if (i < n) {                                                               \
        vload2m_##SUF(yr + i, n - i, 0, &a, &b);                               \
        vload2m_##SUF(gr + i, n - i, 0, &c, &d);                               \
        vstore2m_##SUF(orow + i, n - i,                                        \
                         vd_mul(a, vd_sub(c, sv)),                             \
                         vd_mul(b, vd_sub(d, sv)));                            \
    }
static inline __attribute__((always_inline)) int
bwd_sm_write_f32_(const float *yr, const float *gr, float *orow, ptrdiff_t n,
                  double s, int pf)
{
    if (!(fabs(s) <= 0x1p100)) return 0;
    const float sh = (float)s;
    const V vh = v_set1(sh), vl = v_set1((float)(s - (double)sh));
#define BWD_SM32(y_, g_)                                                       \
    ({ const V p_ = v_mul(y_, vh), e_ = v_fmsub(y_, vh, p_);                   \
       v_sub(v_fmsub(y_, g_, p_), v_fmadd(y_, vl, e_)); })
    BWD_ROW_F32(yr, gr, orow, n, pf, BWD_SM32);
#undef BWD_SM32
    return 1;
}
/* log_softmax_backward's write pass, o = dy - exp(y) s, float32 data, in
 * float32 lanes (exp_s_parts_f32_ of avx512/exp.h and avx2/exp.h): exp(y) s
 * = 2^k T (1 + v_hi + v_lo) with T = T_hi + T_lo = 2^(j/32) s (AVX-512;
 * 2^(j/16) s on AVX2), to 2^-42, and with a = T_hi v_hi as the exact pair
 * a_hi + a_lo (FMA):
 *     o = ((dy - 2^k T_hi) - 2^k a_hi) - 2^k (a_lo + T_hi v_lo + T_lo (1 + v_hi)).
 * Where dy and exp(y) s cancel, dy - 2^k T_hi is exact (Sterbenz: |v| <
 * 2^-5), so the result is rounded about once more than a single rounding.
 * Elsewhere the three differences may each round into the binade above a
 * result just below a power of two: up to about 3 ULP beyond 2^-36 cond
 * (a review's targeted search: 3.0 on AVX2; random fuzz up to 1.98; the
 * contract: 4 ULP + 2^-36 cond).  A vector holding y < -87 or exp(y) |s|
 * < 2^-100 takes the float64-lane form (-inf of a masked row; 2^k T_j
 * and the scaled terms leaving the normal range, whose roundings at 2^-150
 * absolute measured 3.2 ULP on a result near 2^-125 with |s| near
 * 2^-127); |s| > 2^100 or not finite, the whole row (returns 0).  The
 * caller's first pass sent rows with y > 0 or NaN to the scalar kernel. */
static inline __attribute__((always_inline)) int
bwd_lsm_write_f32_(const float *yr, const float *gr, float *orow, ptrdiff_t n,
                   double s, int pf)
{
#ifdef CSM_EXP_PAIR_F32
    if (!(fabs(s) <= 0x1p100))            /* and not NaN */
        return 0;
    const csm_exp2_tab tab = exp2_tab_scaled_(s);
    /* float32 lanes only where y >= -87 and exp(y) |s| >= 2^-100: with
     * |s| >= 2^E, y >= -(100 + E) ln 2 is enough (no log).  E is s's
     * exponent field less the bias (ilogb(s) without a libm call a row;
     * -1023 for a subnormal s, whose rows thus take the float64 form). */
    uint64_t sb;
    memcpy(&sb, &s, sizeof sb);
    const int se = (int)((sb >> 52) & 0x7ff) - 1023;
    const double lo = s == 0.0 ? -87.0 :
        fmax(-87.0, -(100.0 + (double)se) * 0.6931471805599453 + 1e-3);
    const V low = v_set1((float)lo);
    const VD sd = vd_set1(s);
#define BWD_LSM32(y_, g_)                                                      \
    ({ V o_;                                                                   \
       if (v_anynan(v_cmp(y_, low, _CMP_LT_OQ))) {                             \
           o_ = v_from_pd(lsb_f32_(v_lo_pd(y_), sd, v_lo_pd(g_)),              \
                          lsb_f32_(v_hi_pd(y_), sd, v_hi_pd(g_)));             \
       } else {                                                                \
           V k_, th_, tl_, vh_, vl_;                                           \
           exp_s_parts_f32_(y_, &tab, &k_, &th_, &tl_, &vh_, &vl_);            \
           const V ah_ = v_mul(th_, vh_), al_ = v_fmsub(th_, vh_, ah_);        \
           const V t_ = v_sub(v_sub(g_, v_scale2k(th_, k_)),                   \
                              v_scale2k(ah_, k_));                             \
           const V c_ = v_add(v_fmadd(th_, vl_, v_fmadd(tl_, vh_, tl_)), al_); \
           o_ = v_sub(t_, v_scale2k(c_, k_));                                  \
       }                                                                       \
       o_; })
    BWD_ROW_F32(yr, gr, orow, n, pf, BWD_LSM32);
#undef BWD_LSM32
    return 1;
#else
    (void)yr; (void)gr; (void)orow; (void)n; (void)s; (void)pf;
    return 0;
#endif
}
static inline __attribute__((always_inline)) int
bwd_lsm_write_f64_(const double *yr, const double *gr, double *orow,
                   ptrdiff_t n, double s, int pf)
{
    (void)yr; (void)gr; (void)orow; (void)n; (void)s; (void)pf;
    return 0;
}
static inline __attribute__((always_inline)) int
bwd_sm_write_f64_(const double *yr, const double *gr, double *orow,
                  ptrdiff_t n, double s, int pf)
{
    (void)yr; (void)gr; (void)orow; (void)n; (void)s; (void)pf;
    return 0;
}
/* log_softmax_backward's first pass: s = sum dy in float64 (4 accumulators,
 * VLEN elements of each a step: the same sums whatever the write pass);
 * returns nonzero when the row holds y > 0 or NaN (the caller gives such a
 * row to the scalar kernel).  float32: y compared in float32 lanes. */
static inline __attribute__((always_inline)) int
lsm_sum_f32_(const float *yr, const float *gr, ptrdiff_t n, double *s)
{
    const V zero = v_zero();
    VD s0 = vd_zero(), s1 = s0, s2 = s0, s3 = s0, c, d;
    VM bad = vm_none();
    ptrdiff_t i = 0;
    for (; i + 2 * VLEN <= n; i += 2 * VLEN) {
        bad = vm_or(bad, vm_or(v_cmp(v_load(yr + i), zero, _CMP_NLE_UQ),
                    v_cmp(v_load(yr + i + VLEN), zero, _CMP_NLE_UQ)));
        vload2_f32(gr + i, &c, &d); s0 = vd_add(s0, c); s1 = vd_add(s1, d);
        vload2_f32(gr + i + VLEN, &c, &d); s2 = vd_add(s2, c); s3 = vd_add(s3, d);
    }
    for (; i + VLEN <= n; i += VLEN) {
        bad = vm_or(bad, v_cmp(v_load(yr + i), zero, _CMP_NLE_UQ));
        vload2_f32(gr + i, &c, &d); s0 = vd_add(s0, c); s1 = vd_add(s1, d);
    }
    if (i < n) {
        bad = vm_or(bad, v_cmp(v_loadz_tail(yr + i, v_tail(n - i)), zero,
                               _CMP_NLE_UQ));
        vload2m_f32(gr + i, n - i, 0, &c, &d);
        s0 = vd_add(s0, c); s1 = vd_add(s1, d);
    }
    *s = vd_hsum(vd_add(vd_add(s0, s1), vd_add(s2, s3)));
    return v_anynan(bad) != 0;
}
static inline __attribute__((always_inline)) int
lsm_sum_f64_(const double *yr, const double *gr, ptrdiff_t n, double *s)
{
    const VD zero = vd_zero();
    VD s0 = zero, s1 = zero, s2 = zero, s3 = zero, a, b, c, d;
    VDM bad = vdm_none();
    ptrdiff_t i = 0;
#define LSM_STEP(k, sa, sb)                                                    \
    vload2_f64(yr + (k), &a, &b); vload2_f64(gr + (k), &c, &d);                \
    sa = vd_add(sa, c); sb = vd_add(sb, d);                                    \
    bad = vdm_or(bad, vdm_or(vd_cmp(a, zero, _CMP_NLE_UQ),                     \
                             vd_cmp(b, zero, _CMP_NLE_UQ)));
    for (; i + 2 * VLEN <= n; i += 2 * VLEN) {
        LSM_STEP(i, s0, s1)
        LSM_STEP(i + VLEN, s2, s3)
    }
    for (; i + VLEN <= n; i += VLEN) { LSM_STEP(i, s0, s1) }
#undef LSM_STEP
    if (i < n) {
        vload2m_f64(yr + i, n - i, 0, &a, &b);
        vload2m_f64(gr + i, n - i, 0, &c, &d);
        s0 = vd_add(s0, c); s1 = vd_add(s1, d);
        bad = vdm_or(bad, vdm_or(vd_cmp(a, zero, _CMP_NLE_UQ),
                                 vd_cmp(b, zero, _CMP_NLE_UQ)));
    }
    *s = vd_hsum(vd_add(vd_add(s0, s1), vd_add(s2, s3)));
    return vdm_any(bad) != 0;
}
#define DEFINE_BWD(T, SUF, EXP, PFX, PF)                                       \
void SUFFIX(csm_softmax_bwd_rows_##PFX##SUF)(const T *y, const T *dy, T *o,    \
                                       ptrdiff_t n_rows, ptrdiff_t n)          \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        VD s0 = vd_zero(), s1 = s0, s2 = s0, s3 = s0;                          \
        VD a, b, c, d;                                                         \
        ptrdiff_t i = 0;                                                       \
        for (; i + 2 * VLEN <= n; i += 2 * VLEN) {                             \
            vload2_##SUF(yr + i, &a, &b); vload2_##SUF(gr + i, &c, &d);        \
            s0 = vd_fmadd(a, c, s0); s1 = vd_fmadd(b, d, s1);                  \
            vload2_##SUF(yr + i + VLEN, &a, &b);                               \
            vload2_##SUF(gr + i + VLEN, &c, &d);                               \
            s2 = vd_fmadd(a, c, s2); s3 = vd_fmadd(b, d, s3);                  \
        }                                                                      \
        for (; i + VLEN <= n; i += VLEN) {                                     \
            vload2_##SUF(yr + i, &a, &b); vload2_##SUF(gr + i, &c, &d);        \
            s0 = vd_fmadd(a, c, s0); s1 = vd_fmadd(b, d, s1);                  \
        }                                                                      \
        if (i < n) {                                                           \
            vload2m_##SUF(yr + i, n - i, 0, &a, &b);                           \
            vload2m_##SUF(gr + i, n - i, 0, &c, &d);                           \
            s0 = vd_fmadd(a, c, s0); s1 = vd_fmadd(b, d, s1);                  \
        }                                                                      \
        const double s_ = vd_hsum(vd_add(vd_add(s0, s1), vd_add(s2, s3)));    \
        const VD sv = vd_set1(s_);                                             \
        const int pf = PF && r + 1 < n_rows;  /* not past the call's rows */  \
        if (bwd_sm_write_##SUF##_(yr, gr, orow, n, s_, pf)) continue;          \
        BWD_SM_WRITE_F64(T, SUF)                                               \
    }                                                                          \
}                                                                              \
void SUFFIX(csm_log_softmax_bwd_rows_##PFX##SUF)(const T *y, const T *dy,      \
                                           T *o, ptrdiff_t n_rows, ptrdiff_t n)\
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        double s_;                                                             \
        if (lsm_sum_##SUF##_(yr, gr, n, &s_)) {                                \
            csm_log_softmax_bwd_rows_##SUF##_scalar(yr, gr, orow, 1, n);       \
            continue;                                                          \
        }                                                                      \
        const int pf = PF && r + 1 < n_rows;  /* not past the call's rows */  \
        if (bwd_lsm_write_##SUF##_(yr, gr, orow, n, s_, pf)) continue;         \
        const VD sv = vd_set1(s_);                                             \
        VD a, b, c, d;                                                         \
        ptrdiff_t i;                                                           \
        for (i = 0; i + VLEN <= n; i += VLEN) {                                \
            if (pf) { BWD_PF(yr + n + i); BWD_PF(gr + n + i); }                \
            vload2_##SUF(yr + i, &a, &b); vload2_##SUF(gr + i, &c, &d);        \
            vstore2_##SUF(orow + i, EXP(a, sv, c),                             \
                            EXP(b, sv, d));                                    \
        }                                                                      \
        if (i < n) {                                                           \
            vload2m_##SUF(yr + i, n - i, 0, &a, &b);                           \
            vload2m_##SUF(gr + i, n - i, 0, &c, &d);                           \
            vstore2m_##SUF(orow + i, n - i, EXP(a, sv, c),                     \
                             EXP(b, sv, d));                                   \
        }                                                                      \
    }                                                                          \
}
DEFINE_BWD(float, f32, lsb_f32_, , 0)
DEFINE_BWD(float, f32, lsb_f32_, pf_, 1)
#ifndef CSM_BWD_ROWS_F64_FROM_AVX2   /* see src/avx512/backward.c */
DEFINE_BWD(double, f64, lsb_f64_, , 0)
DEFINE_BWD(double, f64, lsb_f64_, pf_, 1)
#endif

/* ---- backward (VJP) over columns ----------------------------------------
 * n_cols columns of n rows (row_stride apart; the same for y, dy and o,
 * which may be dy itself): the row kernels' arithmetic (float64 lanes and
 * sums) VLEN columns at a time (lanes = columns: AVX2 and AVX-512 give
 * the same bits).  log_softmax: a group of VLEN columns holding
 * y > 0 or NaN is done column by column with libm exp (IEEE propagation),
 * as the row kernel does such a row. */
#define DEFINE_BWD_COLS(T, SUF, EXP)                                           \
static void log_bwd_col_##SUF##_(const T *y, const T *dy, T *o, ptrdiff_t n,   \
                                 ptrdiff_t rs)                                 \
{                                                                              \
    double s = 0.0;                                                            \
    for (ptrdiff_t i = 0; i < n; ++i) s += (double)dy[i * rs];                 \
    for (ptrdiff_t i = 0; i < n; ++i)                                          \
        o[i * rs] = (T)((double)dy[i * rs] - exp((double)y[i * rs]) * s);      \
}                                                                              \
void SUFFIX(csm_softmax_bwd_cols_##SUF)(const T *y, const T *dy, T *o,         \
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs)                           \
{                                                                              \
    for (ptrdiff_t j = 0; j < n_cols; j += VLEN) {                             \
        const ptrdiff_t w = n_cols - j < VLEN ? n_cols - j : VLEN;             \
        VD s0 = vd_zero(), s1 = s0, a, b, c, d;                                \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == VLEN) {                                                   \
                vload2_##SUF(y + i * rs + j, &a, &b);                          \
                vload2_##SUF(dy + i * rs + j, &c, &d);                         \
            } else {                                                           \
                vload2m_##SUF(y + i * rs + j, w, 0, &a, &b);                   \
                vload2m_##SUF(dy + i * rs + j, w, 0, &c, &d);                  \
            }                                                                  \
            s0 = vd_fmadd(a, c, s0); s1 = vd_fmadd(b, d, s1);                  \
        }                                                                      \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == VLEN) {                                                   \
                vload2_##SUF(y + i * rs + j, &a, &b);                          \
                vload2_##SUF(dy + i * rs + j, &c, &d);                         \
                vstore2_##SUF(o + i * rs + j, vd_mul(a, vd_sub(c, s0)),        \
                                vd_mul(b, vd_sub(d, s1)));                     \
            } else {                                                           \
                vload2m_##SUF(y + i * rs + j, w, 0, &a, &b);                   \
                vload2m_##SUF(dy + i * rs + j, w, 0, &c, &d);                  \
                vstore2m_##SUF(o + i * rs + j, w,                              \
                                 vd_mul(a, vd_sub(c, s0)),                     \
                                 vd_mul(b, vd_sub(d, s1)));                    \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}                                                                              \
void SUFFIX(csm_log_softmax_bwd_cols_##SUF)(const T *y, const T *dy, T *o,     \
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs)                           \
{                                                                              \
    const VD zero = vd_zero();                                                 \
    for (ptrdiff_t j = 0; j < n_cols; j += VLEN) {                             \
        const ptrdiff_t w = n_cols - j < VLEN ? n_cols - j : VLEN;             \
        VD s0 = zero, s1 = zero, a, b, c, d; VDM bad = vdm_none();             \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == VLEN) {                                                   \
                vload2_##SUF(y + i * rs + j, &a, &b);                          \
                vload2_##SUF(dy + i * rs + j, &c, &d);                         \
            } else {                                                           \
                vload2m_##SUF(y + i * rs + j, w, 0, &a, &b);                   \
                vload2m_##SUF(dy + i * rs + j, w, 0, &c, &d);                  \
            }                                                                  \
            s0 = vd_add(s0, c); s1 = vd_add(s1, d);                            \
            bad = vdm_or(bad, vdm_or(                                          \
                vd_cmp(a, zero, _CMP_NLE_UQ),                                  \
                vd_cmp(b, zero, _CMP_NLE_UQ)));                                \
        }                                                                      \
        if (vdm_any(bad)) {                                                    \
            for (ptrdiff_t k = 0; k < w; ++k)                                  \
                log_bwd_col_##SUF##_(y + j + k, dy + j + k, o + j + k, n, rs); \
            continue;                                                          \
        }                                                                      \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == VLEN) {                                                   \
                vload2_##SUF(y + i * rs + j, &a, &b);                          \
                vload2_##SUF(dy + i * rs + j, &c, &d);                         \
                vstore2_##SUF(o + i * rs + j, EXP(a, s0, c),                   \
                                EXP(b, s1, d));                                \
            } else {                                                           \
                vload2m_##SUF(y + i * rs + j, w, 0, &a, &b);                   \
                vload2m_##SUF(dy + i * rs + j, w, 0, &c, &d);                  \
                vstore2m_##SUF(o + i * rs + j, w,                              \
                                 EXP(a, s0, c),                                \
                                 EXP(b, s1, d));                               \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}
DEFINE_BWD_COLS(float, f32, lsb_f32_)
DEFINE_BWD_COLS(double, f64, lsb_f64_)
#undef DEFINE_BWD_COLS

