/*
 * test_kernels.c -- every entry of the NEON kernel table against the scalar
 * kernels (the float64/libm reference), for tools/neon/run.sh.
 *
 * Built for aarch64 together with kernels_neon.c, kernels_scalar.c and
 * dispatch.c with the extension's own optimisation flags (-O2, gcc's
 * default fp-contract) and run under qemu-aarch64.  Exit status 0 = pass.
 *
 * Cases: random rows of lengths 1..67, 1000, 4099 (several value
 * distributions, ties with the max, -inf elements, magnitudes that reach
 * the denormal / underflow range of exp), rows with NaN / +inf / all -inf,
 * float32 and float64, scale 1 / 0.37 / 3, alpha 1 / 0.61, in place and
 * out of place; the same for column blocks of 1..13 columns.
 *
 * Bounds (ULPs of the kernel's dtype):
 *   write passes (softmax, log_softmax; fed the same max / log_sum):
 *     float32 <= 1 ULP, float64 <= 4 ULP of the scalar result, element by
 *     element; NaN where the scalar gives NaN, identical infinities.
 *   LSE reductions: max and count identical; LSE = scale*max + log_sum
 *     (both finalised by the table's finalize) within 1 (float32) or 4
 *     (float64) ULPs of max(|scale*max|, |log_sum|) -- the magnitude the
 *     float64 sum works at, so a cancelling LSE near 0 is judged on the
 *     error it can actually have.
 *   finalize: bit-identical to the scalar one.
 *   dispatch: csm_kernels() picks NEON unless CSOFTMAX_ISA says otherwise
 *     (`--dispatch-only` checks just that).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "csoftmax.h"
#include "kernels.h"

#ifndef CSM_BUILD_NEON
#error "build this test for aarch64 (tools/neon/run.sh)"
#endif

static const csm_kernel_table *S, *N;
static long n_checks = 0, n_fail = 0;
static double worst_w32 = 0, worst_w64 = 0, worst_l32 = 0, worst_l64 = 0;
static double worst_ref_n = 0, worst_ref_s = 0;
static long n_refereed = 0;

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t next_(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static double unif_(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(next_() >> 11) * 0x1p-53);
}

/* distance in representable values; 0 for equal or both NaN */
static double ulps_f32_(float a, float b)
{
    if (a != a || b != b) return (a != a && b != b) ? 0 : INFINITY;
    if (a == b) return 0;
    int32_t ia, ib;
    memcpy(&ia, &a, 4); memcpy(&ib, &b, 4);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return fabs((double)ia - (double)ib);
}
static double ulps_f64_(double a, double b)
{
    if (a != a || b != b) return (a != a && b != b) ? 0 : INFINITY;
    if (a == b) return 0;
    int64_t ia, ib;
    memcpy(&ia, &a, 8); memcpy(&ib, &b, 8);
    if (ia < 0) ia = INT64_MIN - ia;
    if (ib < 0) ib = INT64_MIN - ib;
    __int128 d = (__int128)ia - (__int128)ib;   /* exact */
    return (double)(d < 0 ? -d : d);
}

static void fail_(const char *what, const char *ctx, double got, double want,
                  double err)
{
    ++n_fail;
    if (n_fail <= 20)
        fprintf(stderr, "FAIL %s [%s]: neon %.17g scalar %.17g (%.3g ULP)\n",
                what, ctx, got, want, err);
}

/* LSE states of the two tables: same max and count, LSE within bound */
/* LSE of one row in binary128 (long double on aarch64 Linux) from the
 * exact scale * (x - max): the referee when NEON and scalar disagree. */
static long double lse_ref_(const void *x, int is32, ptrdiff_t n,
                            ptrdiff_t step, double scale, double m)
{
    long double cnt = 0, rest = 0;
    for (ptrdiff_t i = 0; i < n; ++i) {
        long double v = is32 ? (long double)((const float *)x)[i * step]
                             : (long double)((const double *)x)[i * step];
        if (v == m) cnt += 1;
        else rest += expl((long double)scale * (v - (long double)m));
    }
    return (long double)scale * m + logl(cnt + rest);
}

/* x, n, step, vstep: the data (row k starts at x + k*vstep, elements step
 * apart) for the binary128 referee. */
static void check_states_(const char *ctx, const csm_lse_state *sn,
                          const csm_lse_state *ss, ptrdiff_t k, double scale,
                          int is32, const void *x, ptrdiff_t n,
                          ptrdiff_t step, ptrdiff_t vstep)
{
    double mn[64], ln[64], ms[64], ls[64];
    for (ptrdiff_t b = 0; b < k; b += 64) {
        ptrdiff_t w = k - b < 64 ? k - b : 64;
        N->finalize(sn + b, w, scale, mn, ln);
        S->finalize(sn + b, w, scale, ms, ls);
        for (ptrdiff_t r = 0; r < w; ++r) { /* finalize: identical */
            ++n_checks;
            if (ulps_f64_(mn[r], ms[r]) != 0 || ulps_f64_(ln[r], ls[r]) != 0)
                fail_("finalize", ctx, ln[r], ls[r], ulps_f64_(ln[r], ls[r]));
        }
        S->finalize(ss + b, w, scale, ms, ls);
        for (ptrdiff_t r = 0; r < w; ++r) {
            const csm_lse_state *a = sn + b + r, *e = ss + b + r;
            ++n_checks;
            if (ulps_f64_(a->max, e->max) != 0 || a->count != e->count) {
                fail_("lse max/count", ctx, a->count, e->count, INFINITY);
                continue;
            }
            double lse_n = scale * mn[r] + ln[r], lse_s = scale * ms[r] + ls[r];
            double err;
            if (!(fabs(lse_s) < INFINITY) || lse_n == lse_s) {
                err = ulps_f64_(lse_n, lse_s) == 0 ? 0 : INFINITY;
            } else {
                double mag = fmax(fabs(scale * ms[r]), fabs(ls[r]));
                double u = is32 ? (double)(nextafterf((float)mag, INFINITY) - (float)mag)
                                : nextafter(mag, INFINITY) - mag;
                err = fabs(lse_n - lse_s) / u;
                double *worst = is32 ? &worst_l32 : &worst_l64;
                if (err > *worst) *worst = err;
                if (err > (is32 ? 1.0 : 4.0)) {
                    /* summation order: NEON (4 partial sums) and scalar
                     * (one running sum) round differently; on long rows the
                     * scalar sum's own error can exceed the bound.  Then NEON
                     * must be no further from the binary128 LSE than the
                     * scalar kernel is, plus the bound. */
                    const void *xr = is32
                        ? (const void *)((const float *)x + (b + r) * vstep)
                        : (const void *)((const double *)x + (b + r) * vstep);
                    long double ref = lse_ref_(xr, is32, n, step, scale, e->max);
                    double en = (double)fabsl((long double)lse_n - ref) / u;
                    double es = (double)fabsl((long double)lse_s - ref) / u;
                    ++n_refereed;
                    if (en > worst_ref_n) worst_ref_n = en;
                    if (es > worst_ref_s) worst_ref_s = es;
                    if (en <= es + (is32 ? 1.0 : 4.0)) err = 0;
                    else err = en - es;
                }
            }
            if (err > (is32 ? 1.0 : 4.0)) fail_("lse", ctx, lse_n, lse_s, err);
        }
    }
}

/* fill one row of length n (elements step apart) with distribution `kind` */
#define DEFINE_FILL(T, SUF, BIG)                                               \
static void fill_##SUF##_(T *x, ptrdiff_t n, ptrdiff_t step, int kind)         \
{                                                                              \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        double v;                                                              \
        switch (kind) {                                                        \
        case 0: v = unif_(-5, 5); break;                                       \
        case 1: v = unif_(-5, 5); break;            /* + ties, below */       \
        case 2: v = unif_(-1000, 0); break;         /* exp underflow range */ \
        case 3: v = (next_() % 5 == 0) ? -INFINITY : unif_(-30, 30); break;    \
        case 4: v = unif_(-BIG, BIG); break;        /* huge magnitudes */     \
        case 5: v = unif_(-1.2, -0.2); break;       /* LSE near 0 */          \
        case 6: v = (double)(int)unif_(-3, 3); break; /* many ties */          \
        case 7: v = unif_(-760, -700) * (next_() & 1 ? 1 : 0.001); break;      \
        default: v = 0;                                                        \
        }                                                                      \
        x[i * step] = (T)v;                                                    \
    }                                                                          \
    if (kind == 1 && n > 1) {                                                  \
        T m = x[0];                                                            \
        for (ptrdiff_t i = 1; i < n; ++i) if (x[i * step] > m) m = x[i * step];\
        for (int k = 0; k < 3; ++k) x[(ptrdiff_t)(next_() % n) * step] = m;    \
    }                                                                          \
}
DEFINE_FILL(float, f32, 3e38)
DEFINE_FILL(double, f64, 1.7e308)
#define N_KINDS 8
/* special rows: 0 all -inf, 1 NaN, 2 +inf, 3 +inf and -inf, 4 NaN and +inf,
 * 5 two +inf */
#define N_SPECIAL 6
#define DEFINE_SPECIAL(T, SUF)                                                 \
static void special_##SUF##_(T *x, ptrdiff_t n, ptrdiff_t step, int kind)      \
{                                                                              \
    fill_##SUF##_(x, n, step, 0);                                              \
    ptrdiff_t a = (ptrdiff_t)(next_() % n), b = (ptrdiff_t)(next_() % n);      \
    switch (kind) {                                                            \
    case 0: for (ptrdiff_t i = 0; i < n; ++i) x[i * step] = -INFINITY; break;  \
    case 1: x[a * step] = NAN; break;                                          \
    case 2: x[a * step] = INFINITY; break;                                     \
    case 3: x[a * step] = INFINITY; x[b * step] = -INFINITY; break;            \
    case 4: x[a * step] = INFINITY; x[b * step] = NAN; break;                  \
    case 5: x[a * step] = INFINITY; x[b * step] = INFINITY; break;             \
    }                                                                          \
}
DEFINE_SPECIAL(float, f32)
DEFINE_SPECIAL(double, f64)

static const double SCALES[] = { 1.0, 0.37, 3.0 };

#define DEFINE_RUN(T, SUF, IS32, ULPS, BOUND, WORST)                           \
/* compare the write passes for `k` rows/cols given scalar max/log_sum */      \
static void cmp_out_##SUF##_(const char *what, const char *ctx, const T *yn,   \
                             const T *ys, ptrdiff_t count)                     \
{                                                                              \
    for (ptrdiff_t i = 0; i < count; ++i) {                                    \
        double e = ULPS(yn[i], ys[i]);                                         \
        ++n_checks;                                                            \
        if (e > WORST) WORST = e;                                              \
        if (e > BOUND) fail_(what, ctx, yn[i], ys[i], e);                      \
    }                                                                          \
}                                                                              \
static void run_rows_##SUF##_(ptrdiff_t n, int kind, int special)              \
{                                                                              \
    enum { R = 3 };                                                            \
    ptrdiff_t st = n + 3, tot = R * st;                                        \
    T *x = malloc(sizeof(T) * tot), *yn = malloc(sizeof(T) * tot),            \
      *ys = malloc(sizeof(T) * tot);                                           \
    for (int r = 0; r < R; ++r) {                                              \
        if (special >= 0 && r == 1) special_##SUF##_(x + r * st, n, 1, special);\
        else fill_##SUF##_(x + r * st, n, 1, kind);                            \
    }                                                                          \
    for (size_t si = 0; si < sizeof SCALES / sizeof *SCALES; ++si) {           \
        double scale = SCALES[si];                                             \
        char ctx[96];                                                          \
        snprintf(ctx, sizeof ctx, "%s rows n=%td kind=%d special=%d scale=%g", \
                 #SUF, n, kind, special, scale);                               \
        csm_lse_state sn[R], ss[R];                                            \
        N->lse_rows_##SUF(x, R, n, st, scale, sn);                             \
        S->lse_rows_##SUF(x, R, n, st, scale, ss);                             \
        check_states_(ctx, sn, ss, R, scale, IS32, x, n, 1, st);                            \
        double mx[R], ls[R];                                                   \
        S->finalize(ss, R, scale, mx, ls);                                     \
        for (int a = 0; a < 2; ++a) {                                          \
            double alpha = a ? 0.61 : 1.0;                                     \
            memset(yn, 0, sizeof(T) * tot); memset(ys, 0, sizeof(T) * tot);    \
            N->softmax_rows_##SUF(x, R, n, st, scale, mx, ls, alpha, yn, st);  \
            S->softmax_rows_##SUF(x, R, n, st, scale, mx, ls, alpha, ys, st);  \
            cmp_out_##SUF##_("softmax_rows", ctx, yn, ys, tot);                \
        }                                                                      \
        memset(yn, 0, sizeof(T) * tot); memset(ys, 0, sizeof(T) * tot);        \
        N->log_softmax_rows_##SUF(x, R, n, st, scale, mx, ls, 1.0, yn, st);    \
        S->log_softmax_rows_##SUF(x, R, n, st, scale, mx, ls, 1.0, ys, st);    \
        cmp_out_##SUF##_("log_softmax_rows", ctx, yn, ys, tot);                \
        /* in place: y == x (yn = copy of x, overwritten) */                   \
        memcpy(yn, x, sizeof(T) * tot);                                        \
        N->softmax_rows_##SUF(yn, R, n, st, scale, mx, ls, 1.0, yn, st);       \
        S->softmax_rows_##SUF(x, R, n, st, scale, mx, ls, 1.0, ys, st);        \
        for (int r = 0; r < R; ++r)                                            \
            cmp_out_##SUF##_("softmax_rows in place", ctx, yn + r * st,        \
                             ys + r * st, n);                                  \
    }                                                                          \
    free(x); free(yn); free(ys);                                               \
}                                                                              \
static void run_cols_##SUF##_(ptrdiff_t n, ptrdiff_t nc, int kind, int special)\
{                                                                              \
    ptrdiff_t st = nc + 2, tot = n * st;                                       \
    T *x = malloc(sizeof(T) * tot), *yn = malloc(sizeof(T) * tot),            \
      *ys = malloc(sizeof(T) * tot);                                           \
    for (ptrdiff_t i = 0; i < tot; ++i) x[i] = (T)unif_(-1, 1);                \
    for (ptrdiff_t j = 0; j < nc; ++j) {                                       \
        if (special >= 0 && j == nc / 2) special_##SUF##_(x + j, n, st, special);\
        else fill_##SUF##_(x + j, n, st, kind);                                \
    }                                                                          \
    csm_lse_state *sn = malloc(sizeof *sn * nc), *ss = malloc(sizeof *ss * nc);\
    double *mx = malloc(sizeof(double) * nc), *ls = malloc(sizeof(double) * nc);\
    for (size_t si = 0; si < sizeof SCALES / sizeof *SCALES; ++si) {           \
        double scale = SCALES[si];                                             \
        char ctx[112];                                                         \
        snprintf(ctx, sizeof ctx,                                              \
                 "%s cols n=%td n_cols=%td kind=%d special=%d scale=%g",      \
                 #SUF, n, nc, kind, special, scale);                           \
        N->lse_cols_##SUF(x, nc, n, st, scale, sn);                            \
        S->lse_cols_##SUF(x, nc, n, st, scale, ss);                            \
        check_states_(ctx, sn, ss, nc, scale, IS32, x, n, st, 1);                           \
        S->finalize(ss, nc, scale, mx, ls);                                    \
        for (int a = 0; a < 2; ++a) {                                          \
            double alpha = a ? 0.61 : 1.0;                                     \
            memset(yn, 0, sizeof(T) * tot); memset(ys, 0, sizeof(T) * tot);    \
            N->softmax_cols_##SUF(x, nc, n, st, scale, mx, ls, alpha, yn, st); \
            S->softmax_cols_##SUF(x, nc, n, st, scale, mx, ls, alpha, ys, st); \
            cmp_out_##SUF##_("softmax_cols", ctx, yn, ys, tot);                \
        }                                                                      \
        memset(yn, 0, sizeof(T) * tot); memset(ys, 0, sizeof(T) * tot);        \
        N->log_softmax_cols_##SUF(x, nc, n, st, scale, mx, ls, 1.0, yn, st);   \
        S->log_softmax_cols_##SUF(x, nc, n, st, scale, mx, ls, 1.0, ys, st);   \
        cmp_out_##SUF##_("log_softmax_cols", ctx, yn, ys, tot);                \
    }                                                                          \
    free(x); free(yn); free(ys); free(sn); free(ss); free(mx); free(ls);       \
}
DEFINE_RUN(float, f32, 1, ulps_f32_, 1.0, worst_w32)
DEFINE_RUN(double, f64, 0, ulps_f64_, 4.0, worst_w64)

/* The half-precision conversions of the NEON table (the scalar ones, S in
 * the kernel list) on aarch64: every float16 pattern against the hardware
 * conversion (__fp16: fcvt, round to nearest even), float32 -> float16 on
 * random bit patterns, bfloat16 round trips. */
static void check_cvt_(void)
{
    static uint16_t h[65536], back[65536];
    static float f[65536];
    for (uint32_t i = 0; i < 65536; ++i) h[i] = (uint16_t)i;
    N->cvt_f16_to_f32(h, 1, 65536, 65536, f, 65536);
    N->cvt_f32_to_f16(f, 1, 65536, 65536, back, 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
        __fp16 hw;
        uint16_t b = h[i];
        memcpy(&hw, &b, 2);
        float want = (float)hw;
        ++n_checks;
        if (!(memcmp(&want, &f[i], 4) == 0 || (want != want && f[i] != f[i])) ||
            (want == want && back[i] != h[i]) ||
            (want != want && back[i] != (h[i] | 0x200u))) {
            fprintf(stderr, "FAIL cvt f16 pattern %04x\n", (unsigned)i);
            ++n_fail;
        }
    }
    for (int k = 0; k < 1000000; ++k) {
        uint32_t u = (uint32_t)next_();
        float x;
        memcpy(&x, &u, 4);
        if (x != x) continue;
        __fp16 hw = (__fp16)x;
        uint16_t want, got;
        memcpy(&want, &hw, 2);
        N->cvt_f32_to_f16(&x, 1, 1, 1, &got, 1);
        ++n_checks;
        if (got != want) {
            fprintf(stderr, "FAIL cvt f32 %08x -> f16 %04x, want %04x\n",
                    (unsigned)u, (unsigned)got, (unsigned)want);
            ++n_fail;
        }
    }
    N->cvt_bf16_to_f32(h, 1, 65536, 65536, f, 65536);
    N->cvt_f32_to_bf16(f, 1, 65536, 65536, back, 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
        ++n_checks;
        int nan = (i & 0x7f80u) == 0x7f80u && (i & 0x7fu);
        if (back[i] != (nan ? (h[i] | 0x40u) : h[i])) {
            fprintf(stderr, "FAIL cvt bf16 pattern %04x\n", (unsigned)i);
            ++n_fail;
        }
    }
}

int main(int argc, char **argv)
{
    S = csm_kernels_for(CSM_ISA_SCALAR);
    N = csm_kernels_for(CSM_ISA_NEON);
    if (!S || !N || N->isa != CSM_ISA_NEON || strcmp(N->name, "neon") != 0) {
        fprintf(stderr, "FAIL: no NEON table in this build\n");
        return 1;
    }
    /* dispatch: NEON by default on aarch64, CSOFTMAX_ISA honoured */
    const char *req = getenv("CSOFTMAX_ISA");
    const char *want = (req && (!strcmp(req, "scalar") || !strcmp(req, "neon")))
                       ? req : "neon";
    if (strcmp(csm_kernels()->name, want) != 0 ||
        csm_isa_request_error() != (req && *req && strcmp(req, want) != 0)) {
        fprintf(stderr, "FAIL dispatch: CSOFTMAX_ISA=%s chose %s\n",
                req ? req : "(unset)", csm_kernels()->name);
        ++n_fail;
    }
    printf("dispatch: CSOFTMAX_ISA=%s -> %s\n", req ? req : "(unset)",
           csm_kernels()->name);
    if (argc > 1 && strcmp(argv[1], "--dispatch-only") == 0)
        return n_fail ? 1 : 0;

    ptrdiff_t lens[72];
    int nl = 0;
    for (int n = 1; n <= 67; ++n) lens[nl++] = n;
    lens[nl++] = 1000; lens[nl++] = 4099;
    for (int li = 0; li < nl; ++li) {
        ptrdiff_t n = lens[li];
        for (int k = 0; k < N_KINDS; ++k) {
            run_rows_f32_(n, k, -1);
            run_rows_f64_(n, k, -1);
        }
        for (int s = 0; s < N_SPECIAL; ++s) {
            run_rows_f32_(n, 0, s);
            run_rows_f64_(n, 0, s);
        }
    }
    static const ptrdiff_t NCOLS[] = { 1, 2, 3, 4, 5, 7, 8, 9, 13 };
    for (int li = 0; li < nl; ++li) {
        ptrdiff_t n = lens[li];
        for (size_t c = 0; c < sizeof NCOLS / sizeof *NCOLS; ++c) {
            ptrdiff_t nc = NCOLS[c];
            if (n >= 1000 && nc != 5 && nc != 8) continue; /* keep it quick */
            for (int k = 0; k < N_KINDS; ++k) {
                run_cols_f32_(n, nc, k, -1);
                run_cols_f64_(n, nc, k, -1);
            }
            for (int s = 0; s < N_SPECIAL; ++s) {
                run_cols_f32_(n, nc, 0, s);
                run_cols_f64_(n, nc, 0, s);
            }
        }
    }
    check_cvt_();   /* last: its random draws leave the other checks' inputs as they were */
    printf("%ld checks, %ld failures\n", n_checks, n_fail);
    printf("worst: write f32 %.0f ULP (bound 1), f64 %.0f ULP (bound 4); "
           "LSE f32 %.3g ULP (bound 1), f64 %.3g ULP (bound 4)\n",
           worst_w32, worst_w64, worst_l32, worst_l64);
    printf("LSE beyond the bound vs scalar, refereed in binary128: %ld rows; "
           "worst error there: neon %.3g ULP, scalar %.3g ULP\n",
           n_refereed, worst_ref_n, worst_ref_s);
    return n_fail ? 1 : 0;
}
