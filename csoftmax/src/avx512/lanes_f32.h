/*
 * avx512/lanes_f32.h -- float32-lane helpers on 16 lanes: clamp bounds, the
 * exact-reduction exp (xr_*), the reduction of a chunk, the cancellation
 * test.  The numerics (and the reasons for them) are
 * those of src/avx2/lanes_f32.h; read its comments.
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX512_LANES_F32_H
#define CSM_AVX512_LANES_F32_H

#define XR_BIAS 96
#define XR_SPAN 150.0     /* reduction clamp: terms down to e^-150 */
#define XR_SM_SPAN 120.0  /* softmax write clamp (see src/avx2/lanes_f32.h) */
#define FUSED_ALPHA_MIN 0x1p-60
#define FUSED_ALPHA_MAX 0x1p12

/* span_s = span / scale, computed once per call by the caller */
static inline int clamp_bound_(double m, double scale, double span,
                               double span_s, float *L)
{
    if (!(m > -INFINITY && m < INFINITY)) return 0;
    if (!(fabs(scale * m) <= 0x1p20)) return 0;
    double Ld = m - span_s;
    if (!(Ld > -3.0e38)) return 0;
    float Lf = (float)Ld;
    double dd = scale * ((double)Lf - m);
    if (!(dd >= -1.25 * span && dd <= -0.75 * span)) return 0;
    *L = Lf;
    return 1;
}

/* exp(r) for |r| <= ~0.35, float32: 1 + r (1 + r q(r)), q by Estrin */
static inline __m512 exp_poly_ps_(__m512 r)
{
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 a = _mm512_fmadd_ps(_mm512_set1_ps(0x1.55548cp-3f), r, _mm512_set1_ps(0x1.fffffcp-2f));
    __m512 b = _mm512_fmadd_ps(_mm512_set1_ps(0x1.123d4cp-7f), r, _mm512_set1_ps(0x1.555906p-5f));
    b = _mm512_fmadd_ps(_mm512_set1_ps(0x1.6a1e8cp-10f), r2, b);
    __m512 q = _mm512_fmadd_ps(b, r2, a);
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f));
    return _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f));
}

typedef struct {
    __m512 magic, sh, sl;   /* magic + XR_BIAS - n_m; scale hi/lo */
    double factor;          /* 2^-XR_BIAS exp(-r_m) */
} xr_row_;

static inline void xr_row_init_(xr_row_ *c, double scale, double sm)
{
    double nm = nearbyint(sm * 1.4426950408889634);
    double rm = (sm - nm * 6.93147180369123816490e-01) - nm * 1.90821492927058770002e-10;
    c->magic = _mm512_set1_ps(0x1.8p23f + (float)(XR_BIAS - nm));
    float sh = (float)scale;
    c->sh = _mm512_set1_ps(sh);
    c->sl = _mm512_set1_ps((float)(scale - (double)sh));
    c->factor = 0x1p-96 * exp(-rm);
}

static inline __m512 xr_poly_(__m512 a, const xr_row_ *c, __m512 *tp, const int S1)
{
    __m512 ph = a, pl = _mm512_setzero_ps();
    if (!S1) {
        ph = _mm512_mul_ps(a, c->sh);
        pl = _mm512_fmadd_ps(a, c->sl, _mm512_fmsub_ps(a, c->sh, ph));
    }
    __m512 t = _mm512_fmadd_ps(ph, _mm512_set1_ps(0x1.715476p+0f), c->magic);
    __m512 n = _mm512_sub_ps(t, c->magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e430p-1f), ph);
    if (!S1) r = _mm512_add_ps(r, pl);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-0x1.05c610p-29f), r);
    *tp = t;
    return exp_poly_ps_(r);
}

static inline __m512 xr_scale_(__m512 p, __m512 t)
{
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p),
                               _mm512_slli_epi32(_mm512_castps_si512(t), 23)));
}

static inline __m512 xr_exp_(__m512 a, const xr_row_ *c, const int S1)
{
    __m512 t, p = xr_poly_(a, c, &t, S1);
    return xr_scale_(p, t);
}

/* clamp to L, count and retire the lanes equal to the max, exp */
#define XR_STEP(a, e)                                                          \
    do {                                                                       \
        __mmask16 eq_ = _mm512_cmp_ps_mask(a, mf, _CMP_EQ_OQ);                 \
        cnt = _mm512_mask_add_epi32(cnt, eq_, cnt, one_i);                     \
        e = xr_exp_(_mm512_mask_mov_ps(_mm512_max_ps(a, Lv), eq_, Lv), &rc, S1); \
    } while (0)

#define XR_PF(p, i)                                                            \
    do {                                                                       \
        _mm_prefetch((const char *)((p) + (i)), _MM_HINT_T0);                  \
        _mm_prefetch((const char *)((p) + (i) + 16), _MM_HINT_T0);             \
        _mm_prefetch((const char *)((p) + (i) + 32), _MM_HINT_T0);             \
        _mm_prefetch((const char *)((p) + (i) + 48), _MM_HINT_T0);             \
    } while (0)
#define XR_PFW(p, i)                                                           \
    do {                                                                       \
        __builtin_prefetch((p) + (i), 1, 3);                                   \
        __builtin_prefetch((p) + (i) + 16, 1, 3);                              \
        __builtin_prefetch((p) + (i) + 32, 1, 3);                              \
        __builtin_prefetch((p) + (i) + 48, 1, 3);                              \
    } while (0)

/* add 16 float32 terms to two float64 accumulators */
#define XR_ACC(s)                                                              \
    do {                                                                       \
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));    \
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(s, 1))); \
    } while (0)

static inline __attribute__((always_inline)) void
lse_chunk_f32_xr_(const float *x, ptrdiff_t n, double scale, double m,
                  float L, csm_lse_state *st, const float *pf, const float *pw,
                  const int S1)
{
    xr_row_ rc;
    xr_row_init_(&rc, scale, scale * m);
    const __m512 mf = _mm512_set1_ps((float)m), Lv = _mm512_set1_ps(L);
    const __m512i one_i = _mm512_set1_epi32(1);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    __m512i cnt = _mm512_setzero_si512();
    ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 e0, e1, e2, e3;
        XR_PF(pf, i);
        if (pw) XR_PFW(pw, i);
        XR_STEP(_mm512_loadu_ps(x + i), e0);
        XR_STEP(_mm512_loadu_ps(x + i + 16), e1);
        XR_STEP(_mm512_loadu_ps(x + i + 32), e2);
        XR_STEP(_mm512_loadu_ps(x + i + 48), e3);
        __m512 s = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3));
        XR_ACC(s);
    }
    for (; i < n; i += 16) {
        __m512 a = _mm512_mask_loadu_ps(Lv, kmask16_(n - i), x + i), e;
        XR_STEP(a, e);
        XR_ACC(e);
    }
    st->max = m;
    st->count = (double)_mm512_reduce_add_epi32(cnt);
    st->rest = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) * rc.factor;
}

/* LSE = scale*max + log(count + rest) close to 0 cancels: such rows are
 * redone by the scalar kernel (src/avx2/lanes_f32.h) */
static inline int lse_cancels_(const csm_lse_state *st, double scale)
{
    double sm = scale * st->max;
    double u = st->count + st->rest;
    union { double d; unsigned long long b; } v = { u };
    double lg = (double)((long long)(v.b >> 52) - 1023);
    v.b = (v.b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL;
    lg = (lg + (v.d - 1.0)) * 0.6931471805599453;   /* error < 0.07 */
    return (fabs(sm + lg) < 1.3) & (sm != 0.0) & (fabs(st->max) < INFINITY);
}

/* y = ((x - c1) - c2) - c3 (log_softmax, scale == 1; src/avx2/lanes_f32.h) */
static inline __m512 logsm16_c3_f32_(__m512 a, __m512 c1, __m512 c2, __m512 c3)
{
    return _mm512_sub_ps(_mm512_sub_ps(_mm512_sub_ps(a, c1), c2), c3);
}

#endif /* CSM_AVX512_LANES_F32_H */
