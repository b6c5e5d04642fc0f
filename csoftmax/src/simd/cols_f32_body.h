/*
 * simd/cols_f32_body.h -- float32 columns (the non-last-axis case):
 * reduction and softmax write, and the cross-entropy store / rescale.
 * Written once against the lane abstraction and compiled per ISA by
 * src/avx2/cols_f32.c and src/avx512/cols_f32.c (groups of G = 1 or 2
 * vectors of VLEN columns; see simd/cols_f32.h).
 * (internal; included once, by those files, after common.h)
 */
#include "cols_f32.h"

/* G * VLEN columns starting at x: max pass, then (if every lane is in
 * range) the clamped sum pass.  Returns 0 if another kernel must redo the
 * group. */
static inline __attribute__((always_inline)) int
lse_cols_group_f32_(const float *x, ptrdiff_t n, ptrdiff_t rs, double scale,
                    double span_s, csm_lse_state *states, float *e,
                    ptrdiff_t es, const int G, const int S1)
{
    const V neg1 = v_set1(-1.0f), ninf = v_set1(-INFINITY);
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
    /* the all-float32 reduction of the rows, with per-lane constants */
    xr_row_ xc[2];
    VD f[4];
    for (int g = 0; g < G; ++g)
        xr_lanes_init_(&xc[g], scale, mx[2 * g], mx[2 * g + 1], &f[2 * g],
                       &f[2 * g + 1], 0);
    VD r[4] = { vd_zero(), vd_zero(), vd_zero(), vd_zero() };
    VI cnt[2] = { vi_zero(), vi_zero() };
/* e (not NULL): the terms are kept there, as csm_lse_store_rows_f32 does
 * (sentinel -1 where x == max), at row i + k, column offset g * VLEN */
#define XRC_STEP(a, g, t, k)                                                   \
    do {                                                                       \
        VM eq_ = v_cmpeq(a, mm[g]);                                            \
        cnt[g] = vi_count(cnt[g], eq_);                                        \
        t = xr_exp_(v_select(eq_, v_max(a, L[g]), L[g]), &xc[g], S1);          \
        if (e) v_store(e + (i + (k)) * es + (g) * VLEN, v_select(eq_, t, neg1)); \
    } while (0)
#define XRC_ADD(s, g)                                                          \
    do {                                                                       \
        r[2 * (g)] = vd_add(r[2 * (g)], v_lo_pd(s));                           \
        r[2 * (g) + 1] = vd_add(r[2 * (g) + 1], v_hi_pd(s));                   \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {   /* 4 rows summed in float32, as the rows */
        const float *xi = x + i * rs;
        for (int g = 0; g < G; ++g) {
            const float *xg = xi + g * VLEN;
            V e0, e1, e2, e3;
            XRC_STEP(v_load(xg), g, e0, 0);
            XRC_STEP(v_load(xg + rs), g, e1, 1);
            XRC_STEP(v_load(xg + 2 * rs), g, e2, 2);
            XRC_STEP(v_load(xg + 3 * rs), g, e3, 3);
            V s = v_add(v_add(e0, e1), v_add(e2, e3));
            XRC_ADD(s, g);
        }
    }
    for (; i < n; ++i) {
        const float *xi = x + i * rs;
        for (int g = 0; g < G; ++g) {
            V t;
            XRC_STEP(v_load(xi + g * VLEN), g, t, 0);
            XRC_ADD(t, g);
        }
    }
#undef XRC_STEP
#undef XRC_ADD
    unsigned redo = 0;
    for (int g = 0; g < G; ++g) {
        for (int h = 0; h < 2; ++h) {
            const int k = 2 * g + h;
            VD c = h ? vi_hi_pd(cnt[g]) : vi_lo_pd(cnt[g]);
            r[k] = vd_mul(r[k], f[k]);
            store_states_vd_(states + k * VDLEN, mx[k], c, r[k]);
            redo |= (unsigned)lse_cancels_vd_(mx[k], c, r[k], sv) << (k * VDLEN);
        }
    }
    /* LSE close to 0: the flagged lanes' count and rest again in float64
     * lanes with exp_f64_ (lse_redo_row_f32_ for columns) */
    for (int k = 0; redo && k < 2 * G; ++k) {
        const unsigned bits = (redo >> (k * VDLEN)) & ((1u << VDLEN) - 1);
        if (!bits) continue;
        VD c = vd_zero();
        vd_bsum_ rr = vd_bsum_zero_();
        for (ptrdiff_t i = 0; i < n; ++i) {
            const V a = v_load(x + i * rs + (k >> 1) * VLEN);
            count_rest_step_((k & 1) ? v_hi_pd(a) : v_lo_pd(a), mx[k], sv, &c, &rr.s);
            vd_bsum_next_(&rr, i);
        }
        double cc[VDLEN], rv[VDLEN];
        vd_storeu(cc, c);
        vd_storeu(rv, vd_bsum_total_(&rr));
        for (int l = 0; l < VDLEN; ++l)
            if (bits >> l & 1) {
                states[k * VDLEN + l].count = cc[l];
                states[k * VDLEN + l].rest = rv[l];
            }
    }
    return 1;
}

/* e != NULL: keep the terms of every group that takes the fast path in e
 * (groups as below: 2 VLEN columns, then VLEN, the rest COLS_REST; a group
 * is fast iff it has no NaN and every lane a representable clamp, which
 * the rescale kernel repeats from the max values alone) */
static void lse_cols_f32_(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                          ptrdiff_t row_stride, double scale,
                          csm_lse_state *states, float *e, ptrdiff_t es)
{
    const double span_s = XR_SPAN / scale;
    ptrdiff_t j = 0;
    for (; j + 2 * VLEN <= n_cols; j += 2 * VLEN) {
        float *ej = e ? e + j : NULL;
        int ok = scale == 1.0
            ? lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 2, 1)
            : lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 2, 0);
        if (!ok)
            csm_lse_cols_f32_generic_avx2(x + j, 2 * VLEN, n, row_stride, scale, states + j);
    }
    for (; j + VLEN <= n_cols; j += VLEN) {
        float *ej = e ? e + j : NULL;
        int ok = scale == 1.0
            ? lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 1, 1)
            : lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 1, 0);
        if (!ok)
            csm_lse_cols_f32_generic_avx2(x + j, VLEN, n, row_stride, scale, states + j);
    }
    if (j < n_cols) {
        if (e) COLS_REST_STORE(x + j, n_cols - j, n, row_stride, scale,
                               states + j, e + j, es);
        else COLS_REST_LSE(x + j, n_cols - j, n, row_stride, scale, states + j);
    }
}

void SUFFIX(csm_lse_cols_f32)(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                              ptrdiff_t row_stride, double scale,
                              csm_lse_state *states)
{
    lse_cols_f32_(x, n_cols, n, row_stride, scale, states, NULL, 0);
}

/* Column counterparts of csm_lse_store_rows_f32 / csm_softmax_scale_rows_f32
 * (the cross-entropy gradient along a non-last axis, from its tiles): the
 * store kernel keeps the terms of the fast groups in e; the rescale kernel
 * repeats the per-group decision from the max values (a NaN max fails the
 * clamp test) and writes from x the groups not stored or with a lane whose
 * factor f = alpha exp(-log_sum) 2^96 factor is outside [2^-92, 2^13] or
 * NaN.  y may be e, not x. */
void SUFFIX(csm_lse_store_cols_f32)(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t row_stride, double scale, csm_lse_state *states, float *e,
        ptrdiff_t e_row_stride)
{
    lse_cols_f32_(x, n_cols, n, row_stride, scale, states, e, e_row_stride);
}

void SUFFIX(csm_softmax_scale_cols_f32)(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    const VD sv = vd_set1(scale), av = vd_set1(alpha), up = vd_set1(0x1p96);
    const VD fmin = vd_set1(0x1p-92), fmax = vd_set1(0x1p13);
    const V down = v_set1(0x1p-96f);
    ptrdiff_t j = 0;
    while (j + VLEN <= n_cols) {
        const int G = j + 2 * VLEN <= n_cols ? 2 : 1;
        V fh[2], fl[2], ym[2];
        int ok = 1;
        for (int g = 0; g < G && ok; ++g) {
            const double *mp = max + j + VLEN * g, *lp = log_sum + j + VLEN * g;
            VD ml = vd_loadu(mp), mh = vd_loadu(mp + VDLEN);
            V L;
            if (!clamp_bound_v_(ml, mh, sv, XR_SPAN, span_s, &L)) { ok = 0; break; }
            xr_row_ xc;
            VD fac[2], fv[2], gv[2];
            xr_lanes_init_(&xc, scale, ml, mh, &fac[0], &fac[1], 0);
            for (int k = 0; k < 2; ++k) {
                VD ls = vd_loadu(lp + VDLEN * k);
                gv[k] = vd_mul(av, exp_f64_(vd_sub(vd_zero(), ls)));
                fv[k] = vd_mul(gv[k], vd_mul(up, fac[k]));
                VD af = vd_abs(fv[k]);
                if (!vdm_all(vdm_and(vd_cmp(af, fmin, _CMP_GE_OQ),
                                     vd_cmp(af, fmax, _CMP_LE_OQ)))) { ok = 0; break; }
            }
            if (!ok) break;
            fh[g] = v_from_pd(fv[0], fv[1]);
            fl[g] = v_from_pd(vd_sub(fv[0], v_lo_pd(fh[g])), vd_sub(fv[1], v_hi_pd(fh[g])));
            ym[g] = v_from_pd(gv[0], gv[1]);
        }
        if (!ok) {
            SUFFIX(csm_softmax_cols_f32)(x + j, VLEN * G, n, x_row_stride, scale,
                                         max + j, log_sum + j, alpha, y + j,
                                         y_row_stride);
        } else {
            for (ptrdiff_t i = 0; i < n; ++i) {
                float *yi = y + i * y_row_stride + j;
                for (int g = 0; g < G; ++g) {
                    V e = v_load(yi + VLEN * g);
                    V v = v_fmadd(e, fh[g], v_mul(e, fl[g]));
                    v_store(yi + VLEN * g,
                            v_select(v_signmask(e), v_mul(v, down), ym[g]));
                }
            }
        }
        j += VLEN * G;
    }
    if (j < n_cols)
        COLS_REST_SCALE(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
}

/* Softmax write: alpha is folded into the per-column constant,
 * y = exp(scale*x - (scale*max + log_sum - log alpha)) (one rounding), with
 * the sign of a negative alpha applied after; |log alpha| <= 39 (alpha in
 * [2^-56, 2^56]) keeps the results inside the exponent range
 * softmax_v_f32_ handles and the clamped elements invisible. */
static inline int softmax_cols_prep_(const double *max, const double *log_sum,
                                     VD sv, double la, double span_s,
                                     VD *cvl, VD *cvh, V *L)
{
    VD ml = vd_loadu(max), mh = vd_loadu(max + VDLEN);
    if (!clamp_bound_v_(ml, mh, sv, F32_SM_SPAN, span_s, L)) return 0;
    const VD lav = vd_set1(la);
    VD ll = vd_loadu(log_sum), lh = vd_loadu(log_sum + VDLEN);
    *cvl = vd_sub(vd_fmadd(sv, ml, ll), lav);
    *cvh = vd_sub(vd_fmadd(sv, mh, lh), lav);
    /* log_sum must be finite and >= 0 (it is log(count + rest) >= 0) */
    const VD inf = vd_set1(INFINITY), minf = vd_set1(-INFINITY);
    VDM okl = vdm_and(vd_cmp(ll, inf, _CMP_LT_OQ), vd_cmp(ll, minf, _CMP_GT_OQ));
    VDM okh = vdm_and(vd_cmp(lh, inf, _CMP_LT_OQ), vd_cmp(lh, minf, _CMP_GT_OQ));
    return vdm_all(vdm_and(okl, okh));
}

void SUFFIX(csm_softmax_cols_f32)(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = F32_SM_SPAN / scale;
    const VD sv = vd_set1(scale);
    const double aa = fabs(alpha);
    const int fast_alpha = aa >= 0x1p-56 && aa <= 0x1p56;
    const double la = alpha == 1.0 ? 0.0 : (fast_alpha ? log(aa) : 0.0);
    const V sgn = v_set1(alpha < 0 ? -0.0f : 0.0f);
    ptrdiff_t j = 0;
    for (; j + VLEN <= n_cols; ) {
        VD cv0, cv1, cv2, cv3;
        V L0, L1;
        int two = j + 2 * VLEN <= n_cols;
        if (!fast_alpha ||
            !softmax_cols_prep_(max + j, log_sum + j, sv, la, span_s, &cv0, &cv1, &L0)) {
            csm_softmax_cols_f32_generic_avx2(x + j, VLEN, n, x_row_stride, scale,
                max + j, log_sum + j, alpha, y + j, y_row_stride);
            j += VLEN;
            continue;
        }
        if (two && softmax_cols_prep_(max + j + VLEN, log_sum + j + VLEN, sv, la,
                                      span_s, &cv2, &cv3, &L1)) {
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                float *yi = y + i * y_row_stride + j;
                COLS_PF(xi + 2 * VLEN, 2 * VLEN);
                V a = v_max(v_load(xi), L0);
                V b = v_max(v_load(xi + VLEN), L1);
                a = v_xor(softmax_v_f32_(a, sv, cv0, cv1), sgn);
                b = v_xor(softmax_v_f32_(b, sv, cv2, cv3), sgn);
                v_store(yi, a);
                v_store(yi + VLEN, b);
            }
            j += 2 * VLEN;
        } else {
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                V a = v_max(v_load(xi), L0);
                v_store(y + i * y_row_stride + j,
                        v_xor(softmax_v_f32_(a, sv, cv0, cv1), sgn));
            }
            j += VLEN;
        }
    }
    if (j < n_cols)
        COLS_REST_SOFTMAX(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
}
