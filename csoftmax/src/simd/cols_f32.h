/*
 * simd/cols_f32.h -- per-lane helpers of the float32 column kernels (the
 * non-last-axis case), written against the lane abstraction
 * (internal; included by simd/cols_f32_body.h and cols_tiled_f32_body.h)
 */
#ifndef CSM_SIMD_COLS_F32_H
#define CSM_SIMD_COLS_F32_H

/* ==== float32 columns (the non-last-axis case) ===========================
 *
 * Lanes = columns: 16 contiguous columns (one cache line of float32) per
 * row step -- two 8-lane vectors on AVX2, one 16-lane vector on AVX-512
 * (a group is G = 1 or 2 vectors) -- so every pass consumes whole lines
 * and has several independent exp chains in flight.  Same numerics as the
 * float32 row fast paths (the xr_ exact reduction, softmax_v_f32_,
 * logsm_f32_) with a per-lane max / clamp; the per-lane checks (clamp
 * bounds, cancellation) are vectorised: with n = 21 rows a scalar check
 * per lane cost as much as the reduction itself.  Every lane's arithmetic
 * is that of its column alone (sums run down the column), so AVX2 and
 * AVX-512 give the same bits.  Rows of a non-last-axis block are usually
 * a multiple of 4 KiB apart, so the n rows of a column group fall into the
 * same L1 set: each pass prefetches the next lines of every row.  Groups
 * with a NaN, an infinite or out-of-range max, the columns left over by
 * the groups (< 8 on AVX2, < 16 on AVX-512: the AVX2 kernel) and softmax
 * with alpha <= 0 or extreme go through other kernels (COLS_REST). */

/* xr_row_init_ for VLEN lanes (max as float64 halves ml, mh; |scale * max|
 * <= 2^20): the per-lane magic goes to c->magic, the per-lane factors
 * 2^-XR_BIAS exp(-r_m) to *fl, *fh -- exp_f64acc_ (2^-52), or with F32ACC
 * exp_f32acc_ (2.6e-9 = 0.04 float32 ULP, five operations fewer: the
 * short-row kernels, where this runs once per VLEN rows of a few
 * elements). */
static inline __attribute__((always_inline)) void
xr_lanes_init_(xr_row_ *c, double scale, VD ml, VD mh, VD *fl, VD *fh,
               const int F32ACC)
{
    const VD sv = vd_set1(scale), l2e = vd_set1(1.4426950408889634);
    const VD mag = vd_set1(0x1.8p23 + XR_BIAS), down = vd_set1(0x1p-96);
    VD sm[2] = { vd_mul(sv, ml), vd_mul(sv, mh) }, f[2], mg[2];
    for (int h = 0; h < 2; ++h) {
        VD nm = vd_round(vd_mul(sm[h], l2e));
        VD rm = vd_fnmadd(nm, vd_set1(6.93147180369123816490e-01), sm[h]);
        rm = vd_fnmadd(nm, vd_set1(1.90821492927058770002e-10), rm);
        const VD nr = vd_sub(vd_zero(), rm);
        f[h] = vd_mul(down, F32ACC ? exp_f32acc_(nr) : exp_f64acc_(nr));
        mg[h] = vd_sub(mag, nm);   /* exact integers */
    }
    c->magic = v_from_pd(mg[0], mg[1]);
    float sh = (float)scale;
    c->sh = v_set1(sh);
    c->sl = v_set1((float)(scale - (double)sh));
    c->factor = 0.0;
    *fl = f[0]; *fh = f[1];
}

/* clamp_bound_ for VLEN lanes (max as float64 lo/hi halves); nonzero if
 * every lane has a valid clamp value, stored in *L. */
static inline int clamp_bound_v_(VD ml, VD mh, VD sv, double span,
                                 double span_s, V *L)
{
    const VD ss = vd_set1(span_s);
    VD Ll = vd_sub(ml, ss), Lh = vd_sub(mh, ss);
    V f = v_from_pd(Ll, Lh);
    VD dl = vd_mul(sv, vd_sub(v_lo_pd(f), ml));
    VD dh = vd_mul(sv, vd_sub(v_hi_pd(f), mh));
    const VD big = vd_set1(0x1p20), lo = vd_set1(-3.0e38);
    const VD d0 = vd_set1(-1.25 * span), d1 = vd_set1(-0.75 * span);
    VDM okl = vdm_and(
        vdm_and(vd_cmp(vd_abs(vd_mul(sv, ml)), big, _CMP_LE_OQ),
                vd_cmp(Ll, lo, _CMP_GT_OQ)),
        vdm_and(vd_cmp(dl, d0, _CMP_GE_OQ), vd_cmp(dl, d1, _CMP_LE_OQ)));
    VDM okh = vdm_and(
        vdm_and(vd_cmp(vd_abs(vd_mul(sv, mh)), big, _CMP_LE_OQ),
                vd_cmp(Lh, lo, _CMP_GT_OQ)),
        vdm_and(vd_cmp(dh, d0, _CMP_GE_OQ), vd_cmp(dh, d1, _CMP_LE_OQ)));
    *L = f;
    return vdm_all(vdm_and(okl, okh));
}

/* lse_cancels_ for VLEN / 2 lanes: bit k set if lane k's LSE may cancel. */
static inline int lse_cancels_vd_(VD mx, VD cn, VD rs, VD sv)
{
    VD sm = vd_mul(sv, mx), e, f;
    vd_frexp_(vd_add(cn, rs), &e, &f);   /* u >= 1 */
    VD lg = vd_mul(vd_add(e, vd_sub(f, vd_set1(1.0))), vd_set1(0.6931471805599453));
    VDM c = vdm_and(
        vd_cmp(vd_abs(vd_add(sm, lg)), vd_set1(1.3), _CMP_LT_OQ),
        vdm_and(vd_cmp(sm, vd_zero(), _CMP_NEQ_OQ),
                vd_cmp(vd_abs(mx), vd_set1(INFINITY), _CMP_LT_OQ)));
    return vdm_bits(c);
}

static inline void store_states_vd_(csm_lse_state *s, VD mx, VD cn, VD rs)
{
    double m[VDLEN], c[VDLEN], r[VDLEN];
    vd_storeu(m, mx); vd_storeu(c, cn); vd_storeu(r, rs);
    for (int k = 0; k < VDLEN; ++k) { s[k].max = m[k]; s[k].count = c[k]; s[k].rest = r[k]; }
}

/* y = scale * (x - max) - log_sum with per-lane max / log_sum; + 0.0:
 * zeros are +0.0 (see logsm_f32_, rows_f32_body.h) */
static inline V logsmc_f32_(V a, VD sv, VD ml, VD mh, VD ll, VD lh)
{
    VD lo = v_lo_pd(a), hi = v_hi_pd(a);
    lo = vd_fmsub(vd_sub(lo, ml), sv, ll);
    hi = vd_fmsub(vd_sub(hi, mh), sv, lh);
    return v_add(v_from_pd(lo, hi), v_zero());
}

/* prefetch the cache lines of the w floats at p */
#define COLS_PF(p, w)                                                          \
    do {                                                                       \
        for (int k_ = 0; k_ < (w); k_ += 16)                                   \
            _mm_prefetch((const char *)((p) + k_), _MM_HINT_T0);               \
    } while (0)

/* The columns the groups leave over (< VLEN).  AVX2: the generic kernels
 * (float64 lanes; the CE store kernel stores no terms for them, so its
 * rescale kernel writes them from x).  AVX-512: the AVX2 kernels, which
 * take 8 of them with the same lane arithmetic and the rest generic, the
 * AVX2 store / rescale pair deciding alike. */
#if VLEN == 8
#define COLS_REST_LSE(x, w, n, rs, s, st) csm_lse_cols_f32_generic_avx2(x, w, n, rs, s, st)
#define COLS_REST_STORE(x, w, n, rs, s, st, e, es) \
    csm_lse_cols_f32_generic_avx2(x, w, n, rs, s, st)
#define COLS_REST_SCALE csm_softmax_cols_f32_avx2
#define COLS_REST_SOFTMAX csm_softmax_cols_f32_generic_avx2
#else
#define COLS_REST_LSE(x, w, n, rs, s, st) csm_lse_cols_f32_avx2(x, w, n, rs, s, st)
#define COLS_REST_STORE(x, w, n, rs, s, st, e, es) \
    csm_lse_store_cols_f32_avx2(x, w, n, rs, s, st, e, es)
#define COLS_REST_SCALE csm_softmax_scale_cols_f32_avx2
#define COLS_REST_SOFTMAX csm_softmax_cols_f32_avx2
#endif

#endif /* CSM_SIMD_COLS_F32_H */
