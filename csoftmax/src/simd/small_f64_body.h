/*
 * simd/small_f64_body.h -- float64 short rows (n <= CSM_SMALL_MAX), VDLEN
 * rows per group (4 on AVX2, 8 on AVX-512): the reduction, fused softmax /
 * log_softmax, the softmax write with a given (max, log_sum) and alpha,
 * and the cross-entropy gradient.  One body, written against the float64
 * lanes of the lane abstraction (VD, VDM); the ISA's small.h gives the
 * tile in / out (small_in_f64_ / small_out_f64_: VDLEN x VDLEN
 * transposes, lanes are rows).  The float64 row kernels' steps: exact
 * compares, exp_f64_, log_sum from count + rest -- the same per lane on
 * both ISAs, so the AVX-512 kernels give the AVX2 bits.
 * (internal; included by the ISA's small_f64.c after its small.h)
 */

DEFINE_FUSED_SMALL_ROW(double, f64)
#define GW VDLEN                      /* rows per group */

/* Rows p[0..GW) (n doubles each) -> T[0..n) (lanes are rows), GW x GW
 * transposes (small_tr_f64_ of the ISA's small.h); whole tiles are stored
 * (columns past n hold zeros, never read as data), the last partial one
 * read by small_load_part_f64_.  With want_max, *mx gets the per-lane max
 * (-inf for n = 0) and *bad the NaN lanes. */
static inline __attribute__((always_inline)) void
small_in_f64_(const double *const *p, ptrdiff_t n, VD *T, VD *mx, VDM *bad,
              const int want_max)
{
    VD m = vd_set1(-INFINITY);
    VDM b = vdm_none();
    for (ptrdiff_t j = 0; j < n; j += GW) {
        VD r[GW];
        const ptrdiff_t cw = n - j < GW ? n - j : GW;
        for (int k = 0; k < GW; ++k)
            r[k] = cw == GW ? vd_loadu(p[k] + j) : small_load_part_f64_(p[k] + j, cw);
        small_tr_f64_(r);
        for (int i = 0; i < GW; ++i) T[j + i] = r[i];
        if (want_max)
            for (ptrdiff_t i = 0; i < cw; ++i) {
                m = vd_max(m, r[i]);
                b = vdm_or(b, vd_cmp(r[i], r[i], _CMP_UNORD_Q));
            }
    }
    if (want_max) { *mx = m; *bad = b; }
}

/* T[0..n) back to rows q[k] for the lanes k set in `store` (other rows are
 * not touched: they may still be the input of an in-place call). */
static inline void small_out_f64_(const VD *T, ptrdiff_t n, double *const *q,
                                  int store)
{
    for (ptrdiff_t j = 0; j < n; j += GW) {
        VD r[GW];
        for (int i = 0; i < GW; ++i) r[i] = T[j + i];
        small_tr_f64_(r);
        const ptrdiff_t cw = n - j < GW ? n - j : GW;
        for (int k = 0; k < GW; ++k)
            if (store >> k & 1) {
                if (cw == GW) vd_storeu(q[k] + j, r[k]);
                else small_store_part_f64_(q[k] + j, r[k], cw);
            }
    }
}

/* Reduction of one float64 group: log_sum per lane, returns the lanes with
 * a finite max and no NaN. */
static inline __attribute__((always_inline)) int
small_reduce_f64_(const VD *T, ptrdiff_t n, VD m, VDM bad, VD sv, VD *lp)
{
    const VD one = vd_set1(1.0);
    const int fin = vd_finite_bits_(m) & ~vdm_bits(bad);
    VD r = vd_zero(), c = r;
    if (fin)
        for (ptrdiff_t i = 0; i < n; ++i) count_rest_step_(T[i], m, sv, &c, &r);
    c = vd_blend(vdm_from_bits(fin), one, c);   /* keep the log finite */
    *lp = log_sum_vd_(c, r);
    return fin;
}

void SUFFIX(csm_lse_small_f64)(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t row_stride, double scale, int for_lse,
                               double *max, double *log_sum)
{
    VD T[SMALL_COLS];
    const VD sv = vd_set1(scale);
    (void)for_lse;
    for (ptrdiff_t g = 0; g < n_rows; g += GW) {
        const ptrdiff_t w = n_rows - g < GW ? n_rows - g : GW;
        const double *p[GW];
        for (int k = 0; k < GW; ++k) p[k] = x + (g + (k < w ? k : 0)) * row_stride;
        VD m, l;
        VDM bad;
        small_in_f64_(p, n, T, &m, &bad, 1);
        const int fin = small_reduce_f64_(T, n, m, bad, sv, &l);
        if (w == GW && fin == (1 << GW) - 1) {
            vd_storeu(max + g, m);
            vd_storeu(log_sum + g, l);
            continue;
        }
        double mx[GW], ls[GW];
        vd_storeu(mx, m);
        vd_storeu(ls, l);
        for (ptrdiff_t k = 0; k < w; ++k) {
            if (fin >> k & 1) { max[g + k] = mx[k]; log_sum[g + k] = ls[k]; }
            else small_lse_row_f64_(p[k], n, scale, max + g + k, log_sum + g + k);
        }
    }
}

/* Fused float64 softmax / log_softmax:
 *   softmax: e = exp(scale * (x - max)) once per element (exp_f64_),
 *            y = e * (1 / (count + rest)), the terms equal to max counted;
 *   log_softmax: y = scale * (x - max) - log_sum. */
static inline __attribute__((always_inline)) void
small_fused_f64_(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                 ptrdiff_t x_row_stride, double scale, double *y,
                 ptrdiff_t y_row_stride, const int LOG)
{
    VD T[SMALL_COLS];
    const VD sv = vd_set1(scale), one = vd_set1(1.0);
    for (ptrdiff_t g = 0; g < n_rows; g += GW) {
        const ptrdiff_t w = n_rows - g < GW ? n_rows - g : GW;
        const double *p[GW];
        double *q[GW];
        for (int k = 0; k < GW; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
        }
        VD m, l;
        VDM bad;
        int fin;
        small_in_f64_(p, n, T, &m, &bad, 1);
        if (LOG) {
            fin = small_reduce_f64_(T, n, m, bad, sv, &l);
            if (fin)
                for (ptrdiff_t i = 0; i < n; ++i)
                    T[i] = vd_fmsub(vd_sub(T[i], m), sv, l);
        } else {
            fin = vd_finite_bits_(m) & ~vdm_bits(bad);
            if (fin) {
                /* the terms equal to the max (exactly 1) counted apart: small
                 * terms added onto the 1 would each round it the same way
                 * (n u, measured 63 ULP at n = 64) */
                VD r = vd_zero(), c = r;
                for (ptrdiff_t i = 0; i < n; ++i) {
                    const VDM eq = vd_cmp(T[i], m, _CMP_EQ_OQ);
                    T[i] = exp_f64_(vd_mul(vd_sub(T[i], m), sv));
                    r = vd_add(r, vd_unless(eq, T[i]));
                    c = vd_add(c, vd_when(eq, one));
                }
                const VD inv = vd_div(one, vd_add(c, r));
                for (ptrdiff_t i = 0; i < n; ++i) T[i] = vd_mul(T[i], inv);
            }
        }
        const int store = fin & ((1 << w) - 1);
        if (store) small_out_f64_(T, n, q, store);
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1)) fused_small_row_f64_(p[k], q[k], n, scale, LOG);
    }
}

void SUFFIX(csm_softmax_small_f64)(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t x_row_stride, double scale, double *y,
                                   ptrdiff_t y_row_stride)
{
    small_fused_f64_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 0);
}

void SUFFIX(csm_log_softmax_small_f64)(const double *x, ptrdiff_t n_rows,
                                       ptrdiff_t n, ptrdiff_t x_row_stride,
                                       double scale, double *y,
                                       ptrdiff_t y_row_stride)
{
    small_fused_f64_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 1);
}

/* Softmax write of float64 rows with a given (max, log_sum) and alpha (the
 * float64 row kernel's step). */
void SUFFIX(csm_softmax_write_small_f64)(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    VD T[SMALL_COLS];
    const VD sv = vd_set1(scale), av = vd_set1(alpha);
    for (ptrdiff_t g = 0; g < n_rows; g += GW) {
        const ptrdiff_t w = n_rows - g < GW ? n_rows - g : GW;
        const double *p[GW];
        double *q[GW];
        double mx[GW], ls[GW];
        for (int k = 0; k < GW; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            mx[k] = max[r];
            ls[k] = log_sum[r];
        }
        const VD m = vd_loadu(mx), l = vd_loadu(ls);
        const int fin = vd_finite_bits_(m);
        const int store = fin & ((1 << w) - 1);
        if (store) {
            small_in_f64_(p, n, T, NULL, NULL, 0);
            for (ptrdiff_t i = 0; i < n; ++i)
                T[i] = vd_mul(av, exp_f64_(vd_fmsub(vd_sub(T[i], m), sv, l)));
            small_out_f64_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                csm_softmax_rows_f64_scalar(p[k], 1, n, 0, scale, mx + k, ls + k,
                                            alpha, q[k], 0);
    }
}

DEFINE_CE_SMALL_ROW(double, f64)

/* csm_ce_small_f32 for float64: GW rows per group, the float64 short-row
 * steps (exact compares, exp_f64_ once per element, kept in the tile;
 * log_sum from count + rest), each row scaled by a[r] / sum and the target
 * entry a[r] * expm1(lp).  No clamp, so any finite a. */
void SUFFIX(csm_ce_small_f64)(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t x_row_stride, double scale,
                              const double *a, const int *t, double *lp,
                              double *y, ptrdiff_t y_row_stride)
{
    VD T[SMALL_COLS];
    const VD sv = vd_set1(scale), one = vd_set1(1.0);
    double *Td = (double *)T;
    for (ptrdiff_t g = 0; g < n_rows; g += GW) {
        const ptrdiff_t w = n_rows - g < GW ? n_rows - g : GW;
        const double *p[GW];
        double *q[GW];
        double av[GW];
        int tk[GW];
        for (int k = 0; k < GW; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            av[k] = a[r];
            tk[k] = t != NULL ? t[r] : -1;
        }
        VD m;
        VDM bad;
        small_in_f64_(p, n, T, &m, &bad, 1);
        const int fin = vd_finite_bits_(m) & ~vdm_bits(bad);
        const int store = fin & ((1 << w) - 1);
        if (store) {
            VD r = vd_zero(), c = r;
            double xt[GW];
            int tmask = 0;
            for (int k = 0; k < GW; ++k) {
                xt[k] = 0.0;
                if (tk[k] >= 0 && (store >> k & 1)) {
                    xt[k] = Td[tk[k] * GW + k];
                    tmask |= 1 << k;
                }
            }
            for (ptrdiff_t i = 0; i < n; ++i) {
                const VDM e = vd_cmp(T[i], m, _CMP_EQ_OQ);
                const VD v = exp_f64_(vd_mul(vd_sub(T[i], m), sv));
                T[i] = v;
                r = vd_add(r, vd_unless(e, v));
                c = vd_add(c, vd_when(e, one));
            }
            c = vd_blend(vdm_from_bits(fin), one, c);   /* keep the log finite */
            const VD ag = vd_loadu(av);
            const VD f = vd_div(ag, vd_add(c, r));
            for (ptrdiff_t i = 0; i < n; ++i) T[i] = vd_mul(T[i], f);
            if (tmask) {
                const VD l = log_sum_vd_(c, r);
                const VD tv = ce_lp_vd_(vd_loadu(xt), m, sv, l);
                double lv[GW], gv[GW];
                vd_storeu(lv, tv);
                vd_storeu(gv, vd_mul(ag, expm1_le0_(tv)));
                for (int k = 0; k < GW; ++k)
                    if (tmask >> k & 1) {
                        Td[tk[k] * GW + k] = gv[k];
                        lp[g + k] = lv[k];
                    }
            }
            small_out_f64_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                ce_small_row_f64_(p[k], q[k], n, scale, av[k], tk[k], lp + g + k);
    }
}


/* ---- backward (VJP) of softmax / log_softmax ----------------------------
 * Contiguous rows as the row kernels (simd/backward_body.h) take them, GW
 * rows a group in the lanes, with those kernels' arithmetic per lane: s =
 * sum y_i dy_i (softmax) or sum dy_i (log_softmax) in element order (two
 * accumulators, against the row kernels' four and a horizontal sum: the
 * same results to the backward contract, not bit for bit), then y (dy - s)
 * or dy - exp(y) s (lsb_f64_).  log_softmax: lanes holding y > 0 or a NaN
 * are not stored and are redone by the scalar row kernel, as the row
 * kernels do such a row.  o may be y or dy: a group is read whole first. */
#ifndef CSM_BWD_SMALL_F64_FROM_AVX2     /* see avx512/small_f64.c */
static inline __attribute__((always_inline)) void
small_bwd_f64_(const double *y, const double *dy, double *o, ptrdiff_t n_rows,
               ptrdiff_t n, const int LOG)
{
    VD Y[SMALL_COLS], G[SMALL_COLS];
    const VD zero = vd_zero();
    for (ptrdiff_t g = 0; g < n_rows; g += GW) {
        const ptrdiff_t w = n_rows - g < GW ? n_rows - g : GW;
        const double *py[GW], *pg[GW];
        double *q[GW];
        for (int k = 0; k < GW; ++k) {
            const ptrdiff_t r = g + (k < w ? k : 0);
            py[k] = y + r * n;
            pg[k] = dy + r * n;
            q[k] = o + r * n;
        }
        small_in_f64_(py, n, Y, NULL, NULL, 0);
        small_in_f64_(pg, n, G, NULL, NULL, 0);
        VD a = zero, b = zero;
        VDM bad = vdm_none();
        ptrdiff_t i = 0;
        for (; i + 2 <= n; i += 2) {
            if (LOG) {
                a = vd_add(a, G[i]);
                b = vd_add(b, G[i + 1]);
                bad = vdm_or(bad, vdm_or(vd_cmp(Y[i], zero, _CMP_NLE_UQ),
                                         vd_cmp(Y[i + 1], zero, _CMP_NLE_UQ)));
            } else {
                a = vd_fmadd(Y[i], G[i], a);
                b = vd_fmadd(Y[i + 1], G[i + 1], b);
            }
        }
        if (i < n) {
            if (LOG) {
                a = vd_add(a, G[i]);
                bad = vdm_or(bad, vd_cmp(Y[i], zero, _CMP_NLE_UQ));
            } else {
                a = vd_fmadd(Y[i], G[i], a);
            }
        }
        const VD s = vd_add(a, b);
        for (i = 0; i < n; ++i)
            G[i] = LOG ? lsb_f64_(Y[i], s, G[i]) : vd_mul(Y[i], vd_sub(G[i], s));
        const int badb = vdm_bits(bad), wm = (int)((1u << w) - 1);
        if (~badb & wm) small_out_f64_(G, n, q, ~badb & wm);
        for (unsigned redo = (unsigned)(badb & wm); redo; redo &= redo - 1) {
            const int k = __builtin_ctz(redo);
            csm_log_softmax_bwd_rows_f64_scalar(py[k], pg[k], q[k], 1, n);
        }
    }
}

void SUFFIX(csm_softmax_bwd_small_f64)(const double *y, const double *dy, double *o,
                                       ptrdiff_t n_rows, ptrdiff_t n)
{
    small_bwd_f64_(y, dy, o, n_rows, n, 0);
}

void SUFFIX(csm_log_softmax_bwd_small_f64)(const double *y, const double *dy,
                                           double *o, ptrdiff_t n_rows, ptrdiff_t n)
{
    small_bwd_f64_(y, dy, o, n_rows, n, 1);
}
#endif

#undef GW
