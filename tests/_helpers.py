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
    """The one-exp AVX2 kernels on or off (``_core._use_fused``) for a block."""
    prev = _core._use_fused(flag)
    try:
        yield
    finally:
        _core._use_fused(prev)
