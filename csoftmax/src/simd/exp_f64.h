/*
 * simd/exp_f64.h -- exp in float64 lanes (the polynomials of both ISAs)
 * and the row maximum, written once against the lane abstraction
 * (internal; included by src/avx2/common.h and src/avx512/common.h after
 * their v_*.h)
 */
#ifndef CSM_SIMD_EXP_F64_H
#define CSM_SIMD_EXP_F64_H

/* ---- exp ---------------------------------------------------------------- */

static inline VD exp_scale_(VD p, VD t)
{
    return vd_addexp(p, t);
}

static inline VD exp_f32acc_(VD d)
{
    const VD magic = vd_set1(0x1.8p52);
    VD t = vd_fmadd(d, vd_set1(1.4426950408889634), magic);
    VD n = vd_sub(t, magic);
    VD r = vd_fnmadd(n, vd_set1(0x1.62e42fefa39efp-1), d);
    VD p = vd_set1(0x1.6d7531fa74153p-10);
    p = vd_fmadd(p, r, vd_set1(0x1.126fa6fd93876p-7));
    p = vd_fmadd(p, r, vd_set1(0x1.5554ace10c6afp-5));
    p = vd_fmadd(p, r, vd_set1(0x1.5554043e283b8p-3));
    p = vd_fmadd(p, r, vd_set1(0x1.00000028795a0p-1));
    p = vd_fmadd(p, r, vd_set1(0x1.000000a1fd6adp+0));
    p = vd_fmadd(p, r, vd_set1(1.0));
    return exp_scale_(p, t);
}

static inline VD exp_f64acc_(VD d)
{
    const VD magic = vd_set1(0x1.8p52);
    VD t = vd_fmadd(d, vd_set1(1.4426950408889634), magic);
    VD n = vd_sub(t, magic);
    VD r = vd_fnmadd(n, vd_set1(6.93147180369123816490e-01), d);
    r = vd_fnmadd(n, vd_set1(1.90821492927058770002e-10), r);
    /* exp(r) = 1 + r + r^2 q(r), q of degree 9 fitted (Chebyshev) to
     * (exp(r) - 1 - r) / r^2 on |r| <= ln2/2 + 1e-3: relative error of
     * the polynomial (double coefficients) < 1.8e-17, two FMAs fewer than
     * the degree-13 Taylor polynomial it replaces. */
    VD p = vd_set1(0x1.af39d92ab3282p-26);
    p = vd_fmadd(p, r, vd_set1(0x1.28927c0646723p-22));
    p = vd_fmadd(p, r, vd_set1(0x1.71de0d2e6e42bp-19));
    p = vd_fmadd(p, r, vd_set1(0x1.a019b83d2cea4p-16));
    p = vd_fmadd(p, r, vd_set1(0x1.a01a01a7e5259p-13));
    p = vd_fmadd(p, r, vd_set1(0x1.6c16c178c18a5p-10));
    p = vd_fmadd(p, r, vd_set1(0x1.1111111110989p-7));
    p = vd_fmadd(p, r, vd_set1(0x1.5555555553cd9p-5));
    p = vd_fmadd(p, r, vd_set1(0x1.5555555555556p-3));
    p = vd_fmadd(p, r, vd_set1(0x1.0000000000001p-1));
    p = vd_mul(p, vd_mul(r, r));
    p = vd_add(vd_add(p, r), vd_set1(1.0)); /* 1 + r + r^2 q */
    return exp_scale_(p, t);
}

/* exp(d) for d <= 0 (or -inf); lanes where d < -708 are exact zeros. */
static inline VD exp_f32_(VD d)
{
    const VD lo = vd_set1(EXP_LOW);
    VDM tiny = vd_cmp(d, lo, _CMP_LT_OQ);
    return vd_unless(tiny, exp_f32acc_(vd_max(d, lo)));
}

/* exp(d) for d <= 0 (or -inf) with relative error < 2^-43 (float32 data of
 * the log_softmax backward, where dy_i - exp(y_i) sum(dy) may cancel and a
 * float32-accurate exp -- 2^-29, exp_f32_ -- left up to a few hundred
 * float32 ULP of the difference): one-constant reduction (|n| <= 1022,
 * error < 2^-45) and exp(r) = 1 + r + r^2 q(r), q of degree 7 (Chebyshev
 * interpolant of (exp(r) - 1 - r) / r^2 on |r| <= ln2/2 + 1e-3, 2^-43.6);
 * four multiply-adds more than exp_f32_, four fewer than exp_f64acc_.
 * Lanes where d < -708 are exact zeros. */
static inline VD exp_mid_(VD d)
{
    const VD lo = vd_set1(EXP_LOW);
    const VD magic = vd_set1(0x1.8p52);
    VDM tiny = vd_cmp(d, lo, _CMP_LT_OQ);
    d = vd_max(d, lo);
    VD t = vd_fmadd(d, vd_set1(1.4426950408889634), magic);
    VD n = vd_sub(t, magic);
    VD r = vd_fnmadd(n, vd_set1(0x1.62e42fefa39efp-1), d);
    VD p = vd_set1(0x1.72ae6d7753994p-19);
    p = vd_fmadd(p, r, vd_set1(0x1.a13856200182dp-16));
    p = vd_fmadd(p, r, vd_set1(0x1.a019c2b97ad8fp-13));
    p = vd_fmadd(p, r, vd_set1(0x1.6c166ae95f35dp-10));
    p = vd_fmadd(p, r, vd_set1(0x1.111111172585dp-7));
    p = vd_fmadd(p, r, vd_set1(0x1.555555660ec62p-5));
    p = vd_fmadd(p, r, vd_set1(0x1.5555555554f75p-3));
    p = vd_fmadd(p, r, vd_set1(0x1.fffffffffdfacp-2));
    p = vd_fmadd(p, vd_mul(r, r), r);
    p = vd_add(p, vd_set1(1.0));
    return vd_unless(tiny, exp_scale_(p, t));
}

/* dy - exp(y) * s (log_softmax backward) in float64 lanes, one rounding. */
static inline VD lsb_f32_(VD y, VD s, VD dy)
{
    return vd_fnmadd(exp_mid_(y), s, dy);
}

/* exp(d) for d <= 0 (or -inf); lanes in [-746, -708) go through libm
 * (denormal results), lanes below that are exact zeros. */
static inline VD exp_f64_(VD d)
{
    const VD lo = vd_set1(EXP_LOW);
    VDM tiny = vd_cmp(d, lo, _CMP_LT_OQ);
    VD e = vd_unless(tiny, exp_f64acc_(vd_max(d, lo)));
    int mask = vdm_bits(vdm_and(tiny, vd_cmp(d, vd_set1(-746.0), _CMP_GE_OQ)));
    if (mask) {
        /* lane by lane through the vector extension, not a local array:
         * with ASan's detect_stack_use_after_return a local lives on a
         * fake stack that is not 64-byte aligned, and gcc stores a
         * double[8] it aligned itself with vmovapd (SIGSEGV) */
        for (int k = 0; k < VDLEN; ++k)
            if (mask & (1 << k)) e[k] = exp(d[k]);
    }
    return e;
}

static inline VD lsb_f64_(VD y, VD s, VD dy)
{
    return vd_fnmadd(exp_f64_(y), s, dy);
}

/* ---- row maximum (with NaN detection): returns NaN if any NaN ----------- */

static CSM_MAYBE_UNUSED double row_max_f32_(const float *x, ptrdiff_t n)
{
    const V ninf = v_set1(-INFINITY);
    V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    VM bad = vm_none();
    ptrdiff_t i = 0;
    for (; i + 4 * VLEN <= n; i += 4 * VLEN) {
        V a = v_load(x + i), b = v_load(x + i + VLEN);
        V c = v_load(x + i + 2 * VLEN), d = v_load(x + i + 3 * VLEN);
        m0 = v_max(m0, a); m1 = v_max(m1, b);
        m2 = v_max(m2, c); m3 = v_max(m3, d);
        bad = vm_or(bad, vm_or(v_cmpunord(a, b), v_cmpunord(c, d)));
    }
    for (; i + VLEN <= n; i += VLEN) {
        V a = v_load(x + i);
        m0 = v_max(m0, a);
        bad = vm_or(bad, v_cmpunord(a, a));
    }
    if (i < n) {
        V a = v_load_tail(x + i, v_tail(n - i), ninf);
        m1 = v_max(m1, a);
        bad = vm_or(bad, v_cmpunord(a, a));
    }
    if (v_anynan(bad)) return NAN;
    return (double)v_hmax(v_max(v_max(m0, m1), v_max(m2, m3)));
}

static CSM_MAYBE_UNUSED double row_max_f64_(const double *x, ptrdiff_t n)
{
    const VD ninf = vd_set1(-INFINITY);
    VD m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    VDM bad = vdm_none();
    ptrdiff_t i = 0;
    for (; i + 4 * VDLEN <= n; i += 4 * VDLEN) {
        VD a = vd_loadu(x + i), b = vd_loadu(x + i + VDLEN);
        VD c = vd_loadu(x + i + 2 * VDLEN), d = vd_loadu(x + i + 3 * VDLEN);
        m0 = vd_max(m0, a); m1 = vd_max(m1, b);
        m2 = vd_max(m2, c); m3 = vd_max(m3, d);
        bad = vdm_or(bad, vdm_or(vd_cmp(a, b, _CMP_UNORD_Q), vd_cmp(c, d, _CMP_UNORD_Q)));
    }
    for (; i + VDLEN <= n; i += VDLEN) {
        VD a = vd_loadu(x + i);
        m0 = vd_max(m0, a);
        bad = vdm_or(bad, vd_cmp(a, a, _CMP_UNORD_Q));
    }
    if (i < n) {
        VD a = vd_load_tail(x + i, n - i, -INFINITY);
        m1 = vd_max(m1, a);
        bad = vdm_or(bad, vd_cmp(a, a, _CMP_UNORD_Q));
    }
    if (vdm_any(bad)) return NAN;
    return vd_hmax(vd_max(vd_max(m0, m1), vd_max(m2, m3)));
}


/* log(u) for finite u >= 1 (float64, about 1 ULP): u = 2^k f, f in
 * (sqrt(1/2), sqrt(2)], log f = 2 atanh(s), s = (f-1)/(f+1), by its series
 * to s^21 (the finalize kernels' and the short-row kernels' log_sum). */
static inline VD log_ge1_(VD u)
{
    VD k, f;
    vd_frexp_(u, &k, &f);
    VDM big = vd_cmp(f, vd_set1(1.4142135623730951), _CMP_GT_OQ);
    f = vd_blend(big, f, vd_mul(f, vd_set1(0.5)));
    k = vd_add(k, vd_when(big, vd_set1(1.0)));
    VD g = vd_sub(f, vd_set1(1.0));
    VD s = vd_div(g, vd_add(g, vd_set1(2.0)));
    VD z = vd_mul(s, s);
    VD p = vd_set1(1.0 / 21.0);
    p = vd_fmadd(p, z, vd_set1(1.0 / 19.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 17.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 15.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 13.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 11.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 9.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 7.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 5.0));
    p = vd_fmadd(p, z, vd_set1(1.0 / 3.0));
    /* log f = 2s + 2s*z*p ; + k ln2 (hi/lo) */
    VD s2 = vd_add(s, s);
    VD lf = vd_fmadd(vd_mul(s2, z), p, vd_mul(k, vd_set1(1.90821492927058770002e-10)));
    lf = vd_add(lf, s2);
    return vd_fmadd(k, vd_set1(6.93147180369123816490e-01), lf);
}

/* log(count + rest) for count >= 1: log_ge1_ of the float64 sum plus its
 * rounding error (TwoSum) over the sum -- the finalize kernels' formula,
 * per lane (the short-row kernels). */
static inline VD log_sum_vd_(VD cn, VD rs)
{
    VD u = vd_add(cn, rs);
    VD bb = vd_sub(u, cn);
    VD c = vd_add(vd_sub(cn, vd_sub(u, bb)), vd_sub(rs, bb));
    return vd_add(log_ge1_(u), vd_div(c, u));
}

/* One step of an exact (count, rest) sum about the per-lane max m: lanes
 * equal to m are counted, the others add exp_f64_(scale * (v - m)) -- the
 * float64 state of a row (csm_lse_state) in lanes.  The LSE-cancellation
 * redo (rows, columns) and the float64 short rows. */
static inline void count_rest_step_(VD v, VD m, VD sv, VD *c, VD *r)
{
    const VDM e = vd_cmp(v, m, _CMP_EQ_OQ);
    *r = vd_add(*r, vd_unless(e, exp_f64_(vd_mul(vd_sub(v, m), sv))));
    *c = vd_add(*c, vd_when(e, vd_set1(1.0)));
}

/* A lane sum of many terms in blocks: s takes 32 terms, q 32 blocks, r the
 * rest, so one-sided rounding grows like (32 + 32 + n / 1024) u, not n u
 * (the generic column kernels' scheme).  The LSE-cancellation redo needs
 * it: its rest is the whole result there, and one accumulator per lane
 * gave logsumexp of the float32 log-probabilities of 65 536 classes
 * (mass 0.99 on one, LSE ~ 5e-9) 4.6-5.2 ULP. */
typedef struct { VD s, q, r; } vd_bsum_;

static inline vd_bsum_ vd_bsum_zero_(void)
{
    vd_bsum_ b = { vd_zero(), vd_zero(), vd_zero() };
    return b;
}

/* after term number k (0, 1, ...) went into b->s */
static inline void vd_bsum_next_(vd_bsum_ *b, ptrdiff_t k)
{
    if ((k & 31) == 31) {
        b->q = vd_add(b->q, b->s);
        b->s = vd_zero();
        if ((k & 1023) == 1023) {
            b->r = vd_add(b->r, b->q);
            b->q = vd_zero();
        }
    }
}

static inline VD vd_bsum_total_(const vd_bsum_ *b)
{
    return vd_add(b->r, vd_add(b->q, b->s));
}

/* Lane bits (bit k: lane k) of the short-row kernels' per-lane tests. */
static inline int vd_finite_bits_(VD m)      /* -inf < m < inf */
{
    return vdm_bits(vdm_and(vd_cmp(m, vd_set1(-INFINITY), _CMP_GT_OQ),
                            vd_cmp(m, vd_set1(INFINITY), _CMP_LT_OQ)));
}

static inline int vd_absle_bits_(VD a, double b)     /* |a| <= b */
{
    return vdm_bits(vd_cmp(vd_abs(a), vd_set1(b), _CMP_LE_OQ));
}

/* clamp_bound_ per lane: the lanes whose clamp L = fl32(m - span / scale)
 * is representable and keeps scale * (L - m) within [-1.25, -0.75] span
 * (and |scale * m| <= 2^20); *L gets the float-rounded clamps. */
static inline int vd_clamp_bits_(VD m, VD sv, VD span_sv, double span, VD *L)
{
    VDM ok = vd_cmp(vd_abs(vd_mul(sv, m)), vd_set1(0x1p20), _CMP_LE_OQ); /* finite too */
    const VD Ld = vd_sub(m, span_sv);
    ok = vdm_and(ok, vd_cmp(Ld, vd_set1(-3.0e38), _CMP_GT_OQ));
    const VD Lf = vd_round_f32(Ld);
    const VD dd = vd_mul(sv, vd_sub(Lf, m));
    ok = vdm_and(ok, vd_cmp(dd, vd_set1(-1.25 * span), _CMP_GE_OQ));
    ok = vdm_and(ok, vd_cmp(dd, vd_set1(-0.75 * span), _CMP_LE_OQ));
    *L = Lf;
    return vdm_bits(ok);
}

/* LSE = scale*max + log_sum close to 0 (lse_cancels_ with the exact log):
 * the lanes to redo at float64 accuracy when the caller wants the LSE. */
static inline int vd_cancels_bits_(VD m, VD ls, VD sv)
{
    const VD sm = vd_mul(sv, m);
    return vdm_bits(vdm_and(vd_cmp(vd_abs(vd_add(sm, ls)), vd_set1(1.3), _CMP_LT_OQ),
                            vd_cmp(sm, vd_zero(), _CMP_NEQ_OQ)));
}

/* The target's log-probability of a cross-entropy gradient kernel,
 * lp = scale * (x_t - max) - log_sum, formed as the loss-only path forms
 * it (_ce_samples, compiled without FMA): the product rounded on its own,
 * so a loss is the same number with and without its gradient.  The empty
 * asm keeps the compiler from contracting the two into an FMA. */
static inline VD ce_lp_vd_(VD xt, VD m, VD sv, VD l)
{
    VD p = vd_mul(vd_sub(xt, m), sv);
    __asm__("" : "+v"(p));
    return vd_sub(p, l);
}

/* expm1(t) for t <= 0 (NaN -> NaN, -inf -> -1): exp(t) - 1 below -0.3
 * (|result| > 0.25: no cancellation), else the Taylor series to t^13/13!
 * (truncation < 2.6e-16 relative) -- the vector form of the per-sample
 * _expm1_le0 of _losses.pxi (cross-entropy's target entries). */
static inline VD expm1_le0_(VD t)
{
    const VD one = vd_set1(1.0);
    VDM big = vd_cmp(t, vd_set1(-0.3), _CMP_LT_OQ);
    VD q = one;
    for (int k = 13; k >= 2; --k)
        q = vd_fmadd(vd_mul(t, vd_set1(1.0 / k)), q, one);
    q = vd_mul(t, q);
    /* exp(t) - 1 = -1 exactly below -700 (and for -inf); NaN lanes are not
     * in `big` and keep the series' NaN */
    VD e = exp_f64acc_(vd_max(t, vd_set1(-700.0)));
    return vd_blend(big, q, vd_sub(e, one));
}

#endif /* CSM_SIMD_EXP_F64_H */
