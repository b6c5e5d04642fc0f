/*
 * simd/small_f32_body.h -- float32 short rows (n <= CSM_SMALL_MAX), 8 rows
 * per group: the reduction (lse_small), fused softmax / log_softmax, the
 * softmax write with a given (max, log_sum) and a factor alpha
 * (softmax_write_small), the cross-entropy gradient (ce_small) and the
 * vector expm1 of its target entries (expm1_le0_f64).
 *
 * One body, two kernel sets: src/avx2/small_f32.c and
 * src/avx512/small_f32.c.  A group of 8 rows is transposed into a __m256
 * tile (simd/small_tile_f32.h: lanes are rows); the float64 work of the
 * group -- the exp of each element, the sums, clamp, log -- is a GD of 8
 * float64 lanes: two __m256d on AVX2 (avx2/small.h), one __m512d on
 * AVX-512 (avx512/small.h), the same operations lane for lane, so both
 * ISAs give the same bits.  The AVX-512 table takes its fused softmax /
 * log_softmax and cross-entropy gradient from simd/small_lanes_f32_body.h
 * instead (16 rows a group in float32 lanes; CSM_SMALL_F32_LANES leaves
 * them out here).
 *
 * Numerics: the float32 fast paths (clamp, int32 counts of the elements
 * equal to the max, exp_f32acc_ in float64 lanes for the sum,
 * softmax_v_f32_ for the write); per-lane max / clamp / log_sum; lanes
 * whose clamp is not representable take exp_f32_ in a second masked
 * sweep; rows with a NaN, an infinite max or no finite element are redone
 * alone by the scalar kernels.  Unused lanes of a partial group repeat the
 * group's first row and are never stored, so a row's result does not
 * depend on the rows around it.
 * (internal; included by the ISA's small_f32.c after its small.h)
 */

DEFINE_FUSED_SMALL_ROW(float, f32)

/* float32 fast reduction sweep with per-lane max and clamp: lanes equal to
 * the max are counted (int32 lanes) and, like everything below the clamp L
 * (-inf included), replaced by L (term < e^-90: invisible); then
 * d = scale * (x - max) (exact) and exp_f32acc_ in float64 lanes. */
static inline __attribute__((always_inline)) void
small_sum_fast_f32_(const __m256 *T, ptrdiff_t n, __m256 mf, __m256 Lv,
                    GD m, GD sv, GD *cp, GD *rp, const int S1)
{
    GD r = gd_set1_(0.0);
    __m256i cnt = _mm256_setzero_si256();
    for (ptrdiff_t i = 0; i < n; ++i) {
        __m256 a = T[i];
        __m256 eq = _mm256_cmp_ps(a, mf, _CMP_EQ_OQ);
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq));
        __m256 c = _mm256_blendv_ps(_mm256_max_ps(a, Lv), Lv, eq);
        GD d = gd_sub_(gd_of_ps_(c), m);
        if (!S1) d = gd_mul_(d, sv);
        r = gd_add_(r, gd_exp_f32acc_(d));
    }
    *cp = gd_of_cnt_(cnt);
    *rp = r;
}

/* count (elements equal to the max, exact compares) and rest (the sum of
 * the others' exp(scale * (x - max))) of a group in float64 lanes, with
 * exp_f32_ or, EXACT, exp_f64_: the sweep of the lanes the float32 fast
 * path does not take, and the redo of lanes whose LSE cancels. */
static inline __attribute__((always_inline)) void
small_count_rest_f32_(const __m256 *T, ptrdiff_t n, GD m, GD sv, GD *cp,
                      GD *rp, const int EXACT)
{
    const GD one = gd_set1_(1.0);
    GD c = gd_set1_(0.0), r = c;
    for (ptrdiff_t i = 0; i < n; ++i) {
        const GD v = gd_of_ps_(T[i]);
        const GM e = gm_eq_(v, m);
        const GD d = gd_mul_(gd_sub_(v, m), sv);
        const GD t = EXACT ? gd_exp_f64_(d) : gd_exp_f32_(d);
        r = gd_add_(r, gd_unless_(e, t));
        c = gd_add_(c, gd_when_(e, one));
    }
    *cp = c;
    *rp = r;
}

/* Reduction of one float32 group (T, per-lane max mf, NaN lanes bad):
 * per-lane max *mp and log_sum *lp (float64); returns the lanes that were
 * reduced (finite max, no NaN); the others are left to the caller. */
static inline __attribute__((always_inline)) int
small_reduce_f32_(const __m256 *T, ptrdiff_t n, __m256 mf, __m256 bad,
                  double scale, GD sv, GD span_sv, GD *mp, GD *lp)
{
    const GD one = gd_set1_(1.0);
    const GD m = gd_of_ps_(mf);
    GD L;
    const int fin = gd_finite_bits_(m) & ~_mm256_movemask_ps(bad);
    const int fast = gd_clamp_bits_(m, sv, span_sv, F32_LSE_SPAN, &L) & fin;
    const int gen = fin & ~fast;
    GD c = one, r = gd_set1_(0.0);
    if (fast) {
        const __m256 Lv = gd_to_ps_(L);
        if (scale == 1.0) small_sum_fast_f32_(T, n, mf, Lv, m, sv, &c, &r, 1);
        else small_sum_fast_f32_(T, n, mf, Lv, m, sv, &c, &r, 0);
    }
    if (gen) {  /* finite max, no float32 clamp: float64 lanes, exact compares */
        GD gc, gr;
        small_count_rest_f32_(T, n, m, sv, &gc, &gr, 0);
        c = gd_pick_(c, gc, gen);
        r = gd_pick_(r, gr, gen);
    }
    *mp = m;
    *lp = gd_log_sum_(c, r);
    return fin;
}

/* Lanes of a reduced float32 group whose LSE = scale*max + log_sum cancels
 * (|LSE| < 1.3, scale*max != 0): the 2.6e-9 error of exp_f32acc_ would show
 * as many ULPs of a small LSE.  Their log_sum is recomputed with the float64
 * kernels' exp (exp_f64_, rel. error < 2^-52) and exact compares -- the
 * vector counterpart of the scalar redo in csm_lse_rows_f32. */
static inline void small_lse_exact_f32_(const __m256 *T, ptrdiff_t n, int fin,
                                        GD sv, GD m, GD *l)
{
    const int redo = fin & gd_cancels_bits_(m, *l, sv);
    if (!redo) return;
    const GD one = gd_set1_(1.0);
    GD c, r;
    small_count_rest_f32_(T, n, m, sv, &c, &r, 1);
    c = gd_pick_(one, c, redo);             /* keep the other lanes' log finite */
    *l = gd_pick_(*l, gd_log_sum_(c, r), redo);
}

/* the reduction of 8-row groups (AVX-512: logsumexp's, for_lse; its other
 * uses take simd/small_lanes_f32_body.h's, which the float32-lane
 * cross-entropy gradient must agree with) */
static CSM_MAYBE_UNUSED void
lse_small_g8_f32_(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                  ptrdiff_t row_stride, double scale, int for_lse,
                  double *max, double *log_sum)
{
    __m256 T[SMALL_COLS];
    const GD sv = gd_set1_(scale);
    const GD span_sv = gd_set1_(F32_LSE_SPAN / scale);
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        for (int k = 0; k < 8; ++k) p[k] = x + (g + (k < w ? k : 0)) * row_stride;
        __m256 mf, bad;
        GD m, l;
        small_in_f32_(p, n, T, &mf, &bad, 1);
        const int ok = small_reduce_f32_(T, n, mf, bad, scale, sv, span_sv, &m, &l);
        if (for_lse) small_lse_exact_f32_(T, n, ok, sv, m, &l);
        if (w == 8 && ok == 255) {
            gd_storeu_(max + g, m);
            gd_storeu_(log_sum + g, l);
            continue;
        }
        double mx[8], ls[8];
        gd_storeu_(mx, m);
        gd_storeu_(ls, l);
        for (ptrdiff_t k = 0; k < w; ++k) {
            if (ok >> k & 1) { max[g + k] = mx[k]; log_sum[g + k] = ls[k]; }
            else small_lse_row_f32_(p[k], n, scale, max + g + k, log_sum + g + k);
        }
    }
}

#ifndef CSM_SMALL_F32_LANES
void SUFFIX(csm_lse_small_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t row_stride, double scale, int for_lse,
                               double *max, double *log_sum)
{
    lse_small_g8_f32_(x, n_rows, n, row_stride, scale, for_lse, max, log_sum);
}
#endif

#ifndef CSM_SMALL_F32_LANES  /* AVX-512: simd/small_lanes_f32_body.h */
/* Fused softmax / log_softmax of float32 groups (reduction and write on the
 * same transposed tile).
 *   softmax: e = exp(scale * (max(x, L) - max)) once per element, kept in
 *            float64 (exp_f32acc_, rel. error 2.6e-9; L = the write clamp,
 *            scale*(L - max) ~ -200, below which float32 results are 0),
 *            y = e * (1 / sum e): about 0.5 ULP + 0.05 ULP.  Lanes without
 *            a representable clamp use exp_f32_ on the unclamped d.
 *   log_softmax: the reduction above (count of max elements kept apart),
 *            then y = scale * (x - max) - log_sum (x - max exact).
 * Rows with a NaN or a non-finite max go through the scalar kernels. */
static inline __attribute__((always_inline)) void
small_fused_f32_(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                 ptrdiff_t x_row_stride, double scale, float *y,
                 ptrdiff_t y_row_stride, const int LOG)
{
    __m256 T[SMALL_COLS];
    GD E[LOG ? 1 : SMALL_COLS];
    const GD sv = gd_set1_(scale), one = gd_set1_(1.0);
    const GD span_sv = gd_set1_((LOG ? F32_LSE_SPAN : F32_SM_SPAN) / scale);
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        float *q[8];
        for (int k = 0; k < 8; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
        }
        __m256 mf, bad;
        GD m, l;
        int fin;
        small_in_f32_(p, n, T, &mf, &bad, 1);
        if (LOG) {
            fin = small_reduce_f32_(T, n, mf, bad, scale, sv, span_sv, &m, &l);
            if (fin)
                for (ptrdiff_t i = 0; i < n; ++i)
                    T[i] = _mm256_add_ps(   /* + 0.0: zeros are +0.0 (logsm_f32_) */
                        gd_to_ps_(gd_fmsub_(gd_sub_(gd_of_ps_(T[i]), m), sv, l)),
                        _mm256_setzero_ps());
        } else {
            GD L;
            m = gd_of_ps_(mf);
            fin = gd_finite_bits_(m) & ~_mm256_movemask_ps(bad);
            const int fast = gd_clamp_bits_(m, sv, span_sv, F32_SM_SPAN, &L) & fin;
            const int gen = fin & ~fast;
            GD u = one;
            if (fast) {
                const __m256 Lv = gd_to_ps_(L);
                GD s = gd_set1_(0.0);
                for (ptrdiff_t i = 0; i < n; ++i) {
                    GD d = gd_sub_(gd_of_ps_(_mm256_max_ps(T[i], Lv)), m);
                    if (scale != 1.0) d = gd_mul_(d, sv);
                    d = gd_exp_f32acc_(d);
                    E[i] = d;
                    s = gd_add_(s, d);
                }
                u = s;
            }
            if (gen) {
                GD s = gd_set1_(0.0);
                for (ptrdiff_t i = 0; i < n; ++i) {
                    GD d = gd_exp_f32_(gd_mul_(gd_sub_(gd_of_ps_(T[i]), m), sv));
                    if (fast) d = gd_pick_(E[i], d, gen);
                    E[i] = d;
                    s = gd_add_(s, d);
                }
                u = gd_pick_(u, s, gen);
            }
            if (fin) {
                const GD inv = gd_div_(one, u);
                for (ptrdiff_t i = 0; i < n; ++i) T[i] = gd_to_ps_(gd_mul_(E[i], inv));
            }
        }
        const int store = fin & ((1 << w) - 1);
        if (store) small_out_f32_(T, n, q, store);
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1)) fused_small_row_f32_(p[k], q[k], n, scale, LOG);
    }
}

void SUFFIX(csm_softmax_small_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t x_row_stride, double scale, float *y,
                                   ptrdiff_t y_row_stride)
{
    small_fused_f32_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 0);
}

void SUFFIX(csm_log_softmax_small_f32)(const float *x, ptrdiff_t n_rows,
                                       ptrdiff_t n, ptrdiff_t x_row_stride,
                                       double scale, float *y,
                                       ptrdiff_t y_row_stride)
{
    small_fused_f32_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 1);
}

#endif /* CSM_SMALL_F32_LANES */

/* Softmax write of float32 rows with a given (max, log_sum) and a factor
 * alpha (y = alpha * exp(scale * (x - max) - log_sum); cross-entropy's
 * gradient).  With 0 < alpha <= 1, lanes with a representable clamp take
 * softmax_v_f32_ (the row kernel's fast path) on log_sum - log(alpha) >=
 * log_sum (so the clamped elements still give 0; the float64 log(alpha)
 * adds < 1e-13 to the argument); the other finite-max lanes take exp_f32_
 * in float64 (a second, masked sweep); the rest are redone by the scalar
 * kernel. */
void SUFFIX(csm_softmax_write_small_f32)(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    __m256 T[SMALL_COLS];
    const GD sv = gd_set1_(scale), av = gd_set1_(alpha);
    const GD span_sv = gd_set1_(F32_SM_SPAN / scale);
    const int alpha_ok = alpha > 0.0 && alpha <= 1.0;
    const GD lav = gd_set1_(alpha_ok ? log(alpha) : 0.0);
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        float *q[8];
        double mx[8], ls[8];
        for (int k = 0; k < 8; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            mx[k] = max[r];
            ls[k] = log_sum[r];
        }
        const GD m = gd_loadu_(mx), l = gd_loadu_(ls);
        const int fin = gd_finite_bits_(m);
        int fast = 0;
        GD L;
        if (alpha_ok) fast = gd_clamp_bits_(m, sv, span_sv, F32_SM_SPAN, &L) & fin;
        const int gen = fin & ~fast;
        const int store = fin & ((1 << w) - 1);
        if (store) {
            small_in_f32_(p, n, T, NULL, NULL, 0);
            if (fast) {
                const __m256 Lv = gd_to_ps_(L);
                const GD cv = gd_fmadd_(sv, m, gd_sub_(l, lav));
                if (gen) {
                    const __m256 fm = small_lanes_ps_(fast);
                    for (ptrdiff_t i = 0; i < n; ++i)
                        T[i] = _mm256_blendv_ps(T[i], gd_softmax_ps_(
                            _mm256_max_ps(T[i], Lv), sv, cv), fm);
                } else {
                    for (ptrdiff_t i = 0; i < n; ++i)
                        T[i] = gd_softmax_ps_(_mm256_max_ps(T[i], Lv), sv, cv);
                }
            }
            if (gen) {
                const __m256 gm = small_lanes_ps_(gen);
                for (ptrdiff_t i = 0; i < n; ++i) {
                    GD d = gd_fmsub_(gd_sub_(gd_of_ps_(T[i]), m), sv, l);
                    const __m256 v = gd_to_ps_(gd_mul_(gd_exp_f32_(d), av));
                    T[i] = gen == 255 ? v : _mm256_blendv_ps(T[i], v, gm);
                }
            }
            small_out_f32_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                csm_softmax_rows_f32_scalar(p[k], 1, n, 0, scale, mx + k, ls + k,
                                            alpha, q[k], 0);
    }
}

/* out[i] = expm1(t[i]) for t[i] <= 0 (NaN -> NaN), 8 lanes at a time:
 * the cross-entropy fix-ups' target entries, a block at a time. */
void SUFFIX(csm_expm1_le0_f64)(const double *t, double *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        gd_storeu_(out + i, gd_expm1_le0_(gd_loadu_(t + i)));
    if (i < n) {
        double b[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        for (ptrdiff_t k = i; k < n; ++k) b[k - i] = t[k];
        gd_storeu_(b, gd_expm1_le0_(gd_loadu_(b)));
        for (ptrdiff_t k = i; k < n; ++k) out[k] = b[k - i];
    }
}

DEFINE_CE_SMALL_ROW(float, f32)

#ifndef CSM_SMALL_F32_LANES  /* AVX-512: simd/small_lanes_f32_body.h */
/* Cross-entropy gradient of float32 short rows in one call (see
 * csoftmax.h): the fused short-row softmax (one exp_f32acc_ per element,
 * kept in float64; elements equal to the max counted apart so log_sum =
 * log(count + rest) keeps a tiny rest), each row scaled by a[r] / sum, and
 * the target entry recomputed as a[r] * expm1(lp) from lp = scale * (x_t -
 * max) - log_sum in float64 (no cancellation near p_t = 1).  Lanes with a
 * representable clamp and |a| <= 2^60 clamp at F32_SM_SPAN (a clamped
 * element's a * p < 2^60 e^-150 rounds to 0 in float32, as its true value
 * does); the other finite-max lanes take exp_f32_ unclamped; rows with a
 * NaN or a non-finite max go through the scalar kernels. */
void SUFFIX(csm_ce_small_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t x_row_stride, double scale,
                              const double *a, const int *t, double *lp,
                              float *y, ptrdiff_t y_row_stride)
{
    __m256 T[SMALL_COLS];
    GD E[SMALL_COLS];
    const GD sv = gd_set1_(scale), one = gd_set1_(1.0);
    const GD span_sv = gd_set1_(F32_SM_SPAN / scale);
    float *Tf = (float *)T;
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        float *q[8];
        double av[8];
        int tk[8];
        for (int k = 0; k < 8; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            av[k] = a[r];
            tk[k] = t != NULL ? t[r] : -1;
        }
        const GD ag = gd_loadu_(av);
        __m256 mf, bad;
        small_in_f32_(p, n, T, &mf, &bad, 1);
        const GD m = gd_of_ps_(mf);
        const int fin = gd_finite_bits_(m) & ~_mm256_movemask_ps(bad);
        const int small_a = gd_absle_bits_(ag, 0x1p60);
        GD L;
        const int fast = gd_clamp_bits_(m, sv, span_sv, F32_SM_SPAN, &L) & fin & small_a;
        const int gen = fin & ~fast;
        GD c = one, r = gd_set1_(0.0);
        if (fast) {
            const __m256 Lv = gd_to_ps_(L);
            __m256i cnt = _mm256_setzero_si256();
            for (ptrdiff_t i = 0; i < n; ++i) {
                const __m256 v = T[i];
                const __m256 eq = _mm256_cmp_ps(v, mf, _CMP_EQ_OQ);
                cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq));
                GD d = gd_sub_(gd_of_ps_(_mm256_max_ps(v, Lv)), m);
                if (scale != 1.0) d = gd_mul_(d, sv);
                d = gd_exp_f32acc_(d);          /* exactly 1 at the max */
                E[i] = d;
                r = gd_add_(r, gd_unless_(gm_of_ps_(eq), d));
            }
            c = gd_of_cnt_(cnt);
        }
        if (gen) {  /* finite max without a float32 clamp: exact compares */
            GD gc = gd_set1_(0.0), gr = gc;
            for (ptrdiff_t i = 0; i < n; ++i) {
                const GD v = gd_of_ps_(T[i]);
                const GM e = gm_eq_(v, m);
                GD d = gd_exp_f32_(gd_mul_(gd_sub_(v, m), sv));
                if (fast) d = gd_pick_(E[i], d, gen);
                E[i] = d;
                gr = gd_add_(gr, gd_unless_(e, d));
                gc = gd_add_(gc, gd_when_(e, one));
            }
            c = gd_pick_(c, gc, gen);
            r = gd_pick_(r, gr, gen);
        }
        const int store = fin & ((1 << w) - 1);
        if (store) {
            const GD f = gd_div_(ag, gd_add_(c, r));
            /* target lanes (t >= 0, stored): x_t gathered from the tile, the
             * entry a * expm1(lp) blended in where the column is t */
            const __m256i tv = _mm256_loadu_si256((const __m256i *)tk);
            const __m256i tm = _mm256_and_si256(
                _mm256_cmpgt_epi32(tv, _mm256_set1_epi32(-1)),
                _mm256_castps_si256(small_lanes_ps_(store)));
            const int tmask = _mm256_movemask_ps(_mm256_castsi256_ps(tm));
            __m256 gt = _mm256_setzero_ps();
            if (tmask) {
                const __m256i idx = _mm256_add_epi32(_mm256_slli_epi32(tv, 3),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                const __m256 xt = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), Tf, idx,
                                                           _mm256_castsi256_ps(tm), 4);
                const GD l = gd_log_sum_(c, r);
                const GD tl = gd_ce_lp_(gd_of_ps_(xt), m, sv, l);
                gt = gd_to_ps_(gd_mul_(ag, gd_expm1_le0_(tl)));
                if (tmask == 255) {
                    gd_storeu_(lp + g, tl);
                } else {
                    double lv[8];
                    gd_storeu_(lv, tl);
                    for (int k = 0; k < 8; ++k)
                        if (tmask >> k & 1) lp[g + k] = lv[k];
                }
            }
            const __m256i tsel = _mm256_or_si256(tv, _mm256_xor_si256(tm, _mm256_set1_epi32(-1)));
            for (ptrdiff_t i = 0; i < n; ++i) {
                const __m256 v = gd_to_ps_(gd_mul_(E[i], f));
                /* tsel: t in target lanes, -1 elsewhere (never a column) */
                T[i] = _mm256_blendv_ps(v, gt, _mm256_castsi256_ps(
                    _mm256_cmpeq_epi32(tsel, _mm256_set1_epi32((int)i))));
            }
            small_out_f32_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                ce_small_row_f32_(p[k], q[k], n, scale, av[k], tk[k], lp + g + k);
    }
}
#endif /* CSM_SMALL_F32_LANES */
