/*
 * simd/rows_f32_body.h -- float32 rows in float32 lanes with the exact
 * argument reduction (xr_f32.h): the reduction (lse_rows, lse_rows_pw) and
 * the softmax / log_softmax write passes.  Written once against the lane
 * abstraction and compiled per ISA: src/avx2/rows_f32.c (8 lanes),
 * src/avx512/rows_f32.c (16 lanes).  Rows the fast paths do not take go to
 * the AVX2 generic kernels (float64 lanes, src/avx2/generic.h) on both.
 * (internal; included once, by those files, after common.h)
 */

/* pf, pw: the prefetch hints (pf: where the next block of the input
 * starts, the next chunk or row; pw: this chunk's destination or NULL). */
static void lse_chunk_f32_(const float *x, ptrdiff_t n, double scale,
                           double span_s, csm_lse_state *st, const float *pf,
                           const float *pw)
{
    if (n < 32) {   /* short rows: fixed costs dominate, masks are cheaper */
        csm_lse_rows_f32_generic_avx2(x, 1, n, n, scale, st);
        return;
    }
    double m = row_max_f32_(x, n);
    float L;
    if (!clamp_bound_(m, scale, XR_SPAN, span_s, &L)) {
        csm_lse_rows_f32_generic_avx2(x, 1, n, n, scale, st);
        return;
    }
    if (scale == 1.0) lse_chunk_f32_xr_(x, n, scale, m, L, st, pf, pw, 1);
    else lse_chunk_f32_xr_(x, n, scale, m, L, st, pf, pw, 0);
}

/* rows of 32 to FG_MAX_N elements FG_ROWS at a time (xr_f32.h "rows a
 * group at a time", xr_group_sums_): the states of lse_chunk_f32_ (rest's
 * factor and the order of the last additions may differ in their last
 * bits); with w, hints for the row's destination. */
static inline __attribute__((always_inline)) void
lse_group_f32_(const float *x, ptrdiff_t g, ptrdiff_t n, ptrdiff_t xs,
               double scale, csm_lse_state *states, const float *w,
               ptrdiff_t ws, const int S1)
{
    const int ok = xr_group_states_(x, g, n, xs, scale, states, NULL, 0, w, ws, S1, 0);
    for (ptrdiff_t r = 0; r < g; ++r)
        if (!(ok >> r & 1))
            csm_lse_rows_f32_generic_avx2(x + r * xs, 1, n, n, scale, states + r);
}

static void lse_rows_f32_(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                          ptrdiff_t row_stride, double scale,
                          csm_lse_state *states, const float *w,
                          ptrdiff_t w_row_stride, const int for_lse)
{
    const double span_s = XR_SPAN / scale;
    if (n >= 32 && n <= FG_MAX_N && n <= CHUNK) {
        for (ptrdiff_t r = 0; r < n_rows; r += FG_ROWS) {
            const ptrdiff_t g = n_rows - r < FG_ROWS ? n_rows - r : FG_ROWS;
            const float *wr = w ? w + r * w_row_stride : NULL;
            if (scale == 1.0)
                lse_group_f32_(x + r * row_stride, g, n, row_stride, scale,
                               states + r, wr, w_row_stride, 1);
            else
                lse_group_f32_(x + r * row_stride, g, n, row_stride, scale,
                               states + r, wr, w_row_stride, 0);
        }
    } else for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * row_stride;
        const float *wr = w ? w + r * w_row_stride : NULL;
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;
        if (n <= CHUNK) {
            lse_chunk_f32_(xr, n, scale, span_s, &acc, xr + row_stride, wr);
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {
            lse_chunk_f32_(xr + c, n - c < CHUNK ? n - c : CHUNK, scale,
                           span_s, &part,
                           n - c > CHUNK ? xr + c + CHUNK : xr + row_stride,
                           wr ? wr + c : NULL);
            csm_lse_merge(&acc, &part, scale);
        }
        states[r] = acc;
    }
    /* second sweep: rows whose LSE cancels are redone in float64 lanes --
     * for the LSE itself only: the write passes that follow lse_rows_pw
     * (softmax, log_softmax, cross-entropy) use log_sum, which adds
     * magnitudes of one sign (y = -(|s (x - max)| + log_sum), loss =
     * log_sum + |s (x_t - max)|) and keeps the terms' relative accuracy */
    if (!for_lse) return;
    for (ptrdiff_t r = 0; r < n_rows; ++r)
        if (lse_cancels_(states + r, scale))
            lse_redo_row_f32_(x + r * row_stride, NULL, n, scale, states + r);
}

void SUFFIX(csm_lse_rows_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t row_stride, double scale,
                              csm_lse_state *states)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, NULL, 0, 1);
}

void SUFFIX(csm_lse_rows_pw_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t row_stride, double scale,
                                 csm_lse_state *states, const float *w,
                                 ptrdiff_t w_row_stride)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, w, w_row_stride, 0);
}

/* Softmax write, float32 lanes: y = exp(s x - c), c = s max + log_sum, by
 * the reduction of s x above with c = n_c ln2 + r_c reduced in float64:
 *     y = 2^(n - n_c) p(r) exp(-r_c),
 * exp(-r_c) applied as K_hi + K_lo (p K is rounded once, by an FMA), then
 * 2^(n - n_c + XR_BIAS) by the exponent add and the exact (or, for a
 * denormal y, correctly rounding) product with 2^-XR_BIAS.  A factor
 * alpha > 0 (cross-entropy gradients) is folded into c as - log(alpha), so
 * alpha * exp(d) is rounded once.  Lanes equal to the max get the
 * float64 alpha exp(-log_sum) (a dominant max gives exactly 1).  Error: r
 * (<= 2^-25 abs.) + p (~0.55 ULP) + the final rounding (0.5 ULP). */
static inline __attribute__((always_inline)) void
softmax_row_f32_xr_(const float *x, ptrdiff_t n, double scale, double c,
                    float L, float m, float ym, float *y, const int S1)
{
    const V mf = v_set1(m), ymv = v_set1(ym);
    xr_row_ rc;
    xr_row_init_(&rc, scale, c);
    double k = 0x1p96 * rc.factor;   /* exp(-r_c) */
    const V kh = v_set1((float)k);
    const V kl = v_set1((float)(k - (double)(float)k));
    const V Lv = v_set1(L), down = v_set1(0x1p-96f);
#define XR_SM(a, out)                                                          \
    do {                                                                       \
        V a_ = (a);                                                            \
        V t_, p_ = xr_poly_(v_max(a_, Lv), &rc, &t_, S1);                      \
        p_ = v_fmadd(p_, kh, v_mul(p_, kl));                                   \
        out = v_select(v_cmpeq(a_, mf), v_mul(xr_scale_(p_, t_), down), ymv);  \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 2 * VLEN <= n; i += 2 * VLEN) {
        V a, b;
        XR_SM(v_load(x + i), a);
        XR_SM(v_load(x + i + VLEN), b);
        v_store(y + i, a);
        v_store(y + i + VLEN, b);
    }
    for (; i < n; i += VLEN) {
        VT t = v_tail(n - i);
        V a;
        XR_SM(v_loadz_tail(x + i, t), a);
        v_store_tail(y + i, t, a);
    }
#undef XR_SM
}

void SUFFIX(csm_softmax_rows_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SM_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        float L;
        /* alpha > 0 joins the exponent: c - log(alpha).  The exponent add
         * needs -221 <= n - n_c + ... <= 127 - 96 - 1: log_sum - log(alpha)
         * <= 32 (clamp e^-120) and log(alpha) <= 18. */
        double la = alpha == 1.0 ? 0.0 : log(alpha);
        if (!(alpha > 0.0 && la <= 18.0 && log_sum[r] - la <= 32.0) ||
            !clamp_bound_(max[r], scale, XR_SM_SPAN, span_s, &L)) {
            csm_softmax_rows_f32_generic_avx2(xr, 1, n, 0, scale, max + r,
                                              log_sum + r, alpha, yr, 0);
            continue;
        }
        double c = scale * max[r] + log_sum[r] - la;
        /* the max itself: alpha exp(-log_sum), rounded once (so a dominant
         * max gives exactly alpha, e.g. 1.0) */
        float m = (float)max[r], ym = (float)(alpha * exp(-log_sum[r]));
        if (scale == 1.0) softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 1);
        else softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 0);
    }
}

/* y = scale * (x - max) - log_sum in float64 lanes: x - max is exact in
 * float64, so the element(s) equal to the max give exactly -log_sum.
 * + 0.0 after the rounding to float32: a log_sum below 2^-150 -- in a row
 * whose other elements are all -inf, the clamp terms (e^-90..-150) that
 * the float32 reductions add for the max and for every -inf element, and
 * which are invisible anywhere else -- would give the max -0.0 where the
 * exact result is 0; so every zero these writes store is +0.0, as x - x,
 * scipy and torch give (the scale-1 writes, logsm_c3_f32_, round log_sum
 * to float32 first and give +0.0 already). */
static inline V logsm_f32_(V a, VD sv, VD mv, VD lv)
{
    VD lo = v_lo_pd(a), hi = v_hi_pd(a);
    lo = vd_fmsub(vd_sub(lo, mv), sv, lv);
    hi = vd_fmsub(vd_sub(hi, mv), sv, lv);
    return v_add(v_from_pd(lo, hi), v_zero());
}

static void log_softmax_row_f32_c3_(const float *xr, ptrdiff_t n, double m,
                                    double ls, float *yr)
{
    /* m + ls in double would lose a log_sum below ulp(m) / 2 (a dominant
     * max, where y = -log_sum): split as c1 + (m - c1 + ls), m - c1 being
     * exact in double for float32 m and c1 unless |m| << ls */
    const float f1 = (float)(m + ls);
    const double r = (m - (double)f1) + ls;
    const float f2 = (float)r, f3 = (float)(r - (double)f2);
    const V c1 = v_set1(f1), c2 = v_set1(f2), c3 = v_set1(f3);
    ptrdiff_t i = 0;
    for (; i + 4 * VLEN <= n; i += 4 * VLEN) {
        V a = logsm_c3_f32_(v_load(xr + i), c1, c2, c3);
        V b = logsm_c3_f32_(v_load(xr + i + VLEN), c1, c2, c3);
        V d = logsm_c3_f32_(v_load(xr + i + 2 * VLEN), c1, c2, c3);
        V e = logsm_c3_f32_(v_load(xr + i + 3 * VLEN), c1, c2, c3);
        v_store(yr + i, a);
        v_store(yr + i + VLEN, b);
        v_store(yr + i + 2 * VLEN, d);
        v_store(yr + i + 3 * VLEN, e);
    }
    for (; i < n; i += VLEN) {
        VT t = v_tail(n - i);
        v_store_tail(yr + i, t, logsm_c3_f32_(v_loadz_tail(xr + i, t), c1, c2, c3));
    }
}

void SUFFIX(csm_log_softmax_rows_f32)(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const VD sv = vd_set1(scale);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {
            csm_log_softmax_rows_f32_generic_avx2(xr, 1, n, 0, scale, max + r,
                                                  log_sum + r, alpha, yr, 0);
            continue;
        }
        if (scale == 1.0 && log_sum[r] < INFINITY) {
            log_softmax_row_f32_c3_(xr, n, max[r], log_sum[r], yr);
            continue;
        }
        const VD mv = vd_set1(max[r]), lv = vd_set1(log_sum[r]);
        ptrdiff_t i = 0;
        for (; i + 2 * VLEN <= n; i += 2 * VLEN) {
            V a = logsm_f32_(v_load(xr + i), sv, mv, lv);
            V b = logsm_f32_(v_load(xr + i + VLEN), sv, mv, lv);
            v_store(yr + i, a);
            v_store(yr + i + VLEN, b);
        }
        for (; i < n; i += VLEN) {
            VT t = v_tail(n - i);
            v_store_tail(yr + i, t, logsm_f32_(v_loadz_tail(xr + i, t), sv, mv, lv));
        }
    }
}
