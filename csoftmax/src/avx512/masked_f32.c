/*
 * avx512/masked_f32.c -- float32 masked rows (where=) on 16 lanes: the
 * reduction, the softmax / log_softmax write passes and the fused softmax
 * of src/avx512/rows_f32.c and fused_rows_f32.c with the mask bytes read
 * in the same loop as x.
 *
 * 16 mask bytes -> one __mmask16 (vpcmpneqb, AVX512BW+VL; tails through a
 * masked byte load).  x is loaded with that opmask: masked lanes are never
 * read from memory at all -- the max pass fills them with -inf, the
 * reduction with the clamp value L (the unmasked kernel's treatment of
 * -inf entries: a term of e^-150 relative, invisible in the float64
 * state), so kept lanes compute exactly what the unmasked AVX-512 kernels
 * compute and an all-true mask gives their results bit for bit (rows of
 * >= 32 elements: the unmasked reduction takes the AVX2 float64-lane loop
 * below).  Written results are 0 (softmax) / -inf (log_softmax) in masked
 * lanes.  Rows that are not clean (no kept element, NaN, +-inf, no
 * representable clamp, extreme alpha) take the scalar masked kernels.
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

/* 16 mask bytes -> a lane mask; the first r (< 16) of them (simd/v_avx512.h) */
#define keep16_(m) v_keep(m)
#define keep16t_(m, r) v_keep_tail(m, r)
static inline __mmask16 keep16n_(const unsigned char *m, ptrdiff_t r)
{
    return r >= 16 ? keep16_(m) : keep16t_(m, r);
}

/* max of the kept elements (NaN if one of them is NaN; -inf if none) */
static double row_max_masked_f32_512_(const float *x, const unsigned char *mk,
                                      ptrdiff_t n)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m0 = ninf, m1 = ninf;
    __mmask16 bad = 0;
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_mask_loadu_ps(ninf, keep16_(mk + i), x + i);
        __m512 b = _mm512_mask_loadu_ps(ninf, keep16_(mk + i + 16), x + i + 16);
        m0 = _mm512_max_ps(m0, a);
        m1 = _mm512_max_ps(m1, b);
        bad |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
    }
    for (; i < n; i += 16) {
        __m512 a = _mm512_mask_loadu_ps(ninf, keep16n_(mk + i, n - i), x + i);
        m0 = _mm512_max_ps(m0, a);
        bad |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    }
    if (bad) return NAN;
    return (double)_mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

static inline __attribute__((always_inline)) void
lse_chunk_masked_f32_xr_(const float *x, const unsigned char *mk, ptrdiff_t n,
                         double scale, double m, float L, csm_lse_state *st,
                         const float *pf, const unsigned char *pfm,
                         const float *pw, const int S1)
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
        _mm_prefetch((const char *)(pfm + i), _MM_HINT_T0);
        if (pw) XR_PFW(pw, i);
        XR_STEP(_mm512_mask_loadu_ps(Lv, keep16_(mk + i), x + i), e0);
        XR_STEP(_mm512_mask_loadu_ps(Lv, keep16_(mk + i + 16), x + i + 16), e1);
        XR_STEP(_mm512_mask_loadu_ps(Lv, keep16_(mk + i + 32), x + i + 32), e2);
        XR_STEP(_mm512_mask_loadu_ps(Lv, keep16_(mk + i + 48), x + i + 48), e3);
        __m512 s = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3));
        XR_ACC(s);
    }
    for (; i < n; i += 16) {
        __m512 a = _mm512_mask_loadu_ps(Lv, keep16n_(mk + i, n - i), x + i), e;
        XR_STEP(a, e);
        XR_ACC(e);
    }
    st->max = m;
    st->count = (double)_mm512_reduce_add_epi32(cnt);
    st->rest = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) * rc.factor;
}

static void lse_chunk_masked_f32_(const float *x, const unsigned char *mk,
                                  ptrdiff_t n, double scale, double span_s,
                                  csm_lse_state *st, const float *pf,
                                  const unsigned char *pfm, const float *pw)
{
    double m = row_max_masked_f32_512_(x, mk, n);
    float L;
    if (!clamp_bound_(m, scale, XR_SPAN, span_s, &L)) {
        csm_lse_rows_masked_f32_scalar(x, 1, n, n, mk, 0, scale, st, NULL, 0);
        return;
    }
    if (scale == 1.0) lse_chunk_masked_f32_xr_(x, mk, n, scale, m, L, st, pf, pfm, pw, 1);
    else lse_chunk_masked_f32_xr_(x, mk, n, scale, m, L, st, pf, pfm, pw, 0);
}

void csm_lse_rows_masked_f32_avx512(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                    ptrdiff_t row_stride, const unsigned char *mask,
                                    ptrdiff_t mask_row_stride, double scale,
                                    csm_lse_state *states, const float *w,
                                    ptrdiff_t w_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        const float *wr = w ? w + r * w_row_stride : NULL;
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;
        if (n <= CHUNK) {
            lse_chunk_masked_f32_(xr, mr, n, scale, span_s, &acc,
                                  xr + row_stride, mr + mask_row_stride, wr);
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {
            int more = n - c > CHUNK;
            lse_chunk_masked_f32_(xr + c, mr + c, n - c < CHUNK ? n - c : CHUNK,
                                  scale, span_s, &part,
                                  more ? xr + c + CHUNK : xr + row_stride,
                                  more ? mr + c + CHUNK : mr + mask_row_stride,
                                  wr ? wr + c : NULL);
            csm_lse_merge(&acc, &part, scale);
        }
        states[r] = acc;
    }
    for (ptrdiff_t r = 0; r < n_rows; ++r)
        if (lse_cancels_(states + r, scale))
            lse_redo_row_f32_(x + r * row_stride, mask + r * mask_row_stride,
                              n, scale, states + r);
}

/* softmax write (rows_f32.c's XR_SM16), 0 where masked */
static inline __attribute__((always_inline)) void
softmax_row_masked_f32_xr_(const float *x, const unsigned char *mk, ptrdiff_t n,
                           double scale, double c, float L, float m, float ym,
                           float *y, const int S1)
{
    const __m512 mf = _mm512_set1_ps(m), ymv = _mm512_set1_ps(ym);
    xr_row_ rc;
    xr_row_init_(&rc, scale, c);
    double k = 0x1p96 * rc.factor;   /* exp(-r_c) */
    const __m512 kh = _mm512_set1_ps((float)k);
    const __m512 kl = _mm512_set1_ps((float)(k - (double)(float)k));
    const __m512 Lv = _mm512_set1_ps(L), down = _mm512_set1_ps(0x1p-96f);
#define XR_SM16M(kp, p, out)                                                   \
    do {                                                                       \
        __mmask16 k_ = (kp);                                                   \
        __m512 a_ = _mm512_mask_loadu_ps(Lv, k_, (p));                         \
        __m512 t_, p_ = xr_poly_(_mm512_max_ps(a_, Lv), &rc, &t_, S1);         \
        p_ = _mm512_fmadd_ps(p_, kh, _mm512_mul_ps(p_, kl));                   \
        out = _mm512_mask_mov_ps(_mm512_mul_ps(xr_scale_(p_, t_), down),       \
                                 _mm512_cmp_ps_mask(a_, mf, _CMP_EQ_OQ), ymv); \
        out = _mm512_maskz_mov_ps(k_, out);                                    \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a, b;
        XR_SM16M(keep16_(mk + i), x + i, a);
        XR_SM16M(keep16_(mk + i + 16), x + i + 16, b);
        _mm512_storeu_ps(y + i, a);
        _mm512_storeu_ps(y + i + 16, b);
    }
    for (; i < n; i += 16) {
        __m512 a;
        XR_SM16M(keep16n_(mk + i, n - i), x + i, a);
        _mm512_mask_storeu_ps(y + i, kmask16_(n - i), a);
    }
#undef XR_SM16M
}

void csm_softmax_rows_masked_f32_avx512(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SM_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        float L;
        double la = alpha == 1.0 ? 0.0 : log(alpha);
        if (!(alpha > 0.0 && la <= 18.0 && log_sum[r] - la <= 32.0) ||
            !clamp_bound_(max[r], scale, XR_SM_SPAN, span_s, &L)) {
            csm_softmax_rows_masked_f32_scalar(xr, 1, n, 0, mr, 0, scale,
                                               max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        double c = scale * max[r] + log_sum[r] - la;
        float m = (float)max[r], ym = (float)(alpha * exp(-log_sum[r]));
        if (scale == 1.0) softmax_row_masked_f32_xr_(xr, mr, n, scale, c, L, m, ym, yr, 1);
        else softmax_row_masked_f32_xr_(xr, mr, n, scale, c, L, m, ym, yr, 0);
    }
}

static inline __m512 logsm16m_f32_(__m512 a, __m512d sv, __m512d mv, __m512d lv)
{
    __m512d lo, hi;
    widen16_(a, &lo, &hi);
    lo = _mm512_fmsub_pd(_mm512_sub_pd(lo, mv), sv, lv);
    hi = _mm512_fmsub_pd(_mm512_sub_pd(hi, mv), sv, lv);
    /* + 0.0: zeros are +0.0 (logsm_f32_, simd/rows_f32_body.h) */
    return _mm512_add_ps(narrow16_(lo, hi), _mm512_setzero_ps());
}

void csm_log_softmax_rows_masked_f32_avx512(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const __m512d sv = _mm512_set1_pd(scale);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY) || !(log_sum[r] < INFINITY)) {
            csm_log_softmax_rows_masked_f32_scalar(xr, 1, n, 0, mr, 0, scale,
                                                   max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        const double m = max[r], ls = log_sum[r];
        const float f1 = (float)(m + ls);     /* log_softmax_row_f32_c3_ */
        const double rr = (m - (double)f1) + ls;
        const float f2 = (float)rr, f3 = (float)(rr - (double)f2);
        const __m512 c1 = _mm512_set1_ps(f1), c2 = _mm512_set1_ps(f2);
        const __m512 c3 = _mm512_set1_ps(f3);
        const __m512d mv = _mm512_set1_pd(m), lv = _mm512_set1_pd(ls);
        const int s1 = scale == 1.0;
#define LSM16M(kp, p)                                                          \
    ({ __mmask16 k_ = (kp);                                                    \
       __m512 a_ = _mm512_maskz_loadu_ps(k_, (p));                             \
       _mm512_mask_mov_ps(ninf, k_, s1 ? logsm_c3_f32_(a_, c1, c2, c3)       \
                                       : logsm16m_f32_(a_, sv, mv, lv)); })
        ptrdiff_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m512 a = LSM16M(keep16_(mr + i), xr + i);
            __m512 b = LSM16M(keep16_(mr + i + 16), xr + i + 16);
            _mm512_storeu_ps(yr + i, a);
            _mm512_storeu_ps(yr + i + 16, b);
        }
        for (; i < n; i += 16)
            _mm512_mask_storeu_ps(yr + i, kmask16_(n - i),
                                  LSM16M(keep16n_(mr + i, n - i), xr + i));
#undef LSM16M
    }
}

/* ---- masked fused softmax (fused_rows_f32.c's three passes) -------------- */

static inline __attribute__((always_inline)) double
xr_store_row_masked_f32_(const float *x, const unsigned char *mk, ptrdiff_t n,
                         double scale, double m, float L, float *y,
                         const float *pf, const unsigned char *pfm,
                         xr_row_ *rcp, double *count_out, const int S1)
{
    xr_row_ rc;
    xr_row_init_(&rc, scale, scale * m);
    *rcp = rc;
    const __m512 mf = _mm512_set1_ps((float)m), Lv = _mm512_set1_ps(L);
    const __m512 neg1 = _mm512_set1_ps(-1.0f);
    const __m512i one_i = _mm512_set1_epi32(1);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    __m512i cnt = _mm512_setzero_si512();
    /* masked lanes load L (their term is invisible in the sum) and store 0 */
#define FUM_STEP(kp, p, e, out)                                                \
    do {                                                                       \
        __mmask16 k_ = (kp);                                                   \
        __m512 a_ = _mm512_mask_loadu_ps(Lv, k_, (p));                         \
        __mmask16 eq_ = _mm512_cmp_ps_mask(a_, mf, _CMP_EQ_OQ);                \
        cnt = _mm512_mask_add_epi32(cnt, eq_, cnt, one_i);                     \
        e = xr_exp_(_mm512_mask_mov_ps(_mm512_max_ps(a_, Lv), eq_, Lv), &rc, S1); \
        out = _mm512_maskz_mov_ps(k_, _mm512_mask_mov_ps(e, eq_, neg1));       \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 e0, e1, e2, e3, o;
        XR_PF(pf, i);
        _mm_prefetch((const char *)(pfm + i), _MM_HINT_T0);
        FUM_STEP(keep16_(mk + i), x + i, e0, o);
        _mm512_storeu_ps(y + i, o);
        FUM_STEP(keep16_(mk + i + 16), x + i + 16, e1, o);
        _mm512_storeu_ps(y + i + 16, o);
        FUM_STEP(keep16_(mk + i + 32), x + i + 32, e2, o);
        _mm512_storeu_ps(y + i + 32, o);
        FUM_STEP(keep16_(mk + i + 48), x + i + 48, e3, o);
        _mm512_storeu_ps(y + i + 48, o);
        __m512 s = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3));
        XR_ACC(s);
    }
    for (; i < n; i += 16) {
        __m512 e, o;
        FUM_STEP(keep16n_(mk + i, n - i), x + i, e, o);
        _mm512_mask_storeu_ps(y + i, kmask16_(n - i), o);
        XR_ACC(e);
    }
#undef FUM_STEP
    *count_out = (double)_mm512_reduce_add_epi32(cnt);
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

/* pass 3 (fused_rows_f32.c): a stored +0 stays +0 */
static inline __attribute__((always_inline)) void
xr_scale_row_masked_f32_(float *y, ptrdiff_t n, double f, float ym)
{
    float fhf = (float)f;
    const __m512 fh = _mm512_set1_ps(fhf);
    const __m512 fl = _mm512_set1_ps((float)(f - (double)fhf));
    const __m512 ymv = _mm512_set1_ps(ym);
    const __m512 down = _mm512_set1_ps(0x1p-96f);
#define FU_SCALE(e_)                                                           \
    _mm512_mask_mov_ps(                                                        \
        _mm512_mul_ps(_mm512_fmadd_ps(e_, fh, _mm512_mul_ps(e_, fl)), down),   \
        _mm512_movepi32_mask(_mm512_castps_si512(e_)), ymv)
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(y + i), b = _mm512_loadu_ps(y + i + 16);
        _mm512_storeu_ps(y + i, FU_SCALE(a));
        _mm512_storeu_ps(y + i + 16, FU_SCALE(b));
    }
    for (; i < n; i += 16) {
        __mmask16 k = kmask16_(n - i);
        __m512 a = _mm512_maskz_loadu_ps(k, y + i);
        _mm512_mask_storeu_ps(y + i, k, FU_SCALE(a));
    }
#undef FU_SCALE
}

void csm_softmax_fused_rows_masked_f32_avx512(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, double alpha, float *y,
        ptrdiff_t y_row_stride, csm_lse_state *states)
{
    const double span_s = XR_SPAN / scale;
    const int ok_a = alpha >= FUSED_ALPHA_MIN && alpha <= FUSED_ALPHA_MAX;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        float L;
        double m = ok_a ? row_max_masked_f32_512_(xr, mr, n) : NAN;
        if (ok_a && n >= 32 && n <= ((ptrdiff_t)1 << 30) &&
            clamp_bound_(m, scale, XR_SPAN, span_s, &L)) {
            xr_row_ rc;
            double count, sum = scale == 1.0
                ? xr_store_row_masked_f32_(xr, mr, n, scale, m, L, yr, xr + x_row_stride,
                                           mr + mask_row_stride, &rc, &count, 1)
                : xr_store_row_masked_f32_(xr, mr, n, scale, m, L, yr, xr + x_row_stride,
                                           mr + mask_row_stride, &rc, &count, 0);
            double S = count + sum * rc.factor;
            if (states) {
                states[r].max = m;
                states[r].count = count;
                states[r].rest = sum * rc.factor;
            }
            xr_scale_row_masked_f32_(yr, n, alpha * (0x1p96 * rc.factor) / S,
                                     (float)(alpha / S));
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        csm_lse_rows_masked_f32_avx512(xr, 1, n, n, mr, 0, scale, &st, NULL, 0);
        if (states) states[r] = st;
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        csm_softmax_rows_masked_f32_avx512(xr, 1, n, n, mr, 0, scale, &mx, &ls,
                                           alpha, yr, n);
    }
}

/* masked columns: tiles through the unmasked column kernels */
#include "../simd/masked_cols_f32_body.h"
/* masked backward rows: copies through the unmasked backward kernels */
#include "../simd/masked_bwd_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
