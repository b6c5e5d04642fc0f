/*
 * simd/xr_f32.h -- the float32-lane exact-reduction exp (xr_*), written
 * once against the lane abstraction (v_avx2.h / v_avx512.h): clamp bounds,
 * the float32 exp polynomial, the reduction of a chunk, the cancellation
 * test, log_softmax at scale 1 in float32 lanes.  Shared by the row,
 * column and short-row kernels of both vector widths.
 * (internal; included by src/avx2/common.h and src/avx512/common.h after
 * their v_*.h)
 */
#ifndef CSM_SIMD_XR_F32_H
#define CSM_SIMD_XR_F32_H

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

/* exp(r) for |r| <= ~0.35, float32: 1 + r (1 + r q(r)), q by Estrin
 * (shorter dependency chain than Horner). */
static inline V exp_poly_ps_(V r)
{
    V r2 = v_mul(r, r);
    V a = v_fmadd(v_set1(0x1.55548cp-3f), r, v_set1(0x1.fffffcp-2f));
    V b = v_fmadd(v_set1(0x1.123d4cp-7f), r, v_set1(0x1.555906p-5f));
    b = v_fmadd(v_set1(0x1.6a1e8cp-10f), r2, b);
    V q = v_fmadd(b, r2, a);
    q = v_fmadd(q, r, v_set1(1.0f));
    return v_fmadd(q, r, v_set1(1.0f));
}

/* ---- all-float32 reduction ----------------------------------------------
 *
 * exp(s (x - m)) without forming x - m: every lane reduces s*x itself,
 *     s x = n ln2 + r,   n = round(s x / ln2),  |r| <= ln2/2,
 * and the row constant s*m = n_m ln2 + r_m is reduced once in float64, so
 *     exp(s (x - m)) = 2^(n - n_m) exp(r) exp(-r_m).
 * The lanes then compute 2^(n - n_m + XR_BIAS) * p(r), p the float32
 * degree-6 polynomial of exp_poly_ps_ (rel. error 3e-9), and the row
 * factor 2^-XR_BIAS exp(-r_m) is applied once to the float64 sum.
 * Why not x - m: it is not exact in float32 (x = -15.3, m = 5.1 rounds by
 * up to 2^-21, a relative error of 8 ULP in every term, the same sign for
 * a whole row of similar values), and making it exact (TwoSum) costs
 * five more operations per vector than the whole reduction of s x.
 * r is exact up to two roundings (|error| <= 2^-25: the FMA s x - n ln2_hi
 * is rounded once, then - n ln2_lo), so every term is within ~1 ULP of
 * float32, and the float64 sum of the terms within a small fraction of
 * that.  s != 1: s x is split exactly as ph + pl (s = s_hi + s_lo in
 * float32, FMA for the product error) and pl is added to r.
 * XR_BIAS keeps every term (down to the clamp e^-150) a normal float32 and
 * a 2048-element partial sum (< 2^107) finite.  Lanes equal to the max are
 * counted (int32 lanes) and, like everything below the clamp L (-inf
 * included), replaced by L, whose term is invisible in the float64 state.
 * The sums are associated per vector width (4 vectors of VLEN lanes added
 * in float32, then two float64 accumulators of VLEN / 2 lanes), so AVX2 and
 * AVX-512 results differ in the last bits; both meet the same bounds.
 */
#define XR_BIAS 96
#define XR_SPAN 150.0     /* reduction clamp: terms down to e^-150 */
#define XR_SM_SPAN 120.0  /* softmax write clamp: e^-120 -> 0 in float32; keeps
                             n - n_c + XR_BIAS >= -112 (log_sum < 22) */

typedef struct {
    V magic, sh, sl;        /* magic + XR_BIAS - n_m; scale hi/lo */
    double factor;          /* 2^-XR_BIAS exp(-r_m) */
} xr_row_;

/* sm: the row constant (scale * max; softmax write: + log_sum) */
static inline void xr_row_init_(xr_row_ *c, double scale, double sm)
{
    double nm = nearbyint(sm * 1.4426950408889634);
    double rm = (sm - nm * 6.93147180369123816490e-01) - nm * 1.90821492927058770002e-10;
    c->magic = v_set1(0x1.8p23f + (float)(XR_BIAS - nm));
    float sh = (float)scale;
    c->sh = v_set1(sh);
    c->sl = v_set1((float)(scale - (double)sh));
    c->factor = 0x1p-96 * exp(-rm);
}

/* p(r) and the magic-biased t, whose low bits hold n - n_m + XR_BIAS */
static inline V xr_poly_(V a, const xr_row_ *c, V *tp, const int S1)
{
    V ph = a, pl = v_zero();
    if (!S1) {
        ph = v_mul(a, c->sh);
        pl = v_fmadd(a, c->sl, v_fmsub(a, c->sh, ph));
    }
    V t = v_fmadd(ph, v_set1(0x1.715476p+0f), c->magic);
    V n = v_sub(t, c->magic);
    V r = v_fnmadd(n, v_set1(0x1.62e430p-1f), ph);
    if (!S1) r = v_add(r, pl);
    r = v_fnmadd(n, v_set1(-0x1.05c610p-29f), r);
    *tp = t;
    return exp_poly_ps_(r);
}

/* p * 2^(n - n_m + XR_BIAS) by an integer add to the exponent field (the
 * result is a normal float: no over/underflow for clamped inputs) */
static inline V xr_scale_(V p, V t)
{
    return v_addexp(p, t);
}

/* 2^(n - n_m + XR_BIAS) p(r) for VLEN (clamped) floats */
static inline V xr_exp_(V a, const xr_row_ *c, const int S1)
{
    V t, p = xr_poly_(a, c, &t, S1);
    return xr_scale_(p, t);
}

/* clamp to L, count and retire the lanes equal to the max, exp */
#define XR_STEP(a, e)                                                          \
    do {                                                                       \
        VM eq_ = v_cmpeq(a, mf);                                               \
        cnt = vi_count(cnt, eq_);                                              \
        e = xr_exp_(v_select(eq_, v_max(a, Lv), Lv), &rc, S1);                 \
    } while (0)

/* prefetch the 4 VLEN floats at p + i: one hint per 64-byte line (pw: for
 * writing) */
#define XR_PF(p, i)                                                            \
    do {                                                                       \
        for (int k_ = 0; k_ < 4 * VLEN; k_ += 16)                              \
            _mm_prefetch((const char *)((p) + (i) + k_), _MM_HINT_T0);         \
    } while (0)
#define XR_PFW(p, i)                                                           \
    do {                                                                       \
        for (int k_ = 0; k_ < 4 * VLEN; k_ += 16)                              \
            __builtin_prefetch((p) + (i) + k_, 1, 3);                          \
    } while (0)

/* add VLEN float32 terms to two float64 accumulators (low, high half) */
#define XR_ACC(s)                                                              \
    do {                                                                       \
        s0 = vd_add(s0, v_lo_pd(s));                                           \
        s1 = vd_add(s1, v_hi_pd(s));                                           \
    } while (0)

/* the reduction of a clean chunk with its row constants rc: the count (int32
 * lanes) and the sum of the other terms before the factor (float64 lanes) */
static inline __attribute__((always_inline)) void
lse_acc_f32_xr_(const float *x, ptrdiff_t n, double m, float L,
                const xr_row_ *rcp, const float *pf, const float *pw,
                VD *acc, VI *count, const int S1, const int OVL)
{
    const xr_row_ rc = *rcp;
    const V mf = v_set1((float)m), Lv = v_set1(L);
    VD s0 = vd_zero(), s1 = s0;
    VI cnt = vi_zero();
    /* OVL (n >= VLEN): the tail as the row's last VLEN elements, the lanes
     * the loop did taken out -- the additions of xr_store_row_acc_f32_'s
     * OVL form, term for term, so the grouped reduction and the grouped
     * stored-terms kernel give the same state (a cross-entropy loss is
     * the same with or without its gradient) */
    const ptrdiff_t full = OVL ? (n - 1) / VLEN * VLEN : n;
    ptrdiff_t i = 0;
    for (; i + 4 * VLEN <= full; i += 4 * VLEN) {
        V e0, e1, e2, e3;
        XR_PF(pf, i);
        if (pw) XR_PFW(pw, i);
        XR_STEP(v_load(x + i), e0);
        XR_STEP(v_load(x + i + VLEN), e1);
        XR_STEP(v_load(x + i + 2 * VLEN), e2);
        XR_STEP(v_load(x + i + 3 * VLEN), e3);
        V s = v_add(v_add(e0, e1), v_add(e2, e3));
        XR_ACC(s);
    }
    if (OVL) {
        /* the hints the loop above did not give (it stops at `full`) */
        for (ptrdiff_t k = i; k < n; k += 16) {
            _mm_prefetch((const char *)(pf + k), _MM_HINT_T0);
            if (pw) __builtin_prefetch(pw + k, 1, 3);
        }
        for (; i < full; i += VLEN) {
            V e;
            XR_STEP(v_load(x + i), e);
            XR_ACC(e);
        }
        const V at = v_load(x + n - VLEN);
        const VM nw = v_lanes_from(full - (n - VLEN));
        const VM eq_ = vm_and(v_cmpeq(at, mf), nw);
        cnt = vi_count(cnt, eq_);
        V e = xr_exp_(v_select(eq_, v_max(at, Lv), Lv), &rc, S1);
        e = v_select(nw, v_zero(), e);
        XR_ACC(e);
    } else for (; i < n; i += VLEN) {
        VT t = v_tail(n - i);
        V a = v_load_tail(x + i, t, Lv), e;
        XR_STEP(a, e);
        XR_ACC(e);
    }
    *count = cnt;
    *acc = vd_add(s0, s1);
}

static inline __attribute__((always_inline)) void
lse_chunk_f32_xr_(const float *x, ptrdiff_t n, double scale, double m,
                  float L, csm_lse_state *st, const float *pf, const float *pw,
                  const int S1)
{
    xr_row_ rc;
    VD acc;
    VI cnt;
    xr_row_init_(&rc, scale, scale * m);
    lse_acc_f32_xr_(x, n, m, L, &rc, pf, pw, &acc, &cnt, S1, 0);
    st->max = m;
    st->count = (double)vi_hsum(cnt);
    st->rest = vd_hsum(acc) * rc.factor;
}

/* Pass 2 of a clean row: stores e'_i (sentinel -1 for lanes equal to m)
 * into y; returns the row's count and S' = sum of the other e'_i (the rest
 * is S' * rc->factor). */
static inline __attribute__((always_inline)) void
xr_store_row_acc_f32_(const float *x, ptrdiff_t n, double m, float L,
                      float *y, const float *pf, const xr_row_ *rcp,
                      VD *acc, VI *count, const int S1, const int OVL)
{
    const xr_row_ rc = *rcp;
    /* OVL (n >= VLEN): the tail as the row's last VLEN elements, so no
     * access leaves the row (a masked store that covers the next row's
     * first elements stalls that row's loads until it retires) */
    const ptrdiff_t full = OVL ? (n - 1) / VLEN * VLEN : n;
    const V at = OVL ? v_load(x + n - VLEN) : v_zero();
    const V mf = v_set1((float)m), Lv = v_set1(L), neg1 = v_set1(-1.0f);
    VD s0 = vd_zero(), s1 = s0;
    VI cnt = vi_zero();
#define FU_STEP(a, e, out)                                                     \
    do {                                                                       \
        VM eq_ = v_cmpeq(a, mf);                                               \
        cnt = vi_count(cnt, eq_);                                              \
        e = xr_exp_(v_select(eq_, v_max(a, Lv), Lv), &rc, S1);                 \
        out = v_select(eq_, e, neg1);                                          \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 4 * VLEN <= full; i += 4 * VLEN) {
        V e0, e1, e2, e3, o;
        XR_PF(pf, i);
        FU_STEP(v_load(x + i), e0, o);
        v_store(y + i, o);
        FU_STEP(v_load(x + i + VLEN), e1, o);
        v_store(y + i + VLEN, o);
        FU_STEP(v_load(x + i + 2 * VLEN), e2, o);
        v_store(y + i + 2 * VLEN, o);
        FU_STEP(v_load(x + i + 3 * VLEN), e3, o);
        v_store(y + i + 3 * VLEN, o);
        V s = v_add(v_add(e0, e1), v_add(e2, e3));
        XR_ACC(s);
    }
    if (OVL) {
        for (ptrdiff_t k = i; k < n; k += 16)   /* the hints the loop above did not give */
            _mm_prefetch((const char *)(pf + k), _MM_HINT_T0);
        for (; i < full; i += VLEN) {
            V e, o;
            FU_STEP(v_load(x + i), e, o);
            v_store(y + i, o);
            XR_ACC(e);
        }
    }
    if (OVL) {
        /* the last VLEN elements, loaded before any store (x may be y);
         * the lanes below `full` were done by the loop: not summed nor
         * counted again, stored again with the same value */
        const VM nw = v_lanes_from(full - (n - VLEN));
        V e, o;
        const VM eq_ = vm_and(v_cmpeq(at, mf), nw);
        cnt = vi_count(cnt, eq_);
        e = xr_exp_(v_select(eq_, v_max(at, Lv), Lv), &rc, S1);
        o = v_select(v_cmpeq(at, mf), e, neg1);
        v_store(y + n - VLEN, o);
        e = v_select(nw, v_zero(), e);
        XR_ACC(e);
    } else {
        for (; i < n; i += VLEN) {
            VT t = v_tail(n - i);
            V a = v_load_tail(x + i, t, Lv), e, o;
            FU_STEP(a, e, o);
            v_store_tail(y + i, t, o);
            XR_ACC(e);
        }
    }
#undef FU_STEP
    *count = cnt;
    *acc = vd_add(s0, s1);
}

/* ---- rows a group at a time ----------------------------------------------
 *
 * A row of up to FG_MAX_N elements costs the per-row kernels little vector
 * work and a fixed chain of scalar steps (the horizontal max, the row
 * constants with a libm exp, the horizontal sums, a division or log) whose
 * latencies add up row after row.  The fused softmax and the reduction
 * take such rows FG_ROWS at a time, pass by pass: the group's maxima
 * (row_max_f32_), then xr_group_init_ -- their clamps and row constants in
 * float64 lanes, exp_f64acc_ (2^-52) where xr_row_init_ calls libm -- then
 * each row's terms, then the group's sums (vd_hsums_, a transposing tree)
 * and what follows from them in lanes.  A row's arithmetic is the per-row
 * kernel's (factor and the order of the last float64 additions may differ
 * in their last bits), so the results meet the same bounds, and no lane
 * reads another: a row's result does not depend on its group.
 * FG_MAX_N: 16 rows of 512 floats (32 KiB) about fill L1 between the
 * passes.  Measured against the per-row kernels (AMD Zen4, AVX-512 table,
 * one pinned core, 2.6M elements, best of 3 alternated runs, ns/element
 * per-row / grouped): fused softmax 32 1.28 / 0.79, 64 0.84 / 0.66, 128
 * 0.61 / 0.54, 256 0.51 / 0.51, 512 0.51 / 0.50, 1000 0.47 / 0.49;
 * cross-entropy (stored terms) 64 1.27 / 0.89, 256 0.66 / 0.55, 512 0.64 /
 * 0.52, 1000 0.49 / 0.52; log_softmax (prefetched two-pass) 64 0.76 /
 * 0.64, 256 0.50 / 0.44, 1000 0.44 / 0.41; logsumexp 64 0.65 / 0.55, 1000
 * 0.32 / 0.31.  Past 512 the group's second pass reads from L2 and the
 * fused softmax and cross-entropy lose. */
#define FG_ROWS 16
#define FG_MAX_N 512

typedef struct {
    double mx[FG_ROWS];     /* the rows' maxima (NaN: a NaN in the row) */
    double L[FG_ROWS];      /* clamps (float values) */
    double mg[FG_ROWS];     /* magic + XR_BIAS - n_m (exact) */
    double fac[FG_ROWS];    /* 2^-XR_BIAS exp(-r_m) */
    int ok;                 /* bit r: row r is clean (clamp_bound_) */
    xr_row_ rc;             /* the scale parts; magic set per row */
} xr_group_;

/* G->mx[0..g) set by the caller */
static inline __attribute__((always_inline)) void
xr_group_init_(xr_group_ *G, ptrdiff_t g, double scale)
{
    const VD sv = vd_set1(scale), span_sv = vd_set1(XR_SPAN / scale);
    const VD l2e = vd_set1(1.4426950408889634);
    const VD mag = vd_set1(0x1.8p23 + XR_BIAS), down = vd_set1(0x1p-96);
    for (ptrdiff_t r = g; r < FG_ROWS; ++r) G->mx[r] = 0.0;
    G->ok = 0;
    for (int k = 0; k < FG_ROWS; k += VDLEN) {
        const VD m = vd_loadu(G->mx + k);
        VD L;
        G->ok |= vd_clamp_bits_(m, sv, span_sv, XR_SPAN, &L) << k;
        const VD sm = vd_mul(sv, m);
        const VD nm = vd_round(vd_mul(sm, l2e));
        VD rm = vd_fnmadd(nm, vd_set1(6.93147180369123816490e-01), sm);
        rm = vd_fnmadd(nm, vd_set1(1.90821492927058770002e-10), rm);
        vd_storeu(G->L + k, L);
        vd_storeu(G->mg + k, vd_sub(mag, nm));
        vd_storeu(G->fac + k, vd_mul(down, exp_f64acc_(vd_sub(vd_zero(), rm))));
    }
    G->ok &= (int)((1u << g) - 1);
    const float sh = (float)scale;
    G->rc.sh = v_set1(sh);
    G->rc.sl = v_set1((float)(scale - (double)sh));
    G->rc.factor = 0.0;
}

/* row r's constants */
static inline __attribute__((always_inline)) const xr_row_ *
xr_group_row_(xr_group_ *G, ptrdiff_t r)
{
    G->rc.magic = v_set1((float)G->mg[r]);
    return &G->rc;
}

/* Passes 1 and 2 of a group of g rows: G (maxima, row constants, which
 * rows are clean) and, per clean row, its count cn[r] and the sum of its
 * other terms before the factor sm[r] (the rest is sm[r] G->fac[r]); the
 * other rows get 0 and 0.  STORE: the clean rows' terms are stored into e
 * (the fused softmax, the cross-entropy's stored terms); else pw gives
 * hints for the destination w (the reduction).  Both make the same
 * additions (for rows of at least VLEN, the OVL forms, which keep every
 * access inside the row), so a row's state is the same bits either way: a
 * cross-entropy loss is the same with or without its gradient.  The passes
 * hint the row FG_ROWS ahead (the next group's). */
static inline __attribute__((always_inline)) void
xr_group_sums_(xr_group_ *G, const float *x, ptrdiff_t g, ptrdiff_t n,
               ptrdiff_t xs, double scale, float *e, ptrdiff_t es,
               const float *w, ptrdiff_t ws, double *cn, double *sm,
               const int S1, const int STORE)
{
    VD acc[FG_ROWS], cnt[FG_ROWS];
    for (ptrdiff_t r = 0; r < g; ++r) G->mx[r] = row_max_f32_(x + r * xs, n);
    xr_group_init_(G, g, scale);
    for (ptrdiff_t r = 0; r < FG_ROWS; ++r) {
        acc[r] = cnt[r] = vd_zero();
        if (!(G->ok >> r & 1)) continue;
        const float *xr = x + r * xs, *pf = xr + FG_ROWS * xs;
        const double m = G->mx[r];
        const float L = (float)G->L[r];
        const xr_row_ *rc = xr_group_row_(G, r);
        VI c;
        if (STORE && n >= VLEN)
            xr_store_row_acc_f32_(xr, n, m, L, e + r * es, pf, rc, acc + r, &c, S1, 1);
        else if (STORE)
            xr_store_row_acc_f32_(xr, n, m, L, e + r * es, pf, rc, acc + r, &c, S1, 0);
        else if (n >= VLEN)
            lse_acc_f32_xr_(xr, n, m, L, rc, pf, w ? w + r * ws : NULL, acc + r, &c, S1, 1);
        else
            lse_acc_f32_xr_(xr, n, m, L, rc, pf, w ? w + r * ws : NULL, acc + r, &c, S1, 0);
        cnt[r] = vi_pairs_pd(c);
    }
    for (int k = 0; k < FG_ROWS; k += VDLEN) {
        vd_storeu(cn + k, vd_hsums_(cnt + k));
        vd_storeu(sm + k, vd_hsums_(acc + k));
    }
}

/* The states of a group's clean rows (xr_group_sums_; STORE: their terms
 * into e, else hints for w); returns which rows those are -- the caller
 * gives the others their state. */
static inline __attribute__((always_inline)) int
xr_group_states_(const float *x, ptrdiff_t g, ptrdiff_t n, ptrdiff_t xs,
                 double scale, csm_lse_state *states, float *e, ptrdiff_t es,
                 const float *w, ptrdiff_t ws, const int S1, const int STORE)
{
    xr_group_ G;
    double cn[FG_ROWS], sm[FG_ROWS];
    xr_group_sums_(&G, x, g, n, xs, scale, e, es, w, ws, cn, sm, S1, STORE);
    for (ptrdiff_t r = 0; r < g; ++r)
        if (G.ok >> r & 1) {
            states[r].max = G.mx[r];
            states[r].count = cn[r];
            states[r].rest = sm[r] * G.fac[r];
        }
    return G.ok;
}

/* LSE = scale*max + log(count + rest) close to 0 cancels: the ~1 ULP
 * relative error of the float32 terms would show as many ULPs of LSE.
 * Such rows (|LSE| < ~1.2, judged with a crude log) are redone by the
 * scalar kernel (libm exp in float64). */
static inline int lse_cancels_(const csm_lse_state *st, double scale)
{
    /* branch-free (the outcome is almost always "no") */
    double sm = scale * st->max;
    double u = st->count + st->rest;
    union { double d; unsigned long long b; } v = { u };
    double lg = (double)((long long)(v.b >> 52) - 1023);
    v.b = (v.b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL;
    lg = (lg + (v.d - 1.0)) * 0.6931471805599453;   /* error < 0.07 */
    return (fabs(sm + lg) < 1.3) & (sm != 0.0) & (fabs(st->max) < INFINITY);
}

/* The redo of a row lse_cancels_ flags: count and rest again about the
 * row's max (st->max, exact), with exp_f64_ (relative error < 2^-52) in
 * float64 lanes, VLEN elements a step; mk (or NULL): where= bytes, the
 * masked elements left out.  It replaces the scalar kernels' libm loop,
 * which made such rows -- logsumexp or log_softmax of log-probabilities,
 * whose LSE is 0 -- 10-20x slower than the others. */
static CSM_MAYBE_UNUSED void lse_redo_row_f32_(const float *x, const unsigned char *mk,
                                               ptrdiff_t n, double scale, csm_lse_state *st)
{
    const V ninf = v_set1(-INFINITY);
    const VD mv = vd_set1(st->max), sv = vd_set1(scale);
    VD c0 = vd_zero(), c1 = c0;
    vd_bsum_ r0 = vd_bsum_zero_(), r1 = r0;      /* counts are exact */
    for (ptrdiff_t i = 0, k = 0; i < n; i += VLEN, ++k) {
        const ptrdiff_t r = n - i;
        V a = r >= VLEN ? v_load(x + i) : v_load_tail(x + i, v_tail(r), ninf);
        if (mk) a = v_select(r >= VLEN ? v_keep(mk + i) : v_keep_tail(mk + i, r), ninf, a);
        count_rest_step_(v_lo_pd(a), mv, sv, &c0, &r0.s);
        count_rest_step_(v_hi_pd(a), mv, sv, &c1, &r1.s);
        vd_bsum_next_(&r0, k);
        vd_bsum_next_(&r1, k);
    }
    st->count = vd_hsum(vd_add(c0, c1));
    st->rest = vd_hsum(vd_add(vd_bsum_total_(&r0), vd_bsum_total_(&r1)));
}

/* ==== float32 fast paths ================================================
 *
 * Reduction: exp stays in float64 (exp_f32acc_, 2^-28.5), but the per-lane
 * bookkeeping is done once per 8 float32 lanes: elements equal to the max
 * are counted in int32 lanes and, like -inf and anything far below the max,
 * replaced by a clamp value L with scale*(L - max) ~ -600, whose exp
 * (~1e-261) cannot affect any float32 result.  So the float64 lanes carry
 * no compare/mask work, d = scale*x - scale*max is one FMA, and exp needs
 * no range check.
 *
 * Softmax write: the argument reduction d = scale*x - (scale*max + log_sum),
 * n = round(d/ln2), r = d - n ln2 is done in float64 (so r carries no
 * float32 cancellation error), then r is rounded to float32 (|error| <=
 * 2^-26) and exp(r) is a float32 degree-6 polynomial on 8 lanes (fitted
 * with c0 = c1 = 1, rel. error 3e-9; evaluation error < 0.7 ULP).  2^n is
 * applied as (p * 2^(n+32)) * 2^-32: the first product is exact, so
 * denormal results are rounded once, correctly.  Total < 1 ULP.
 * The fast paths need finite max, alpha == 1 (softmax), |scale*max| <=
 * 2^20 and a representable clamp value; otherwise the generic kernels run.
 */
#define F32_LSE_SPAN 120.0   /* reduction clamp: exp(-90..-150) is invisible */
#define F32_SM_SPAN 200.0    /* softmax write clamp: exp(-200) -> 0 in f32 */
#define F32_SM_BIAS 32

/* softmax of VLEN floats (already clamped) -> VLEN floats */
static inline V softmax_v_f32_(V a, VD sv, VD cvl, VD cvh)
{
    const VD magic = vd_set1(0x1.8p52 + (127 + F32_SM_BIAS));
    const VD log2e = vd_set1(1.4426950408889634);
    const VD ln2 = vd_set1(0x1.62e42fefa39efp-1);
    VD lo = v_lo_pd(a), hi = v_hi_pd(a);
    lo = vd_fmsub(lo, sv, cvl);
    hi = vd_fmsub(hi, sv, cvh);
    VD tl = vd_fmadd(lo, log2e, magic);
    VD th = vd_fmadd(hi, log2e, magic);
    VD rl = vd_fnmadd(vd_sub(tl, magic), ln2, lo);
    VD rh = vd_fnmadd(vd_sub(th, magic), ln2, hi);
    V r = v_from_pd(rl, rh);
    VI ni = vi_max(v_lowbits_pd(tl, th), vi_set1(1));
    V p = v_mul(exp_poly_ps_(r), v_pow2_bits(ni));
    return v_mul(p, v_set1(0x1p-32f));
}

/* ---- fused float32 softmax rows (one exp per element) --------------------
 *
 * Three passes over a row, the last two on data still in L1/L2:
 *   1. M = row max (NaN / inf detection, clamp L = M - XR_SPAN/scale);
 *   2. the all-float32 reduction above with the row's global max, storing
 *      every term e'_i = 2^XR_BIAS exp(r_M) exp(s (x_i - M)) into y (a
 *      normal float32 in [2^-121, 2^96.6]; lanes equal to M store the
 *      sentinel -1, clamped lanes the clamp's term) while summing them in
 *      float64 as csm_lse_rows_f32 does: S = count + rest;
 *   3. y_i = (e'_i f) 2^-XR_BIAS with f = alpha exp(-r_M) / S, applied as
 *      fma(e', f_hi, e' f_lo) (rounded once) then the exact -- or, for a
 *      denormal y, correctly rounding -- product with 2^-XR_BIAS; sentinel
 *      lanes get fl32(alpha / S), so a dominant max gives exactly alpha.
 * Error: e'_i (r <= 2^-25 abs., polynomial ~0.55 ULP, p rounding) + S (a
 * float64 sum of such terms: relative error <~ 2^-24) + 0.5 ULP.  The
 * lse_cancels_ sweep is not needed here: it guards LSE = s M + log S
 * against cancellation, and softmax uses S only through 1/S.
 * Rows that are not clean (NaN, +-inf max, |s M| > 2^20, no representable
 * clamp, extreme alpha) are decided before anything is written and take
 * the reduction + finalize + write path (so x == y is fine). */
#define FUSED_ALPHA_MIN 0x1p-60
#define FUSED_ALPHA_MAX 0x1p12

/* scale == 1: y = x - c, c = max + log_sum, in float32 lanes as
 * ((x - c1) - c2) - c3 with c = c1 + c2 + c3 (three float32 parts, so c is
 * kept to ~2^-72 relative).  Where x is within a factor 2 of c1, x - c1 is
 * exact (Sterbenz) and the two later subtractions round once each on a
 * result that cancellation cannot blow up (the max gives -log_sum rounded
 * once or twice); elsewhere |y| >= |c1| / 2 or |x| / 2, so c2 and c3 are
 * below an ULP of y and the three roundings stay within ~1.5 ULP.  A
 * quarter of the float64 lane version's operations. */
static inline V logsm_c3_f32_(V a, V c1, V c2, V c3)
{
    return v_sub(v_sub(v_sub(a, c1), c2), c3);
}

#endif /* CSM_SIMD_XR_F32_H */
