/*
 * simd/fused_rows_f32_body.h -- float32 rows with one exp per element (the
 * algorithm of xr_f32.h, "fused float32 softmax rows"): the fused softmax
 * and the cross-entropy store / rescale kernels.  Written once against the
 * lane abstraction, compiled per ISA by src/avx2/fused_rows_f32.c and
 * src/avx512/fused_rows_f32.c.
 * (internal; included once, by those files, after common.h)
 */

/* xr_store_row_acc_f32_ (xr_f32.h, pass 2 of a clean row) summed: returns
 * S' = the sum of the terms other than the max's (the rest is S' factor),
 * the count into *count_out */
static inline __attribute__((always_inline)) double
xr_store_row_rc_f32_(const float *x, ptrdiff_t n, double m, float L,
                     float *y, const float *pf, const xr_row_ *rcp,
                     double *count_out, const int S1)
{
    VD acc;
    VI cnt;
    xr_store_row_acc_f32_(x, n, m, L, y, pf, rcp, &acc, &cnt, S1, 0);
    *count_out = (double)vi_hsum(cnt);
    return vd_hsum(acc);
}

/* the same with the row constants computed here (into *rcp) */
static inline __attribute__((always_inline)) double
xr_store_row_f32_(const float *x, ptrdiff_t n, double scale, double m,
                  float L, float *y, const float *pf, xr_row_ *rcp,
                  double *count_out, const int S1)
{
    xr_row_init_(rcp, scale, scale * m);
    return xr_store_row_rc_f32_(x, n, m, L, y, pf, rcp, count_out, S1);
}

/* Pass 3: y_i = (e'_i f) 2^-XR_BIAS, sentinel (negative) lanes ym.  f in
 * [2^-92, 2^13]: f_lo is a normal float32, e' f_hi is finite.  OVL
 * (n >= VLEN): the tail as the row's last VLEN elements, loaded first (see
 * xr_store_row_acc_f32_), the lanes the loop did stored again with the same
 * value. */
static inline __attribute__((always_inline)) void
xr_scale_row_f32_(float *y, ptrdiff_t n, double f, float ym, const int OVL)
{
    float fhf = (float)f;
    const V fh = v_set1(fhf), fl = v_set1((float)(f - (double)fhf));
    const V ymv = v_set1(ym), down = v_set1(0x1p-96f);
    const ptrdiff_t full = OVL ? (n - 1) / VLEN * VLEN : n;
    const V at = OVL ? v_load(y + n - VLEN) : v_zero();
#define FU_SCALE(e_)                                                           \
    v_select(v_signmask(e_), v_mul(v_fmadd(e_, fh, v_mul(e_, fl)), down), ymv)
    ptrdiff_t i = 0;
    for (; i + 2 * VLEN <= full; i += 2 * VLEN) {
        V a = v_load(y + i), b = v_load(y + i + VLEN);
        v_store(y + i, FU_SCALE(a));
        v_store(y + i + VLEN, FU_SCALE(b));
    }
    if (OVL) {
        for (; i < full; i += VLEN) {
            V a = v_load(y + i);
            v_store(y + i, FU_SCALE(a));
        }
        v_store(y + n - VLEN, FU_SCALE(at));
    } else for (; i < n; i += VLEN) {
        VT t = v_tail(n - i);
        V a = v_loadz_tail(y + i, t);
        v_store_tail(y + i, t, FU_SCALE(a));
    }
#undef FU_SCALE
}

/* A row whose terms pass 2 may store: long enough for the vector loop,
 * finite max with a representable clamp (span_s = XR_SPAN / scale).  The
 * fused softmax and the cross-entropy store / rescale kernels decide with
 * this one test, so the store and rescale kernels always agree. */
static inline int store_clean_(double m, double scale, double span_s,
                               ptrdiff_t n, float *L)
{
    return n >= 32 && n <= ((ptrdiff_t)1 << 30) &&
           clamp_bound_(m, scale, XR_SPAN, span_s, L);
}

/* ---- short rows a group at a time (xr_f32.h "rows a group at a time"):
 * pass 2 stores the terms, S = count + rest, f = alpha 2^96 factor / S and
 * alpha / S come in lanes, then each row's pass 3.  Pass 2 prefetches the
 * row FG_ROWS ahead (the next group's). */
static inline __attribute__((always_inline)) void
softmax_fused_group_f32_(const float *x, ptrdiff_t g, ptrdiff_t n, ptrdiff_t xs,
                         double scale, double alpha, float *y, ptrdiff_t ys,
                         const int S1)
{
    xr_group_ G;
    double cn[FG_ROWS], sm[FG_ROWS], fv[FG_ROWS], ymv[FG_ROWS];
    xr_group_sums_(&G, x, g, n, xs, scale, y, ys, NULL, 0, cn, sm, S1, 1);
    {
        const VD a = vd_set1(alpha), a96 = vd_set1(alpha * 0x1p96);
        for (int k = 0; k < FG_ROWS; k += VDLEN) {
            const VD S = vd_fmadd(vd_loadu(sm + k), vd_loadu(G.fac + k),
                                  vd_loadu(cn + k));
            vd_storeu(fv + k, vd_div(vd_mul(a96, vd_loadu(G.fac + k)), S));
            vd_storeu(ymv + k, vd_div(a, S));
        }
    }
    for (ptrdiff_t r = 0; r < g; ++r) {
        if (G.ok >> r & 1) {
            if (n >= VLEN)
                xr_scale_row_f32_(y + r * ys, n, fv[r], (float)ymv[r], 1);
            else
                xr_scale_row_f32_(y + r * ys, n, fv[r], (float)ymv[r], 0);
            continue;
        }
        const float *xr = x + r * xs;
        float *yr = y + r * ys;
        csm_lse_state st;
        double m, ls;
        SUFFIX(csm_lse_rows_f32)(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &m, &ls);
        SUFFIX(csm_softmax_rows_f32)(xr, 1, n, n, scale, &m, &ls, alpha, yr, n);
    }
}

void SUFFIX(csm_softmax_fused_rows_f32)(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    const int ok_a = alpha >= FUSED_ALPHA_MIN && alpha <= FUSED_ALPHA_MAX;
    if (ok_a && n <= FG_MAX_N) {
        for (ptrdiff_t r = 0; r < n_rows; r += FG_ROWS) {
            const ptrdiff_t g = n_rows - r < FG_ROWS ? n_rows - r : FG_ROWS;
            if (scale == 1.0)
                softmax_fused_group_f32_(x + r * x_row_stride, g, n, x_row_stride,
                                         scale, alpha, y + r * y_row_stride,
                                         y_row_stride, 1);
            else
                softmax_fused_group_f32_(x + r * x_row_stride, g, n, x_row_stride,
                                         scale, alpha, y + r * y_row_stride,
                                         y_row_stride, 0);
        }
        return;
    }
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        float L;
        double m = ok_a ? row_max_f32_(xr, n) : NAN;
        if (ok_a && store_clean_(m, scale, span_s, n, &L)) {
            /* keep the memory busy during the in-cache passes: the
             * reduction prefetches the same offsets of the next row (a
             * hint: past the end of x it cannot fault) */
            const float *pf = xr + x_row_stride;
            xr_row_ rc;
            double count, sum = scale == 1.0
                ? xr_store_row_f32_(xr, n, scale, m, L, yr, pf, &rc, &count, 1)
                : xr_store_row_f32_(xr, n, scale, m, L, yr, pf, &rc, &count, 0);
            double S = count + sum * rc.factor;
            xr_scale_row_f32_(yr, n, alpha * (0x1p96 * rc.factor) / S,
                              (float)(alpha / S), 0);
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        SUFFIX(csm_lse_rows_f32)(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        SUFFIX(csm_softmax_rows_f32)(xr, 1, n, n, scale, &mx, &ls, alpha, yr, n);
    }
}

/* ---- reduction that keeps its terms (cross-entropy gradient) -----------
 *
 * csm_lse_store_rows_f32: the states of csm_lse_rows_f32 (same numbers for
 * rows of up to CHUNK elements; longer rows are one chunk here) and, for
 * every clean row (the fused-softmax conditions that do not involve
 * alpha), the terms e'_i of pass 2 stored into e.  Rows that are not
 * clean leave their e row untouched.
 * csm_softmax_scale_rows_f32: the write pass of csm_softmax_rows_f32 for
 * such an e: y = alpha exp(scale (x - max) - log_sum) from the stored terms
 * when the row was stored and f = alpha 2^96 factor exp(-log_sum) is in
 * range, else from x (so x must not be e).  The per-row decision repeats
 * the store kernel's from max[r] alone, so the two always agree.
 * One exp per element instead of two; y may be the same memory as e. */

/* rows of 32 to FG_MAX_N a group at a time (xr_f32.h "rows a group at a
 * time", xr_group_sums_): the states and stored terms of the per-row loop
 * of csm_lse_store_rows_f32; a row is stored under the same test (the
 * clamp of xr_group_init_ is clamp_bound_ in lanes, and n >= 32), so
 * csm_softmax_scale_rows_f32 still agrees. */
static inline __attribute__((always_inline)) void
lse_store_group_f32_(const float *x, ptrdiff_t g, ptrdiff_t n, ptrdiff_t xs,
                     double scale, csm_lse_state *states, float *e,
                     ptrdiff_t es, const int S1)
{
    const int ok = xr_group_states_(x, g, n, xs, scale, states, e, es, NULL, 0, S1, 1);
    for (ptrdiff_t r = 0; r < g; ++r)
        if (!(ok >> r & 1))
            SUFFIX(csm_lse_rows_f32)(x + r * xs, 1, n, n, scale, states + r);
}

void SUFFIX(csm_lse_store_rows_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, csm_lse_state *states,
        float *e, ptrdiff_t e_row_stride)
{
    const double span_s = XR_SPAN / scale;
    if (n >= 32 && n <= FG_MAX_N) {
        for (ptrdiff_t r = 0; r < n_rows; r += FG_ROWS) {
            const ptrdiff_t g = n_rows - r < FG_ROWS ? n_rows - r : FG_ROWS;
            if (scale == 1.0)
                lse_store_group_f32_(x + r * x_row_stride, g, n, x_row_stride, scale,
                                     states + r, e + r * e_row_stride, e_row_stride, 1);
            else
                lse_store_group_f32_(x + r * x_row_stride, g, n, x_row_stride, scale,
                                     states + r, e + r * e_row_stride, e_row_stride, 0);
        }
        return;
    }
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        float L;
        double m = row_max_f32_(xr, n);
        if (!store_clean_(m, scale, span_s, n, &L)) {
            SUFFIX(csm_lse_rows_f32)(xr, 1, n, n, scale, states + r);
            continue;
        }
        xr_row_ rc;
        double count, sum = scale == 1.0
            ? xr_store_row_f32_(xr, n, scale, m, L, e + r * e_row_stride,
                                xr + x_row_stride, &rc, &count, 1)
            : xr_store_row_f32_(xr, n, scale, m, L, e + r * e_row_stride,
                                xr + x_row_stride, &rc, &count, 0);
        states[r].max = m;
        states[r].count = count;
        states[r].rest = sum * rc.factor;
        /* no LSE-cancellation redo (lse_cancels_): the cross-entropy that
         * reads these states uses log_sum, not s*max + log_sum (see
         * lse_rows_f32_) */
    }
}

/* rows of 32 to FG_MAX_N: the per-row factors of the loop below for a
 * group in float64 lanes (exp_f64acc_ for exp(-r_m), exp_f64_ for
 * exp(-log_sum), where the loop calls libm), then each row's pass 3 */
static inline __attribute__((always_inline)) void
softmax_scale_group_f32_(const float *x, ptrdiff_t g, ptrdiff_t n, ptrdiff_t xs,
                         double scale, const double *max, const double *log_sum,
                         double alpha, float *y, ptrdiff_t ys)
{
    xr_group_ G;
    double fv[FG_ROWS], gv[FG_ROWS], ls[FG_ROWS];
    int fine = 0;
    for (ptrdiff_t r = 0; r < g; ++r) G.mx[r] = max[r], ls[r] = log_sum[r];
    for (ptrdiff_t r = g; r < FG_ROWS; ++r) ls[r] = 0.0;
    xr_group_init_(&G, g, scale);
    {
        const VD a = vd_set1(alpha), lo = vd_set1(0x1p-92), hi = vd_set1(0x1p13);
        for (int k = 0; k < FG_ROWS; k += VDLEN) {
            const VD gg = vd_mul(a, exp_f64_(vd_sub(vd_zero(), vd_loadu(ls + k))));
            const VD f = vd_mul(gg, vd_mul(vd_set1(0x1p96), vd_loadu(G.fac + k)));
            const VD af = vd_abs(f);
            fine |= vdm_bits(vdm_and(vd_cmp(af, lo, _CMP_GE_OQ),
                                     vd_cmp(af, hi, _CMP_LE_OQ))) << k;
            vd_storeu(fv + k, f);
            vd_storeu(gv + k, gg);
        }
    }
    for (ptrdiff_t r = 0; r < g; ++r) {
        float *yr = y + r * ys;
        if ((G.ok & fine) >> r & 1)
            xr_scale_row_f32_(yr, n, fv[r], (float)gv[r], 1);
        else
            SUFFIX(csm_softmax_rows_f32)(x + r * xs, 1, n, 0, scale, max + r,
                                         log_sum + r, alpha, yr, 0);
    }
}

void SUFFIX(csm_softmax_scale_rows_f32)(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    if (n >= 32 && n <= FG_MAX_N) {
        for (ptrdiff_t r = 0; r < n_rows; r += FG_ROWS) {
            const ptrdiff_t g = n_rows - r < FG_ROWS ? n_rows - r : FG_ROWS;
            softmax_scale_group_f32_(x + r * x_row_stride, g, n, x_row_stride,
                                     scale, max + r, log_sum + r, alpha,
                                     y + r * y_row_stride, y_row_stride);
        }
        return;
    }
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        float *yr = y + r * y_row_stride;
        float L;
        if (store_clean_(max[r], scale, span_s, n, &L)) {
            xr_row_ rc;
            xr_row_init_(&rc, scale, scale * max[r]);
            double g = alpha * exp(-log_sum[r]);
            double f = g * (0x1p96 * rc.factor);
            if (fabs(f) >= 0x1p-92 && fabs(f) <= 0x1p13) {
                xr_scale_row_f32_(yr, n, f, (float)g, 0);
                continue;
            }
        }
        SUFFIX(csm_softmax_rows_f32)(x + r * x_row_stride, 1, n, 0, scale,
                                     max + r, log_sum + r, alpha, yr, 0);
    }
}
