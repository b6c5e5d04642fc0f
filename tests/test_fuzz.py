"""Property-based fuzzing of every public numeric function (hypothesis).

Inputs range over shapes (0-size and length-1 axes included), memory
layouts (steps, negative strides, transposes; the padding between the
elements is NaN, so reading a wrong element shows), axes, float32/float64,
both kernel tables, 1 and 2 threads, and extreme values (+-1e38, +-3.4e38,
+-inf, NaN, denormals, signed zeros).

Each test checks agreement with a reference computed in a wider type (see
``_helpers``: float64 for float32 data, longdouble for float64 data) within
a stated bound, and invariants (softmax >= 0 and sums to 1, shift
invariance, log_softmax <= 0, max <= LSE <= max + log n, CE >= 0, rows of
the hard-label CE gradient sum to 0, ...).

Budget: the default hypothesis profile (conftest.py, 40 examples a test)
keeps this file well under a minute; ``CSOFTMAX_FUZZ=long`` selects the
long profile (7500 examples a test, > 100,000 in all; see conftest.py).
"""
import contextlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import csoftmax
from csoftmax import _core
import _helpers as H
from _helpers import BOUND, LONG_OK, assert_ulp, check, f64_slack, ref

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
settings_ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])

ISAS = _core.available_isas()
DTYPES = st.sampled_from([np.float32, np.float64])
INF = float("inf")
NAN = float("nan")
SPECIAL = [1e38, -1e38, 3.4e38, -3.4e38, INF, -INF, NAN, 1e-40, -1e-40, 1e-45, 0.0, -0.0]
# float64 values stay within +-8e307 so that x - max cannot overflow: the
# kernels form x - max before scaling by 1/T (documented "x - max exact"), so
# log_softmax([1.8e308, -1e300], T=2) is -inf where -9e307 is representable
# -- a known limitation at the very top of the float64 range.
SPECIAL64 = [1e300, -1e300, 8e307, -8e307, 5e-324, -5e-324, 1e-310]
FINITE_BIG = [1e38, -1e38, 3.4e38, -3.4e38, 1e-40, -1e-40, 0.0, -0.0]


def eps(dt):
    return float(np.finfo(dt).eps)


def wd(dt):
    """Reference working dtype for results of dtype dt."""
    return np.longdouble if (np.dtype(dt) == np.float64 and LONG_OK) else np.float64


@contextlib.contextmanager
def machine(isa, threads):
    prev = _core._use_isa(isa)
    pt = csoftmax.get_num_threads()
    csoftmax.set_num_threads(threads)
    try:
        yield
    finally:
        _core._use_isa(prev)
        csoftmax.set_num_threads(pt)


MACHINE = st.tuples(st.sampled_from(ISAS), st.sampled_from([1, 2]))


def elements(dt, kind):
    """kind: 'mild' (|x| <= 80), 'finite' (adds +-1e38, denormals),
    'any' (adds inf, nan)."""
    mild = st.floats(-80, 80, width=32)
    if kind == "mild":
        return mild
    if kind == "big":      # finite, and so that losses (<= 2 max|x| / T) stay finite
        return st.one_of(mild, st.sampled_from([1e37, -1e37, 1e-40, -1e-40, 0.0, -0.0]),
                         st.floats(-9.999999933815813e+36, 9.999999933815813e+36, width=32))
    sp = FINITE_BIG + ([1e300, -1e300, 5e-324, 1e-310] if dt == np.float64 else [])
    if kind == "any":
        sp = SPECIAL + (SPECIAL64 if dt == np.float64 else [])
    wide = (st.floats(width=32, allow_nan=kind == "any", allow_infinity=kind == "any")
            if dt == np.float32 else st.floats(-8e307, 8e307))
    return st.one_of(mild, st.sampled_from(sp), wide)


@st.composite
def strided(draw, x):
    """A view with the values of x: steps, negative strides, transposes;
    the skipped memory holds NaN."""
    steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in x.shape]
    perm = draw(st.permutations(range(x.ndim))) if draw(st.booleans()) else list(range(x.ndim))
    # build so that after the transpose the view equals x
    inv = np.argsort(perm)
    base_shape = [x.shape[i] for i in inv]
    big = np.full([s * abs(k) for s, k in zip(base_shape, steps)], np.nan, dtype=x.dtype)
    v = big[tuple(slice(None, None, k) for k in steps)]
    v = v.transpose(perm)
    v[...] = x
    return v


@st.composite
def arrays(draw, kind=None, min_side=0, max_side=9, max_dims=3, dtype=None, min_dims=1):
    dt = draw(DTYPES) if dtype is None else dtype
    kind = kind or draw(st.sampled_from(["mild", "mild", "finite", "any"]))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                                  max_side=max_side))
    x = draw(hnp.arrays(dt, shape, elements=elements(dt, kind), fill=st.nothing()))
    if draw(st.booleans()):
        x = draw(strided(x))
    return x


def axis_arg(draw, ndim, allow_multi=True):
    choices = [st.integers(-ndim, ndim - 1)]
    if allow_multi:
        choices += [st.none(), st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                        unique=True).map(tuple)]
    return draw(st.one_of(*choices))


def red_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(a % ndim for a in axis)
    return (axis % ndim,)


def sentinel_like(draw, shape, dt):
    """An `out` array: C order or a strided view of a NaN-filled buffer."""
    if draw(st.booleans()):
        return np.full(shape, 7.0, dt)
    return draw(strided(np.full(shape, 7.0, dt)))


# ---------------------------------------------------------------------------
# softmax, log_softmax, logsumexp: reference agreement (helpers.check bound)

TEMPS = st.sampled_from([1.0, 1.0, 0.5, 2.0, 3.0, 0.1])


@settings_
@given(data=st.data(), op=st.sampled_from(["softmax", "log_softmax", "logsumexp"]))
def test_core_ops_match_reference(data, op):
    draw = data.draw
    x = draw(arrays())
    axis = axis_arg(draw, x.ndim)
    isa, thr = draw(MACHINE)
    T = draw(TEMPS) if op != "logsumexp" else 1.0
    keep = op == "logsumexp" and draw(st.booleans())
    use_out = op != "logsumexp" and draw(st.booleans())
    x0 = x.copy()
    with machine(isa, thr):
        if op == "logsumexp":
            got = csoftmax.logsumexp(x, axis=axis, keepdims=keep)
        else:
            f = getattr(csoftmax, op)
            got = f(x, axis=axis, temperature=T)
            if use_out:
                out = sentinel_like(draw, x.shape, x.dtype)
                r = f(x, axis=axis, temperature=T, out=out)
                assert r is out
                np.testing.assert_array_equal(out, got)   # same bits with or without out
    np.testing.assert_array_equal(x, x0)                  # input untouched
    got = np.asarray(got)
    assert got.dtype == x.dtype
    axes = red_axes(axis, x.ndim)
    kept = [s for i, s in enumerate(x.shape) if i not in axes]
    if op == "logsumexp":
        shape = [1 if i in axes else s for i, s in enumerate(x.shape)] if keep else kept
        assert got.shape == tuple(shape)
        got = got.reshape(kept)
    else:
        assert got.shape == x.shape
    if x.size == 0:
        if op == "logsumexp" and got.size:       # empty reduction: LSE = -inf
            assert np.all(got == -np.inf)
        return
    check_rounded(op, got, x, axis, T, what=f"{op} isa={isa} threads={thr}")


def check_rounded(op, got, x, axis, T, what=""):
    """helpers.check, except where the exact result overflows the result
    dtype (log_softmax of [0, 3.4e38] at T = 0.5 is -6.8e38): there the
    correctly rounded result, +-inf, is required."""
    want = ref(op, x, axis, T)
    with np.errstate(over="ignore"):
        ov = np.isfinite(want) & ~np.isfinite(want.astype(got.dtype))
    if not ov.any():
        check(op, got, x, axis=axis, temperature=T, what=what)
        return
    np.testing.assert_array_equal(got[ov], want[ov].astype(got.dtype))
    g = got.astype(want.dtype)
    slack = f64_slack(op, x, axis, T) if got.dtype == np.float64 and LONG_OK else 0
    with np.errstate(invalid="ignore"):
        adj = np.where(np.isfinite(want) & np.isfinite(g),
                       want + np.sign(g - want) * np.maximum(np.abs(g - want) - slack, 0), g)
    assert_ulp(adj[~ov].astype(got.dtype), want[~ov], what=what)


# ---------------------------------------------------------------------------
# invariants

@settings_
@given(data=st.data())
def test_softmax_invariants(data):
    draw = data.draw
    x = draw(arrays(min_side=1, kind=draw(st.sampled_from(["mild", "finite"]))))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    isa, thr = draw(MACHINE)
    with machine(isa, thr):
        y = csoftmax.softmax(x, axis=axis)
        ly = csoftmax.log_softmax(x, axis=axis)
        lse = csoftmax.logsumexp(x, axis=axis)
    assert np.all(y >= 0) and np.all(y <= 1)
    # every entry within BOUND ULP, so the sum is within BOUND ulps of its terms
    s = y.astype(np.float64).sum(axis=axis)
    tol = (BOUND[y.dtype] * np.spacing(y).astype(np.float64).sum(axis=axis)
           + 2 * eps(np.float64) * y.shape[axis])
    assert np.all(np.abs(s - 1) <= tol), np.max(np.abs(s - 1) - tol)
    assert np.all(ly <= 0)
    mx = x.max(axis=axis)
    assert np.all(lse >= mx)
    n = x.shape[axis]
    slack = BOUND[x.dtype] * np.spacing(np.abs(lse).astype(x.dtype))
    with np.errstate(over="ignore"):
        assert np.all(lse.astype(np.float64) <= mx.astype(np.float64) + math.log(n) + slack)


@settings_
@given(data=st.data(), c=st.integers(-1024, 1024))
def test_shift_invariance(data, c):
    """softmax(x + c) = softmax(x), log_softmax too, LSE(x + c) = LSE(x) + c,
    for a shift c that is exact: x on a 1/64 grid with |x| <= 2^16 and c an
    integer, so x + c is exact in float32."""
    draw = data.draw
    x = draw(arrays(kind="mild", min_side=1))
    x = (np.round(x * 64) / 64 * draw(st.sampled_from([1, 16, 512]))).astype(x.dtype)
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    isa, thr = draw(MACHINE)
    xc = x + x.dtype.type(c)
    assert np.array_equal(xc - x.dtype.type(c), x)
    with machine(isa, thr):
        for op in ("softmax", "log_softmax"):
            f = getattr(csoftmax, op)
            y0, y1 = f(x, axis=axis), f(xc, axis=axis)
            # both are within the bound of the same exact values
            check(op, y0, x, axis=axis)
            check(op, y1, x, axis=axis, what=f"{op}(x + {c})")
        l0 = csoftmax.logsumexp(x, axis=axis).astype(np.float64)
        l1 = csoftmax.logsumexp(xc, axis=axis).astype(np.float64)
    tol = 2 * BOUND[x.dtype] * np.spacing(np.maximum(np.abs(l0), np.abs(l1)).astype(x.dtype))
    assert np.all(np.abs((l1 - c) - l0) <= tol + 4 * eps(x.dtype) * abs(c))


@settings_
@given(data=st.data())
def test_smooth_max(data):
    draw = data.draw
    x = draw(arrays(kind="mild", min_side=1))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    k = draw(st.sampled_from([0.25, 1.0, 4.0, 64.0]))        # powers of two: k*x exact
    keep = draw(st.booleans())
    r = csoftmax.smooth_max(x, axis=axis, sharpness=k, keepdims=keep)
    r = np.asarray(r, dtype=np.float64).reshape(np.delete(x.shape, axis % x.ndim))
    mx = x.max(axis=axis).astype(np.float64)
    n = x.shape[axis]
    # k*x in the reference's working dtype: k*x is exact there, but not in
    # float32 (1e-45 * 0.25 underflows to 0, while smooth_max([1e-45],
    # sharpness=0.25) is correctly 1.4e-45)
    W = wd(x.dtype)
    want = ref("logsumexp", x.astype(W) * W(k), axis=axis, wd=W).astype(np.float64) / k
    tol = 4 * eps(x.dtype) * (np.abs(want) + math.log(n) / k) + 1e-300
    assert np.all(np.abs(r - want) <= tol)
    assert np.all(r >= mx - tol) and np.all(r <= mx + math.log(n) / k + tol)


@settings_
@given(data=st.data())
def test_logsumexp_weighted(data):
    """b >= 0 weights against the float64 / long double reference
    (_helpers.ref_logsumexp_b), per element within the contract."""
    draw = data.draw
    x = draw(arrays(kind="mild", min_side=1))
    # weights in {0} u [1/4, 4]; a tiny weight on the row max loses accuracy,
    # see test_weighted_lse_tiny_weight_on_max
    b = draw(hnp.arrays(np.float64, x.shape, elements=st.just(0.0) | st.floats(0.25, 4)))
    axis = axis_arg(draw, x.ndim)
    r, sg = csoftmax.logsumexp(x, axis=axis, b=b, return_sign=True)
    want, wsg = H.ref_logsumexp_b(x, b, axis=axis)
    np.testing.assert_array_equal(np.asarray(sg), wsg)
    # the contract: 4 ULP + kappa (|m| + |log S| + sum |b| e^{x-m} (1 + |x-m|) / |S|)
    H.assert_within(np.asarray(r), want, "logsumexp_b")


def test_weighted_lse_tiny_weight_on_max():
    """Regression: the max element's weight was split off even when tiny, and
    log(smax) + log1p(srest/smax) cancelled (1e-13 absolute error)."""
    x = np.array([0.0, 1.0])
    b = np.array([1.5, 1e-202])
    want = np.log(1.5 + 1e-202 * np.e)
    assert abs(float(csoftmax.logsumexp(x, b=b)) - want) <= 2 * np.spacing(want)


# ---------------------------------------------------------------------------
# cross_entropy, nll_loss

@st.composite
def ce_case(draw, prob=False):
    x = draw(arrays(kind=draw(st.sampled_from(["mild", "mild", "big"])), min_side=1,
                    max_side=8))
    ax = draw(st.integers(-x.ndim, x.ndim - 1))
    C = x.shape[ax]
    tshape = x.shape[:ax % x.ndim] + x.shape[ax % x.ndim + 1:]
    if prob:
        q = draw(hnp.arrays(x.dtype, x.shape, elements=st.floats(0, 1, width=32)))
        q = q / np.maximum(q.sum(axis=ax, keepdims=True), 1)   # sub-stochastic allowed
        t = q.astype(x.dtype)
    else:
        t = draw(hnp.arrays(np.int64, tshape, elements=st.one_of(
            st.integers(0, C - 1), st.just(-100))))
    # weights in {0} u [1e-3, 4]: subnormal weights give NaN gradients, see
    # test_ce_subnormal_weight_gradient
    w = draw(st.none() | hnp.arrays(np.float64, (C,), elements=st.just(0.0) | st.floats(1e-3, 4)))
    eps_ = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]))
    T = draw(st.sampled_from([1.0, 1.0, 0.5, 4.0]))
    red = draw(st.sampled_from(["none", "mean", "sum"]))
    return x, ax, t, w, eps_, T, red


def ce_reference(x, ax, t, w, eps_, T, prob):
    """(per-sample losses, per-sample |terms| sum, gradient of the loss sum
    before the reduction scale, per-element gradient scale), all in the
    reference working dtype, class axis moved last."""
    W = wd(x.dtype)
    lp = np.moveaxis(ref("log_softmax", x, axis=ax, temperature=T), ax, -1).astype(W)
    C = lp.shape[-1]
    wv = np.ones(C, W) if w is None else w.astype(W)
    if prob:
        q = np.moveaxis(t, ax, -1).astype(W)
        keep = np.ones(q.shape[:-1], bool)
    else:
        keep = t != -100
        q = np.zeros(lp.shape, W)
        idx = np.where(keep, t, 0)
        np.put_along_axis(q, idx[..., None], 1, axis=-1)
        q = q * keep[..., None]
    qs = (1 - W(eps_)) * q + W(eps_) / C * keep[..., None]
    terms = -wv * qs * lp
    with np.errstate(invalid="ignore"):
        terms = np.where(qs * wv == 0, 0, terms)
    loss = terms.sum(-1)
    p = np.exp(lp)
    g = p * (wv * qs).sum(-1, keepdims=True) - wv * qs
    gscale = p * (wv * qs).sum(-1, keepdims=True) + wv * qs
    if prob:
        denom = np.prod(q.shape[:-1])
    else:
        denom = (wv[np.where(keep, t, 0)] * keep).sum() if w is not None else keep.sum()
    return loss, np.abs(terms).sum(-1), g, gscale, denom


@settings_
@given(data=st.data(), prob=st.booleans())
def test_cross_entropy(data, prob):
    x, ax, t, w, eps_, T, red = data.draw(ce_case(prob))
    isa, thr = data.draw(MACHINE)
    x0 = x.copy()
    with machine(isa, thr):
        loss, g = csoftmax.cross_entropy(x, t, axis=ax, weight=w, label_smoothing=eps_,
                                         temperature=T, reduction=red, return_grad=True)
        loss2 = csoftmax.cross_entropy(x, t, axis=ax, weight=w, label_smoothing=eps_,
                                       temperature=T, reduction=red)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(loss, loss2)
    lo, absterms, gref, gsc, denom = ce_reference(x, ax, t, w, eps_, T, prob)
    if red == "mean" and denom == 0:
        assert np.isnan(loss)
        return
    if red == "none":
        assert np.all(np.asarray(loss, dtype=np.float64) >= 0)       # CE >= 0
    else:
        assert float(loss) >= 0
    assert g.shape == x.shape and g.dtype == x.dtype
    # the contract per element (README "Accuracy"): loss within 4 ULP +
    # kappa sum|w q' log p|, each gradient entry within 4 ULP + kappa
    # (p_i |W| + |w_i q'_i|) s/T, against the accurate reference
    rl, rg = H.ref_ce(x, t, axis=ax, weight=w, label_smoothing=eps_, temperature=T,
                      reduction=red)
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what="loss")
    H.assert_within(g, rg, "cross_entropy_grad", what="grad")


def test_ce_subnormal_weight_gradient():
    """Regression (long fuzz profile): a subnormal class weight made the CE
    gradient of other rows NaN."""
    x = np.zeros((2, 3))
    w = np.array([1.0, 2.2250738585e-311, 1.0])
    _, g = csoftmax.cross_entropy(x, np.array([1, 0]), weight=w, reduction="none",
                                  return_grad=True)
    np.testing.assert_allclose(g[1], [-2 / 3, 1 / 3, 1 / 3])


@settings_
@given(data=st.data())
def test_nll_loss(data):
    x, ax, t, w, _, _, red = data.draw(ce_case(False))
    got = csoftmax.nll_loss(x, t, axis=ax, weight=w, reduction=red)
    lp = np.moveaxis(x, ax, -1).astype(np.float64)
    keep = t != -100
    idx = np.where(keep, t, 0)
    wv = np.ones(lp.shape[-1]) if w is None else w
    terms = np.where(keep, -wv[idx] * np.take_along_axis(lp, idx[..., None], -1)[..., 0], 0)
    e = eps(x.dtype)
    # the result is rounded to x.dtype: relative error eps/2 where it is
    # normal, but absolute error up to smallest_subnormal/2 where it is
    # subnormal (float32 -0.25 * 1e-40 = -2.4999e-41 is 17840.5 subnormal
    # units) -- a relative bound alone cannot hold there
    sub = float(np.finfo(x.dtype).smallest_subnormal)
    if red == "none":
        assert np.all(np.abs(np.asarray(got, np.float64) - terms) <= 2 * e * np.abs(terms) + sub)
        return
    tot = terms.sum()
    tol = 4 * e * np.abs(terms).sum()
    if red == "mean":
        den = (wv[idx] * keep).sum()
        if den == 0:
            assert np.isnan(got)
            return
        tot, tol = tot / den, tol / den
    assert abs(float(got) - tot) <= tol + sub


# ---------------------------------------------------------------------------
# backward (VJPs)

@settings_
@given(data=st.data(), which=st.sampled_from(["softmax", "log_softmax", "logsumexp"]))
def test_backward(data, which):
    draw = data.draw
    x = draw(arrays(kind="mild", min_side=0))
    ax = draw(st.integers(-x.ndim, x.ndim - 1))
    dt = x.dtype
    W = wd(dt)
    e = eps(dt)
    isa, thr = draw(MACHINE)
    tiny = 4 * float(np.finfo(dt).tiny)
    if which == "logsumexp":
        keepdims = draw(st.booleans())
        dshape = tuple(1 if i == ax % x.ndim else s for i, s in enumerate(x.shape)) if keepdims \
            else tuple(s for i, s in enumerate(x.shape) if i != ax % x.ndim)
        dy = draw(hnp.arrays(dt, dshape, elements=st.floats(-4, 4, width=32)))
        with machine(isa, thr):
            g = csoftmax.logsumexp_backward(x, dy, axis=ax)
        assert g.shape == x.shape and g.dtype == dt
        if x.size == 0:
            return
        p = ref("softmax", x, axis=ax).astype(W)
        want = p * np.expand_dims(dy.reshape([s for i, s in enumerate(x.shape) if i != ax % x.ndim]),
                                  ax).astype(W)
        # exp's conditioning: rounded arguments of size |log p|
        tol = 8 * e * np.abs(want).astype(np.float64) * (1 + np.abs(np.log(np.where(p > 0, p, 1))).astype(np.float64)) + tiny
    else:
        # y: a softmax / log_softmax output (the realistic case)
        y = (csoftmax.softmax if which == "softmax" else csoftmax.log_softmax)(x, axis=ax)
        dy = draw(hnp.arrays(dt, x.shape, elements=st.floats(-4, 4, width=32)))
        if draw(st.booleans()):
            dy = draw(strided(dy))
        with machine(isa, thr):
            g = (csoftmax.softmax_backward if which == "softmax"
                 else csoftmax.log_softmax_backward)(y, dy, axis=ax)
        assert g.shape == x.shape and g.dtype == dt
        if x.size == 0:
            return
        yw, dw = y.astype(W), dy.astype(W)
        if which == "softmax":
            sdot = (yw * dw).sum(ax, keepdims=True)
            want = yw * (dw - sdot)
            mag = np.abs(yw) * (np.abs(dw) + np.abs(yw * dw).sum(ax, keepdims=True))
        else:
            sd = dw.sum(ax, keepdims=True)
            want = dw - np.exp(yw) * sd
            mag = np.abs(dw) + np.exp(yw) * np.abs(dw).sum(ax, keepdims=True)
        tol = 8 * e * mag.astype(np.float64) + tiny
    err = np.abs(g.astype(W) - want).astype(np.float64)
    assert np.all(err <= tol), float(np.max(err - tol))


# ---------------------------------------------------------------------------
# distillation_loss, kl_div

@settings_
@given(data=st.data())
def test_distillation_loss(data):
    draw = data.draw
    s = draw(arrays(kind="mild", min_side=1, max_side=8))
    t = draw(hnp.arrays(s.dtype, s.shape, elements=st.floats(-30, 30, width=32)))
    ax = draw(st.integers(-s.ndim, s.ndim - 1))
    T = draw(st.sampled_from([1.0, 2.0, 4.0, 0.5]))
    loss, g = csoftmax.distillation_loss(s, t, temperature=T, axis=ax, reduction="none",
                                         return_grad=True)
    # the contract per element (README "Accuracy"): loss within 4 ULP +
    # kappa T^2 sum p^t (|log p^t| + |log p^s|), gradient within 4 ULP +
    # kappa |g| (p^s (1 + |log p^s|) + p^t (1 + |log p^t|))
    rl, rg = H.ref_distill(s, t, temperature=T, axis=ax, reduction="none")
    H.assert_within(np.asarray(loss), rl, "distillation_loss", what="loss")
    H.assert_within(g, rg, "distillation_grad", what="grad")
    assert np.all(np.asarray(loss, np.float64) >= -H.KAPPA_DISTILL_F32 * np.asarray(rl.cond, np.float64))


@settings_
@given(data=st.data(), log_target=st.booleans())
def test_kl_div(data, log_target):
    draw = data.draw
    dt = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    lq = draw(hnp.arrays(dt, shape, elements=st.floats(-50, 0, width=32)))
    if log_target:
        p = draw(hnp.arrays(dt, shape, elements=st.floats(-50, 0, width=32)))
    else:
        p = draw(hnp.arrays(dt, shape, elements=st.floats(0, 1, width=32)))
    got = csoftmax.kl_div(lq, p, log_target=log_target, reduction="none")
    assert np.shape(got) == shape
    # the contract per element: 4 ULP + kappa (|p log p| + |p log q|)
    H.assert_within(np.asarray(got), H.ref_kl(lq, p, log_target=log_target, reduction="none"),
                    "kl_div", what="none")
    for red in ("sum", "mean", "batchmean"):
        tot = csoftmax.kl_div(lq, p, log_target=log_target, reduction=red)
        H.assert_within(np.asarray(tot), H.ref_kl(lq, p, log_target=log_target, reduction=red),
                        "kl_div", what=red)


# ---------------------------------------------------------------------------
# margin family, softplus, soft_hinge

@st.composite
def cos_case(draw):
    dt = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7))
    c = draw(hnp.arrays(dt, shape, elements=st.one_of(
        st.floats(-1, 1, width=32), st.sampled_from([-1.0, 1.0, 0.0, -0.0]))))
    ax = draw(st.integers(-c.ndim, c.ndim - 1))
    C = c.shape[ax]
    tshape = tuple(s for i, s in enumerate(c.shape) if i != ax % c.ndim)
    t = draw(hnp.arrays(np.int64, tshape, elements=st.integers(0, C - 1)))
    kind = draw(st.sampled_from(["normface", "cosface", "arcface"]))
    m = 0.0 if kind == "normface" else draw(st.sampled_from([0.0, 0.1, 0.35, 0.5, 3.0]))
    if kind == "arcface":
        m = min(m, 3.0)
    s = draw(st.sampled_from([1.0, 16.0, 64.0]))
    easy = draw(st.booleans())
    return c, ax, t, kind, m, s, easy


def margin_ref(c, ax, t, kind, m, s, easy):
    W = wd(c.dtype)
    cm = np.moveaxis(c, ax, -1).astype(W)
    cy = np.take_along_axis(cm, t[..., None], -1)[..., 0]
    if kind == "normface":
        f = cy
    elif kind == "cosface":
        f = cy - W(m)
    else:
        sin = np.sqrt(np.maximum(1 - cy * cy, 0))
        arc = cy * W(math.cos(m)) - sin * W(math.sin(m))
        f = np.where(cy >= W(-math.cos(m)), arc, cy - W(m) * W(math.sin(m)))
        if easy:
            f = np.where(cy > 0, arc, cy)
    if easy and kind == "cosface":
        f = np.where(cy > 0, f, cy)
    z = W(s) * cm
    np.put_along_axis(z, t[..., None], (W(s) * f)[..., None], -1)
    return z


@settings_
@given(case=cos_case())
def test_margin_logits_and_ce(case):
    c, ax, t, kind, m, s, easy = case
    z = csoftmax.margin_logits(c, t, scale=s, margin=m, kind=kind, easy_margin=easy, axis=ax)
    zr = margin_ref(c, ax, t, kind, m, s, easy)
    e = eps(c.dtype)
    zt = 4 * e * np.abs(zr) + 64 * 2.0 ** -53 * s * (2 + m)
    assert np.all(np.abs(np.moveaxis(z, ax, -1).astype(zr.dtype) - zr) <= zt)
    loss = csoftmax.margin_cross_entropy(c, t, scale=s, margin=m, kind=kind, easy_margin=easy,
                                         axis=ax, reduction="none")
    W = zr.dtype.type
    mx = zr.max(-1, keepdims=True)
    lse = (mx + np.log(np.exp(zr - mx).sum(-1, keepdims=True)))[..., 0]
    want = lse - np.take_along_axis(zr, t[..., None], -1)[..., 0]
    got = np.asarray(loss).astype(W)
    assert np.all(got >= 0)
    tol = 8 * e * np.abs(want) + 128 * W(2.0 ** -53) * W(s) * W(2 + m)
    assert np.all(np.abs(got - want) <= tol)


@settings_
@given(data=st.data())
def test_softplus(data):
    draw = data.draw
    x = draw(arrays(kind="finite"))
    beta = draw(st.sampled_from([1.0, 0.5, 2.0, 10.0]))
    th = draw(st.sampled_from([20.0, 5.0, 1e9, -1.0]))
    y = csoftmax.softplus(x, beta=beta, threshold=th)
    assert np.shape(y) == x.shape and np.asarray(y).dtype == x.dtype
    W = wd(x.dtype)
    bx = np.float64(beta) * x.astype(np.float64)
    with np.errstate(over="ignore"):
        want = np.where(bx > th, x.astype(W), np.logaddexp(W(0), bx.astype(W)) / W(beta))
    y = np.asarray(y).astype(W)
    fin = np.isfinite(want.astype(x.dtype))
    tol = 4 * eps(x.dtype) * np.abs(want) + 2 * float(np.finfo(x.dtype).smallest_subnormal)
    assert np.all(np.abs(y[fin] - want[fin]) <= tol[fin])
    assert np.all(y >= 0) if th >= 1e8 else True


@settings_
@given(data=st.data())
def test_soft_hinge(data):
    draw = data.draw
    x = draw(arrays(kind="mild", min_side=1, max_side=8))
    ax = draw(st.integers(-x.ndim, x.ndim - 1))
    C = x.shape[ax]
    tshape = tuple(s for i, s in enumerate(x.shape) if i != ax % x.ndim)
    t = draw(hnp.arrays(np.int64, tshape, elements=st.integers(0, C - 1)))
    m = draw(st.sampled_from([0.0, 1.0, 0.25, -2.0]))
    loss, g = csoftmax.soft_hinge(x, t, margin=m, axis=ax, reduction="none", return_grad=True)
    # the contract per element (README "Accuracy"; _helpers.ref_soft_hinge)
    rl, rg = H.ref_soft_hinge(x, t, margin=m, axis=ax, reduction="none")
    assert np.all(np.asarray(loss) >= 0)
    H.assert_within(np.asarray(loss), rl, "soft_hinge", what="loss")
    H.assert_within(g, rg, "soft_hinge_grad", what="grad")


# ---------------------------------------------------------------------------
# sample

@settings_
@given(data=st.data())
def test_sample(data):
    draw = data.draw
    x = draw(arrays(kind="mild", min_side=1, max_side=8))
    ax = draw(st.integers(-x.ndim, x.ndim - 1))
    T = draw(st.sampled_from([0.0, 1.0, 0.5, 3.0]))
    k = draw(st.none() | st.integers(1, 9))
    seed = draw(st.integers(0, 2 ** 40))
    isa, thr = draw(MACHINE)
    with machine(isa, thr):
        r = np.asarray(csoftmax.sample(x, temperature=T, top_k=k, axis=ax, seed=seed))
    r2 = np.asarray(csoftmax.sample(x, temperature=T, top_k=k, axis=ax, seed=seed))
    np.testing.assert_array_equal(r, r2)                      # same seed, same draw
    xm = np.moveaxis(x, ax, -1)
    n = xm.shape[-1]
    assert r.shape == xm.shape[:-1] and r.dtype == np.int64
    assert np.all((r >= 0) & (r < n))
    v = np.take_along_axis(xm, r[..., None], -1)[..., 0]
    if T == 0 or k == 1:
        np.testing.assert_array_equal(r, np.argmax(xm, -1))
    if k is not None and k < n:
        kth = -np.sort(-xm, -1)[..., k - 1]
        assert np.all(v >= kth)                               # inside the top k
