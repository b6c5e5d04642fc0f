"""Reference implementations and error measures shared by the tests.

Reference (``ref_*``): the textbook-stable formula evaluated in a wider type
than the data -- float64 for float32/float16 data, ``np.longdouble`` (x87
80-bit, 64-bit mantissa) for float64 data::

    m = max(x);  d = s * (x - m)                 (s = fl64(1 / temperature))
    count = #{x == m};  rest = sum_{x != m} exp(d)
    L = log(count) + log1p(rest / count)        (= log(sum exp(d)), no cancellation)
    logsumexp = s*m + L;  log_softmax = d - L;  softmax = exp(d - L)

Non-finite rows follow IEEE arithmetic on the same formula (the behaviour
csoftmax documents): a NaN row gives NaN; a row holding +inf gives LSE=+inf,
softmax NaN at the +inf entries and 0 elsewhere; an all -inf row gives
LSE=-inf and NaN softmax.

Error measure (``ulp_err``): ``|got - ref| / spacing(|ref| rounded to the
result dtype)``, i.e. the error in units in the last place of the correctly
rounded result.  Non-finite references must be matched exactly (same NaN
positions, same infinities).
"""
import contextlib
import math

import numpy as np

import csoftmax
from csoftmax import _core

LONG_OK = np.finfo(np.longdouble).nmant >= 63   # x87 extended precision

# Stated bounds (ULP of the result dtype, see ulp_err).
BOUND = {np.dtype(np.float32): 4.0,   # issue #3: float32 <= 4 ULP of float64 reference
         np.dtype(np.float64): 8.0,   # float64: <= 8 ULP of a longdouble reference
         np.dtype(np.float16): 1.0}   # float16: computed in float32, one final rounding
EPS64 = 2.0 ** -53


def work_dtype(dt):
    return np.longdouble if np.dtype(dt) == np.float64 else np.float64


def _rows_state(x2, s):
    """(m, d, L) per row of a 2-D array in the working dtype."""
    with np.errstate(all="ignore"):
        m = np.max(x2, axis=1, keepdims=True) if x2.shape[1] else np.full((x2.shape[0], 1), -np.inf, x2.dtype)
        d = s * (x2 - m)
        eq = x2 == m
        count = eq.sum(axis=1, keepdims=True).astype(x2.dtype)
        rest = np.where(eq, 0, np.exp(d)).sum(axis=1, keepdims=True)
        L = np.log(count) + np.log1p(rest / count)
        L = np.where(np.isnan(m), np.nan, L)
        # an all -inf row: count = n and rest = nan (exp(nan)); LSE must be -inf
        L = np.where(m == -np.inf, np.log(count), L)
    return m, d, L


def _to_rows(x, axis):
    """Move the reduced axes of x to the end and flatten: (rows, n) + undo info."""
    nd = x.ndim
    if axis is None:
        axes = tuple(range(nd))
    elif isinstance(axis, tuple):
        axes = tuple(a % nd for a in axis)
    else:
        axes = (axis % nd,)
    rest = [i for i in range(nd) if i not in axes]
    perm = rest + list(axes)
    xt = np.transpose(x, perm)
    n = int(np.prod([x.shape[i] for i in axes]))
    kept = [x.shape[i] for i in rest]
    return xt.reshape(-1, n), perm, xt.shape, kept


def ref(op, x, axis=-1, temperature=1.0, wd=None):
    """Reference softmax / log_softmax / logsumexp of ndarray x (see module doc).

    Returns the result in the working dtype (not rounded)."""
    x = np.asarray(x)
    wd = wd or work_dtype(x.dtype)
    s = wd(np.float64(1.0) / np.float64(temperature))
    x2, perm, tshape, kept = _to_rows(x.astype(wd), axis)
    m, d, L = _rows_state(x2, s)
    with np.errstate(all="ignore"):
        if op == "logsumexp":
            return (s * m + L).reshape(kept)
        y = d - L if op == "log_softmax" else np.exp(d - L)
    return np.transpose(y.reshape(tshape), np.argsort(perm))


def ulp_err(got, want, dtype=None):
    """Per-element error in ULP of `dtype` (default got.dtype); see module doc.

    Elements where `want` is not finite must agree exactly (0 returned there,
    np.inf where they do not)."""
    got = np.asarray(got)
    dtype = np.dtype(dtype or got.dtype)
    want = np.asarray(want)
    g = got.astype(work_dtype(dtype))
    w = want.astype(work_dtype(dtype))
    fin = np.isfinite(w)
    same_nonfinite = (np.isnan(g) & np.isnan(w)) | (g == w)
    sp = np.spacing(np.abs(w).astype(dtype)).astype(w.dtype)
    sp = np.where(sp > 0, sp, np.spacing(dtype.type(0)))
    with np.errstate(all="ignore"):
        e = np.where(fin, np.abs(g - w) / sp, np.where(same_nonfinite, 0.0, np.inf))
    e = np.where(fin & ~np.isfinite(g), np.inf, e)
    return e.astype(np.float64)


def assert_ulp(got, want, bound=None, dtype=None, what=""):
    got = np.asarray(got)
    dtype = np.dtype(dtype or got.dtype)
    bound = BOUND[dtype] if bound is None else bound
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    e = ulp_err(got, want, dtype)
    if e.size:
        i = np.unravel_index(np.argmax(e), e.shape)
        assert e[i] <= bound, (f"{what}: max error {e[i]:.3g} ULP > {bound} at {i}: "
                               f"got {got[i]!r}, want {want[i]!r}")


def f64_slack(op, x, axis=-1, temperature=1.0):
    """Absolute error allowed for float64 results on top of the 8-ULP bound.

    A float64 kernel must round d = (x - max)/T, the sum S and log S to
    float64 -- a longdouble reference does not -- and an uncompensated
    float64 sum of n terms has a relative error that grows like sqrt(n)
    (random rounding; worst case n).  So, with u = 2^-53:

    * log_softmax  y = d - log S   (d <= 0 <= log S: no cancellation):
          |err| <= 8 ulp(y) + 4 sqrt(n) u
    * softmax      y = exp(d - log S):
          |err| <= 8 ulp(y) + |y| (4|d| + 4 log S + 4 sqrt(n)) u
      (the conditioning of exp: its argument d - log S is formed with up to
      three float64 roundings -- x - max, * 1/T, - log S -- each <= u |arg|)
    * logsumexp    = max + log S (may cancel when max < 0):
          |err| <= 8 ulp(y) + 8 ulp(max(|max|, log S)) + 4 sqrt(n) u

    Returns an array shaped like the result (longdouble).
    """
    wd = np.longdouble
    x = np.asarray(x).astype(wd)
    s = wd(np.float64(1.0) / np.float64(temperature))
    x2, perm, tshape, kept = _to_rows(x, axis)
    n = x2.shape[1]
    m, d, L = _rows_state(x2, s)
    sumterm = wd(4 * np.sqrt(max(n, 1)) * EPS64)
    with np.errstate(all="ignore"):
        L = np.where(np.isfinite(L), np.abs(L), 0)
        if op == "logsumexp":
            big = np.maximum(np.where(np.isfinite(m), np.abs(s * m), 0), L)
            sl = 8 * np.spacing(big.astype(np.float64)).astype(wd) + sumterm
            return sl.reshape(kept)
        if op == "log_softmax":
            sl = np.broadcast_to(sumterm, d.shape)
        else:
            y = np.exp(d - L)
            dd = np.where(np.isfinite(d), np.abs(d), 0)
            sl = np.where(np.isfinite(y), y, 0) * (4 * dd + 4 * L + sumterm / EPS64) * EPS64
    return np.transpose(np.broadcast_to(sl, d.shape).reshape(tshape), np.argsort(perm))


def check(op, got, x, axis=-1, temperature=1.0, what=""):
    """Assert that `got` = op(x) within the stated bound of got's dtype:
    float32/float16 -- BOUND ULP of the float64 reference; float64 -- 8 ULP of
    the longdouble reference plus f64_slack (see there)."""
    want = ref(op, x, axis, temperature)
    got = np.asarray(got)
    if got.dtype == np.float64 and LONG_OK:
        slack = f64_slack(op, x, axis, temperature)
        g = got.astype(np.longdouble)
        with np.errstate(invalid="ignore"):
            excess = np.maximum(np.abs(g - want) - slack, 0)
            # move got towards want by the slack, then apply the ULP bound
            adj = np.where(np.isfinite(want) & np.isfinite(g),
                           want + np.sign(g - want) * excess, g)
        assert_ulp(adj.astype(np.float64), want, what=what)
    else:
        assert_ulp(got, want, what=what)


def assert_agree(y1, y2, op, x, axis=-1, what=""):
    """Two csoftmax results for the same input agree within the stated bound:
    float32 -- BOUND ULP of each other; float64 -- |y1 - y2| within the width
    of the float64 band (8 ULP + f64_slack) around the reference."""
    y1, y2 = np.asarray(y1), np.asarray(y2)
    if y1.dtype != np.float64 or not LONG_OK:
        assert_ulp(y2, y1.astype(np.float64), dtype=y1.dtype, what=what)
        return
    want = ref(op, x, axis)
    band = (BOUND[y1.dtype] * np.spacing(np.abs(want).astype(np.float64)).astype(np.longdouble)
            + f64_slack(op, x, axis))
    fin = np.isfinite(y1)
    np.testing.assert_array_equal(fin, np.isfinite(y2))
    diff = np.abs(y1[fin].astype(np.longdouble) - y2[fin])
    assert np.all(diff <= band[fin]), f"{what}: {y1[fin][np.argmax(diff - band[fin])]!r}"


OPS = {"softmax": csoftmax.softmax, "log_softmax": csoftmax.log_softmax,
       "logsumexp": csoftmax.logsumexp}


def run(op, x, axis=-1, **kw):
    """Call the csoftmax function `op`; logsumexp keeps axis semantics."""
    return OPS[op](x, axis=axis, **kw)


def fd_grad(f, x, h=1e-6):
    """Central finite differences of the scalar function f at float64 x."""
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        xp = x.copy()
        xm = x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


@contextlib.contextmanager
def fused_kernels(flag):
    """The one-exp AVX2 kernels on or off for a block (off: the planner
    avoids each op's ``_core.ONE_EXP_PATHS``)."""
    if flag:
        yield
    else:
        with _core.unfused():
            yield


# ===========================================================================
# The accuracy contract (README "Accuracy", docs/accuracy.md) and the helpers
# every contract test uses.
#
# Each output element must satisfy
#     |got - ref| <= ulps * ulp(ref) + kappa * cond
# with ulp() the spacing of the reference rounded to the result dtype
# (subnormal spacing below the normal range), ref an accurate float64
# (float32/float16 data) or long double (float64 data) reference of the SAME
# input, and cond the sum of the magnitudes of the terms that cancel in that
# element (None where nothing cancels: pure ULP bound).  kappa is float64
# accumulation error: 2^-36 for float32 results (n * 2^-53 for rows of up to
# 2^17 terms), 2^-44 for float64 results (measured <= 2^-47 at V = 32000).

KAPPA = {np.dtype(np.float16): 2.0 ** -36, np.dtype(np.float32): 2.0 ** -36,
         np.dtype(np.float64): 2.0 ** -44}

# (The float32 cross-entropy gradient with label smoothing or probability
# targets had kappa = 2^-22 until its kernels formed p_i W - w_i q'_i in
# float64 from a 2^-43-accurate p_i: csm_ce_soft_*; now the common kappa.)

# op -> {dtype: ulps}; the README table states the same figures.
CONTRACT = {
    "softmax":              {np.float32: 4, np.float64: 8, np.float16: 1},
    "log_softmax":          {np.float32: 4, np.float64: 8, np.float16: 1},
    "logsumexp":            {np.float32: 4, np.float64: 8, np.float16: 1},
    "cross_entropy":        {np.float32: 4, np.float64: 4, np.float16: 1},  # loss
    "cross_entropy_grad":   {np.float32: 4, np.float64: 4, np.float16: 1},
    "nll_loss":             {np.float32: 4, np.float64: 4, np.float16: 1},
    "softmax_backward":     {np.float32: 4, np.float64: 4, np.float16: 1},
    "log_softmax_backward": {np.float32: 4, np.float64: 4, np.float16: 1},
    "logsumexp_backward":   {np.float32: 4, np.float64: 8, np.float16: 1},
}


def bound(op, dtype):
    """(ulps, kappa) of `op` for results of `dtype`."""
    dt = np.dtype(dtype)
    return CONTRACT[op][dt.type], KAPPA[dt]


class Ref(np.ndarray):
    """A reference value (long double / float64 array) carrying `cond`, the
    magnitudes of the terms that cancel (None: nothing cancels), and
    `slack`, an absolute allowance of float64 results derived from the float64
    forward ops (f64_slack: the conditioning of exp in float64)."""
    cond = None
    slack = None
    kappa = None      # {dtype: kappa} overriding KAPPA (none at present)
    floor = None      # absolute allowance (any dtype; a {dtype type: array} dict
                      # to give it to some result dtypes only): subnormal
                      # intermediates, see ref_softplus / SIMD_SUBNORMAL_F32


def mkref(value, cond=None, slack=None, kappa=None):
    r = np.asarray(value).view(Ref)
    r.kappa = kappa
    r.cond = None if cond is None else np.asarray(cond)
    r.slack = None if slack is None else np.asarray(slack)
    return r


def ulp_of(want, dtype):
    """ULP of each reference value rounded to `dtype`; the smallest
    subnormal below the normal range, and for zero."""
    dtype = np.dtype(dtype)
    w = np.abs(np.asarray(want, dtype=work_dtype(dtype)))
    with np.errstate(over="ignore"):
        sp = np.spacing(w.astype(dtype)).astype(w.dtype)
    return np.where(np.isfinite(sp) & (sp > 0), sp, np.spacing(dtype.type(0)))


def err_ulps(got, want, dtype=None, kappa=0.0, cond=None, slack=None):
    """Per element: (|got - want| - kappa * cond - slack) / ulp(want), >= 0.
    Non-finite references must be matched exactly (inf where not)."""
    got = np.asarray(got)
    dtype = np.dtype(dtype or got.dtype)
    wd = work_dtype(dtype)
    g = got.astype(wd)
    w = np.asarray(want).astype(wd)
    fin = np.isfinite(w)
    same = (np.isnan(g) & np.isnan(w)) | (g == w)
    with np.errstate(all="ignore"):
        d = np.abs(g - w)
        if cond is not None:
            d = np.maximum(d - wd(kappa) * np.asarray(cond).astype(wd), 0)
        if slack is not None:
            d = np.maximum(d - np.asarray(slack).astype(wd), 0)
        e = np.where(fin, d / ulp_of(w, dtype), np.where(same, 0.0, np.inf))
    e = np.where(fin & ~np.isfinite(g), np.inf, e)
    return e.astype(np.float64)


def assert_within(actual, ref, ulps, cond=None, kappa=None, what=""):
    """Assert |actual - ref| <= ulps * ulp(ref) + kappa * cond element-wise
    (see CONTRACT); report the worst element.  `ulps` may be an op name of
    CONTRACT; `cond` defaults to ref.cond; kappa to KAPPA of actual's dtype."""
    actual = np.asarray(actual)
    dtype = actual.dtype
    if isinstance(ulps, str):
        ulps = CONTRACT[ulps][dtype.type]
    if cond is None:
        cond = getattr(ref, "cond", None)
    if kappa is None:
        kappa = getattr(ref, "kappa", None)
        kappa = KAPPA[dtype] if kappa is None else kappa.get(dtype, KAPPA[dtype])
    assert actual.shape == np.shape(ref), (what, actual.shape, np.shape(ref))
    slack = getattr(ref, "slack", None) if dtype == np.float64 else None
    floor = getattr(ref, "floor", None)
    if floor is not None:
        floor = floor.get(dtype.type) if isinstance(floor, dict) else floor
    if floor is not None:
        slack = floor if slack is None else np.asarray(slack) + floor
    e = err_ulps(actual, ref, dtype, kappa, cond, slack)
    if e.size:
        i = np.unravel_index(np.argmax(e), e.shape)
        r = np.asarray(ref)
        c = "" if cond is None else f", cond {float(np.asarray(cond)[i]):.3g}"
        assert e[i] <= ulps, (f"{what}: {e[i]:.3g} ULP > {ulps} at {i}: got {actual[i]!r}, "
                              f"want {float(r[i])!r}{c} (kappa {kappa:.3g})")


def _wide(a, dtype=None):
    a = np.asarray(a)
    return a.astype(work_dtype(dtype or a.dtype))


def ref_softmax_bwd(y, dy, axis=-1, dtype=None):
    """y (dy - sum y dy); cond y (|dy| + sum y |dy|)."""
    y, dy = _wide(y, dtype), _wide(dy, dtype)
    s = (y * dy).sum(axis, keepdims=True)
    c = np.abs(y) * (np.abs(dy) + np.abs(y * dy).sum(axis, keepdims=True))
    with np.errstate(invalid="ignore"):
        return mkref(y * (dy - s), c)


def ref_log_softmax_bwd(y, dy, axis=-1, dtype=None):
    """dy - exp(y) sum dy; cond |dy| + exp(y) sum |dy|."""
    y, dy = _wide(y, dtype), _wide(dy, dtype)
    e = np.exp(y)
    with np.errstate(invalid="ignore"):
        v = dy - e * dy.sum(axis, keepdims=True)
        c = np.abs(dy) + e * np.abs(dy).sum(axis, keepdims=True)
    return mkref(v, c)


def ref_logsumexp_bwd(x, g, axis=-1, temperature=1.0):
    """softmax(x) * g (g broadcast along axis); nothing cancels.  float64:
    slack = |g| x f64_slack of softmax (exp's conditioning in float64)."""
    x = np.asarray(x)
    p = ref("softmax", x, axis, temperature)
    gw = np.expand_dims(_wide(g, x.dtype), axis)
    sl = None
    if x.dtype == np.float64 and LONG_OK:
        sl = np.abs(gw) * f64_slack("softmax", x, axis, temperature)
    return mkref(p * gw, slack=sl)


def ref_ce(x, t, *, axis=-1, weight=None, ignore_index=-100, reduction="mean",
           label_smoothing=0.0, temperature=1.0, dtype=None):
    """(loss, grad) of cross_entropy as Ref values in the working dtype of
    `dtype` (default x's): long double for float64 data, float64 otherwise.

    log p from the accurate log_softmax reference (the argmax through
    log1p(rest)); 1 - p_i of a row's single maximum as rest / (1 + rest),
    so p - 1 keeps its relative accuracy.  grad_i = (p_i W - wq_i) s / T,
    W = sum_c w_c q'_c, computed as (W - wq_i) - W (1 - p_i) where q' is a
    one-hot (hard target, no smoothing).  cond: loss -- sum of |w q' log p|
    terms (they cancel only with negative weights); grad -- p_i |W| + |wq_i|.
    """
    x = np.asarray(x)
    dt = np.dtype(dtype or (x.dtype if x.dtype.kind == "f" else np.float64))
    wd = work_dtype(dt)
    ax = axis % x.ndim
    xm = np.moveaxis(x, ax, -1)
    lp = ref("log_softmax", xm, -1, temperature, wd=wd)
    p = np.exp(lp)
    s = wd(np.float64(1.0) / np.float64(temperature))
    x2 = xm.reshape(-1, xm.shape[-1]).astype(wd)
    m, d, _ = _rows_state(x2, s)
    eq = x2 == m
    cnt = eq.sum(1, keepdims=True)
    with np.errstate(all="ignore"):
        rest = np.where(eq, 0, np.exp(d)).sum(1, keepdims=True)
        one_m_p = np.where(eq & (cnt == 1), rest / (1 + rest), 1 - p.reshape(x2.shape))
    one_m_p = one_m_p.reshape(p.shape)
    C = p.shape[-1]
    w = np.ones(C, wd) if weight is None else np.asarray(weight).astype(wd)
    eps = wd(label_smoothing)
    t = np.asarray(t)
    hard = t.shape != x.shape
    if not hard:
        q = np.moveaxis(t.astype(wd), ax, -1) * (1 - eps) + eps / C
        keep = np.ones(p.shape[:-1], bool)
        denom = wd(keep.size)
    else:
        keep = t != ignore_index
        tc = np.where(keep, t, 0)
        q = (1 - eps) * (np.arange(C) == tc[..., None]) + eps / C
        denom = w[tc][keep].sum()
    wq = w * q
    W = wq.sum(-1, keepdims=True)
    with np.errstate(all="ignore"):
        terms = wq * lp
        li = np.where(keep, -terms.sum(-1), 0)
        lc = np.where(keep, np.abs(terms).sum(-1), 0)
        if hard and eps == 0:
            onehot = np.arange(C) == tc[..., None]
            dz = np.where(onehot, -W * one_m_p, p * W)
        else:
            dz = p * W - wq
        dz = np.where(keep[..., None], dz, 0)
        gc = np.where(keep[..., None], p * np.abs(W) + np.abs(wq), 0)
        if reduction == "none":
            loss, lcond, k = li, lc, wd(1)
        elif reduction == "sum":
            loss, lcond, k = li.sum(), lc.sum(), wd(1)
        else:
            loss, lcond, k = li.sum() / denom, lc.sum() / np.abs(denom), 1 / denom
        sc = k * s
    grad = np.moveaxis(dz * sc, -1, ax)
    gcond = np.moveaxis(gc * np.abs(sc), -1, ax)
    # weights of both signs: the reduced loss may cancel
    return mkref(loss, lcond), mkref(grad, gcond)


def ref_nll(lp, t, *, axis=-1, weight=None, ignore_index=-100, reduction="mean", dtype=None):
    """nll_loss of log-probabilities `lp` (Ref, cond = sum of |terms|)."""
    lp = np.asarray(lp)
    dt = np.dtype(dtype or lp.dtype)
    wd = work_dtype(dt)
    l2 = np.moveaxis(lp.astype(wd), axis, -1)
    C = l2.shape[-1]
    w = np.ones(C, wd) if weight is None else np.asarray(weight).astype(wd)
    t = np.asarray(t)
    keep = t != ignore_index
    tc = np.where(keep, t, 0)
    with np.errstate(all="ignore"):
        li = np.where(keep, -w[tc] * np.take_along_axis(l2, tc[..., None], -1)[..., 0], 0)
        if reduction == "none":
            return mkref(li, np.abs(li))
        if reduction == "sum":
            return mkref(li.sum(), np.abs(li).sum())
        den = w[tc][keep].sum()
        return mkref(li.sum() / den, np.abs(li).sum() / np.abs(den))


# ---------------------------------------------------------------------------
# References of the remaining functions (kl_div, distillation_loss, the
# margin family, softplus, soft_hinge, smooth_max, weighted logsumexp).
# Same conventions: working dtype wider than the result, `cond` the
# magnitudes of the terms that cancel -- including, where an exp/log/sqrt
# argument is formed in float64 by the code, the magnitudes of that
# argument's terms times the function's sensitivity (docs/accuracy.md).

CONTRACT.update({
    "kl_div":                 {np.float32: 4, np.float64: 4},
    "distillation_loss":      {np.float32: 4, np.float64: 4},
    "distillation_grad":      {np.float32: 4, np.float64: 4},
    "margin_logits":          {np.float32: 4, np.float64: 4},
    "margin_cross_entropy":   {np.float32: 4, np.float64: 4},
    "margin_ce_grad":         {np.float32: 4, np.float64: 4},
    "softplus":               {np.float32: 4, np.float64: 4},
    "soft_hinge":             {np.float32: 4, np.float64: 4},
    "soft_hinge_grad":        {np.float32: 4, np.float64: 4},
    "smooth_max":             {np.float32: 4, np.float64: 8},
    "logsumexp_b":            {np.float32: 4, np.float64: 4},
})

# distillation_loss reads log S of the float32 row reductions, which is only
# float32-accurate: the float32 loss / gradient get a wider kappa (see
# docs/accuracy.md; a kernel change would be needed for the common 2^-36).
KAPPA_DISTILL_F32 = 2.0 ** -22

# The float32 SIMD softmax write (alpha != 1) used by the margin_cross_entropy
# and soft_hinge gradients is not accurate below float32's normal range
# (measured 2^-135.2 absolute at alpha = 64): those elements get an absolute
# allowance of the smallest normal, 2^-126 (flush-to-zero accuracy).
SIMD_SUBNORMAL_F32 = 2.0 ** -126


def _subnormal_floor(grad):
    return {np.float32: np.where(np.abs(grad) < SIMD_SUBNORMAL_F32, SIMD_SUBNORMAL_F32, 0)}


def _reduce_ref(v, c, reduction, count):
    """(value, cond) of per-row / per-element losses `v` (cond `c`)."""
    if reduction == "none":
        return mkref(v, c)
    tot, ct = v.sum(), c.sum()
    if reduction == "sum":
        return mkref(tot, ct)
    with np.errstate(all="ignore"):
        return mkref(tot / count, ct / count)


def ref_kl(log_q, p, *, log_target=False, reduction="mean", dtype=None):
    """kl_div: terms xlogy(p, p) - p log q (exp(lp) (lp - log q)); cond the
    magnitudes of both products (they cancel where q ~ p)."""
    a, b = np.asarray(log_q), np.asarray(p)
    dt = np.dtype(dtype or np.result_type(a.dtype, b.dtype))
    wd = work_dtype(dt)
    a, b = np.broadcast_arrays(a.astype(wd), b.astype(wd))
    with np.errstate(all="ignore"):
        if log_target:
            e = np.exp(b)
            v, c = e * (b - a), e * (np.abs(b) + np.abs(a))
        else:
            lg = np.where(b == 0, 0, b * np.log(np.where(b == 0, 1, b)))
            v = lg - b * a
            c = np.abs(lg) + np.abs(b * a)
    n0 = a.shape[0] if a.ndim else 1
    count = {"mean": a.size, "batchmean": n0}.get(reduction, 1)
    return _reduce_ref(v, c, reduction, wd(count) if count else wd(np.nan))


def ref_distill(s, t, *, temperature=1.0, axis=-1, reduction="batchmean", dtype=None):
    """(loss, grad) of distillation_loss: loss_r = T^2 sum p^t (lp^t - lp^s),
    cond T^2 sum p^t (|lp^t| + |lp^s|); grad = g (p^s - p^t),
    cond |g| (p^s (1 + |lp^s|) + p^t (1 + |lp^t|)) (the terms and their exp
    arguments)."""
    s, t = np.asarray(s), np.asarray(t)
    dt = np.dtype(dtype or np.result_type(s.dtype, t.dtype))
    wd = work_dtype(dt)
    T = wd(temperature)
    lps = np.moveaxis(ref("log_softmax", s.astype(dt), axis, temperature, wd=wd), axis, -1)
    lpt = np.moveaxis(ref("log_softmax", t.astype(dt), axis, temperature, wd=wd), axis, -1)
    ps, pt = np.exp(lps), np.exp(lpt)
    with np.errstate(all="ignore"):
        v = T * T * np.where(pt == 0, 0, pt * (lpt - lps)).sum(-1)
        c = T * T * np.where(pt == 0, 0, pt * (np.abs(lpt) + np.abs(lps))).sum(-1)
    rows, n = v.size, lps.shape[-1]
    count = {"batchmean": rows, "mean": rows * n}.get(reduction, 1)
    g = T / wd(count) if count else wd(0)
    loss = _reduce_ref(v, c, reduction, wd(count))
    with np.errstate(all="ignore"):
        gv = g * (ps - pt)
        gc = g * (ps * (1 + np.abs(lps)) + pt * (1 + np.abs(lpt)))
    kap = {np.dtype(np.float32): KAPPA_DISTILL_F32}
    loss.kappa = kap
    return loss, mkref(np.moveaxis(gv, -1, axis), np.moveaxis(gc, -1, axis), kappa=kap)


def _margin_f(cy, kind, m, easy, wd):
    """(f, cond_f, f', cond_f') of the target cosine (working dtype)."""
    cm, sm = np.cos(wd(m)), np.sin(wd(m))
    th = -math.cos(m)                    # the branch point cos(pi - m) = -cos m (float64)
    one = np.ones_like(cy)
    if kind == "normface":
        return cy, np.zeros_like(cy), one, np.zeros_like(cy)
    if kind == "cosface":
        f, cf = cy - wd(m), np.abs(cy) + wd(m)
        fd, cfd = one, np.zeros_like(cy)
    else:
        with np.errstate(all="ignore"):
            st = np.sqrt(np.maximum(1 - cy * cy, 0))
            amp = np.where(st > 0, cy * cy / st, 0)      # 1 - c^2 rounded, then sqrt
            arc = cy * cm - st * sm
            carc = np.abs(cy * cm) + sm * (st + amp)
            darc = cm + sm * cy / st if sm != 0 else cm * one
            cdarc = np.where(st > 0, sm * np.abs(cy) / st * (1 + amp / st), 0)
        ok = (cy > 0) if easy else (cy >= th)
        fb = cy - wd(m) * sm
        f = np.where(ok, arc, fb)
        cf = np.where(ok, carc, np.abs(cy) + wd(m) * sm)
        fd = np.where(ok, darc, 1)
        cfd = np.where(ok, cdarc, 0)
    if easy:
        keep = ~(cy > 0)
        f, cf = np.where(keep, cy, f), np.where(keep, 0, cf)
        fd, cfd = np.where(keep, 1, fd), np.where(keep, 0, cfd)
    return f, cf, fd, cfd


def _margin_rows(c, t, axis, dt):
    c = np.asarray(c)
    wd = work_dtype(dt)
    cm = np.moveaxis(c.astype(dt).astype(wd), axis, -1)
    t = np.asarray(t)
    cy = np.take_along_axis(cm, t[..., None], -1)[..., 0]
    return cm, t, cy, wd


def ref_margin_logits(c, t, *, scale=64.0, margin=0.0, kind="normface", easy_margin=False,
                      axis=-1, dtype=None):
    """s c_j, and s f(c_y) at the target; cond s * cond_f there (cosface:
    |c| + m; arcface: |c cos m| + sin m (sqrt(1-c^2) + c^2/sqrt(1-c^2)),
    the last term the rounding of 1 - c^2 through the square root)."""
    dt = np.dtype(dtype or np.asarray(c).dtype)
    cm, t, cy, wd = _margin_rows(c, t, axis, dt)
    s = wd(scale)
    f, cf, _, _ = _margin_f(cy, kind, margin, easy_margin, wd)
    z = s * cm
    cond = np.zeros_like(z)
    np.put_along_axis(z, t[..., None], (s * f)[..., None], -1)
    np.put_along_axis(cond, t[..., None], (s * cf)[..., None], -1)
    return mkref(np.moveaxis(z, -1, axis), np.moveaxis(cond, -1, axis))


def _lse_without(z, t, wd):
    """(M, L, q, dev) of the row without its target: max, log sum exp(z - M)
    (L = log(count) + log1p(rest/count)), the softmax q over the others, and
    sum q |z - M| (the exp arguments' magnitudes)."""
    o = z.copy()
    np.put_along_axis(o, t[..., None], -np.inf, -1)
    n = o.shape[-1]
    o2 = o.reshape(-1, n)
    with np.errstate(all="ignore"):
        M, d, L = _rows_state(o2, wd(1))
        q = np.exp(d - L)
        q = np.where(np.isfinite(M), q, 0)
        dev = np.where(q > 0, q * np.abs(d), 0).sum(1, keepdims=True)
    sh = z.shape[:-1]
    return M.reshape(sh), L.reshape(sh), q.reshape(z.shape), dev.reshape(sh)


def _sigmoid(u):
    with np.errstate(all="ignore"):
        return np.exp(-np.logaddexp(0, -u))


def ref_margin_ce(c, t, *, scale=64.0, margin=0.0, kind="normface", easy_margin=False,
                  axis=-1, reduction="mean", dtype=None):
    """(loss, grad wrt cos) of margin_cross_entropy.  loss = softplus(lq),
    lq = LSE_{j!=y}(z) - z_y; cond sigma(lq) (|M| + |L| + |z_y| + s cond_f +
    sum q |z - M|).  grad: g s p_j (j != y), g s (p_y - 1) f'(c_y);
    cond |grad_j| (|z_j - M| + |M| + |z_y| + |lq| + 1 + s cond_f) resp.
    |grad_y| (cond_loss / sigma) + g s (1 - p_y) cond_f'."""
    dt = np.dtype(dtype or np.asarray(c).dtype)
    cm, t, cy, wd = _margin_rows(c, t, axis, dt)
    s = wd(scale)
    f, cf, fd, cfd = _margin_f(cy, kind, margin, easy_margin, wd)
    z = s * cm
    zy = s * f
    np.put_along_axis(z, t[..., None], zy[..., None], -1)
    M, L, q, dev = _lse_without(z, t, wd)
    with np.errstate(all="ignore"):
        lq = np.where(np.isfinite(M), M + L - zy, -np.inf)
        loss = np.logaddexp(wd(0), lq)
        sg = _sigmoid(lq)
        Mf = np.where(np.isfinite(M), M, 0)
        B = np.abs(Mf) + np.abs(L * np.isfinite(M)) + np.abs(zy) + s * cf + dev
        B = np.where(np.isfinite(M), B, 0)
        lcond = sg * B
        rows = loss.size
        count = rows if reduction == "mean" else 1
        g = wd(1) / wd(count) if count else wd(0)
        omp = -np.expm1(-loss)                      # 1 - p_y
        p = q * omp[..., None]                      # p_j = q_j (1 - p_y), j != y
        grad = g * s * p
        gcond = np.abs(grad) * (np.abs(z - Mf[..., None]) + np.abs(Mf)[..., None]
                                + np.abs(zy)[..., None] + np.abs(lq)[..., None] + 1
                                + (s * cf)[..., None])
        gy = -g * s * omp * fd
        gyc = np.abs(gy) * B + g * s * omp * cfd
    np.put_along_axis(grad, t[..., None], gy[..., None], -1)
    np.put_along_axis(gcond, t[..., None], gyc[..., None], -1)
    gr = mkref(np.moveaxis(grad, -1, axis), np.moveaxis(gcond, -1, axis))
    gr.floor = _subnormal_floor(gr)
    return _reduce_ref(loss, lcond, reduction, wd(count)), gr


def ref_softplus(x, *, beta=1.0, threshold=20.0, dtype=None):
    """x where fl64(beta x) > threshold (the code's test), else
    log(1 + e^{beta x}) / beta; cond sigma(beta x) |x| where beta != 1 (the
    rounding of beta x, float64 data only)."""
    x = np.asarray(x)
    dt = np.dtype(dtype or x.dtype)
    wd = work_dtype(dt)
    xw = x.astype(dt).astype(wd)
    bx64 = np.float64(beta) * x.astype(dt).astype(np.float64)
    with np.errstate(all="ignore"):
        v = np.where(bx64 > threshold, xw, np.logaddexp(wd(0), wd(beta) * xw) / wd(beta))
        c = None if beta == 1.0 else np.where(bx64 > threshold, 0, _sigmoid(wd(beta) * xw) * np.abs(xw))
    r = mkref(v, c)
    # e^{beta x} below float64's normal range: two of its spacings (libm), / beta
    r.floor = np.where(bx64 < -708.0, wd(2.0 ** -1073) / wd(beta), 0)
    return r


def ref_soft_hinge(x, t, *, margin=0.0, axis=-1, reduction="mean", dtype=None):
    """(loss, grad) of soft_hinge: u = LSE_{j!=y} x - x_y + m, loss
    softplus(u), cond sigma(u) (|M| + |L| + |x_y| + |m| + sum q |x - M|);
    grad sigma(u) q_j g (j != y), -sigma(u) g at y; cond |grad_j| (|x_j - M|
    + |M| + |L| + |x_y| + |m| + 1), |grad_y| (|M| + |L| + |x_y| + |m| +
    sum q |x - M|)."""
    x = np.asarray(x)
    dt = np.dtype(dtype or x.dtype)
    wd = work_dtype(dt)
    xm = np.moveaxis(x.astype(dt).astype(wd), axis, -1)
    t = np.asarray(t)
    xy = np.take_along_axis(xm, t[..., None], -1)[..., 0]
    M, L, q, dev = _lse_without(xm, t, wd)
    m = wd(margin)
    with np.errstate(all="ignore"):
        fin = np.isfinite(M)
        u = np.where(fin, M + L - xy + m, -np.inf)
        loss = np.logaddexp(wd(0), u)
        sg = _sigmoid(u)
        Mf = np.where(fin, M, 0)
        B = np.where(fin, np.abs(Mf) + np.abs(np.where(fin, L, 0)) + np.abs(xy) + abs(m) + dev, 0)
        rows = loss.size
        count = rows if reduction == "mean" else 1
        g = wd(1) / wd(count) if count else wd(0)
        grad = g * sg[..., None] * q
        gcond = np.abs(grad) * (np.abs(xm - Mf[..., None]) + (B - dev)[..., None] + 1)
        gy = -g * sg
        gyc = np.abs(gy) * B
    np.put_along_axis(grad, t[..., None], gy[..., None], -1)
    np.put_along_axis(gcond, t[..., None], gyc[..., None], -1)
    gr = mkref(np.moveaxis(grad, -1, axis), np.moveaxis(gcond, -1, axis))
    gr.floor = _subnormal_floor(gr)
    return _reduce_ref(loss, sg * B, reduction, wd(count)), gr


def ref_smooth_max(x, axis=-1, sharpness=1.0, dtype=None):
    """max + L / k with L = log sum exp(k (x - max)) (k in the working
    dtype).  float64: slack 8 ulp(max(|max|, L/k)) + 4 sqrt(n) u / k, as
    logsumexp's f64_slack."""
    x = np.asarray(x)
    dt = np.dtype(dtype or x.dtype)
    wd = work_dtype(dt)
    k = wd(sharpness)
    x2, perm, tshape, kept = _to_rows(x.astype(dt).astype(wd), axis)
    m, d, L = _rows_state(x2, k)
    with np.errstate(all="ignore"):
        v = (m + L / k).reshape(kept)
    sl = None
    if dt == np.float64 and LONG_OK:
        with np.errstate(all="ignore"):
            big = np.maximum(np.where(np.isfinite(m), np.abs(m), 0),
                             np.where(np.isfinite(L), np.abs(L / k), 0))
            sl = (8 * np.spacing(big.astype(np.float64)).astype(wd)
                  + wd(4 * np.sqrt(max(x2.shape[1], 1)) * EPS64) / k).reshape(kept)
    return mkref(v, slack=sl)


def ref_logsumexp_b(x, b, axis=None, dtype=None):
    """(log|S|, sign S), S = sum b e^x over `axis` (b == 0 entries ignored).
    cond on log|S|: |m| + |log|S|| + sum |b| e^{x-m} (1 + |x - m|) / |S|,
    m the max over b != 0 (the cancellation of the weights, and of m + log)."""
    x, b = np.broadcast_arrays(np.asarray(x), np.asarray(b))
    dt = np.dtype(dtype or np.result_type(x.dtype, b.dtype))
    wd = work_dtype(dt)
    xw = np.where(b != 0, x.astype(wd), -np.inf)
    x2, perm, tshape, kept = _to_rows(xw, axis)
    b2 = _to_rows(b.astype(wd), axis)[0]
    with np.errstate(all="ignore"):
        m = x2.max(1, keepdims=True)
        mm = np.where(np.isfinite(m), m, 0)
        e = np.where(b2 != 0, np.exp(x2 - mm), 0)
        S = (b2 * e).sum(1, keepdims=True)
        A = (np.abs(b2) * e * (1 + np.where(b2 != 0, np.abs(x2 - mm), 0))).sum(1, keepdims=True)
        v = mm + np.log(np.abs(S))
        c = np.abs(mm) + np.abs(np.log(np.abs(S))) + A / np.abs(S)
    return mkref(v.reshape(kept), c.reshape(kept)), np.sign(S).reshape(kept)
