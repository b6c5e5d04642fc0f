"""where= masks (issue #16, section 2): softmax, log_softmax, logsumexp,
cross_entropy and the backward ops leave the masked elements out of the max
and the sum, jax.nn's way.

Reference: the float64 (longdouble for float64 data) reference of
tests/_helpers.py on x with the masked entries set to -inf -- the same
mathematics on the kept subset -- with the rows that keep nothing set to
jax.nn's results (softmax 0, log_softmax -inf, logsumexp -inf).  Bounds:
README "Accuracy": 4 ULP float32, 8 ULP + the float64 slack for float64.
Masked entries hold NaN / inf / 1e30 in most tests: they must not reach the
result (the kernels never use them as numbers).
"""
import numpy as np
import pytest

import csoftmax as cs
from csoftmax import _core

from _helpers import BOUND, LONG_OK, assert_ulp, f64_slack, ref

OPS = {"softmax": cs.softmax, "log_softmax": cs.log_softmax,
       "logsumexp": cs.logsumexp}
FILL = {"softmax": 0.0, "log_softmax": -np.inf, "logsumexp": -np.inf}
SIZES = [1, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4099]


def _axes(axis, nd):
    if axis is None:
        return tuple(range(nd))
    if isinstance(axis, tuple):
        return tuple(a % nd for a in axis)
    return (axis % nd,)


def masked_ref(op, x, w, axis=-1, temperature=1.0):
    """(reference, slack) of op(x, where=w): the reference on x with masked
    entries at -inf, rows with nothing kept set to FILL."""
    wb = np.broadcast_to(np.asarray(w, dtype=bool), x.shape)
    xm = np.where(wb, x, -np.inf).astype(x.dtype)
    want = ref(op, xm, axis, temperature)
    none = ~np.any(wb, axis=_axes(axis, x.ndim), keepdims=op != "logsumexp")
    if op != "logsumexp":
        none = np.broadcast_to(none, x.shape)
        want = np.where(wb, want, FILL[op])
    want = np.where(none, FILL[op], want)
    slack = None
    if x.dtype == np.float64 and LONG_OK:
        with np.errstate(all="ignore"):
            slack = f64_slack(op, xm, axis, temperature)
        slack = np.where(np.isfinite(slack), slack, 0)
    return want, slack


def check_masked(op, got, x, w, axis=-1, temperature=1.0, what=""):
    want, slack = masked_ref(op, x, w, axis, temperature)
    got = np.asarray(got)
    if slack is not None:
        g = got.astype(np.longdouble)
        with np.errstate(invalid="ignore"):
            excess = np.maximum(np.abs(g - want) - slack, 0)
            adj = np.where(np.isfinite(want) & np.isfinite(g),
                           want + np.sign(g - want) * excess, g)
        assert_ulp(adj.astype(np.float64), want, what=what)
    else:
        assert_ulp(got, want, what=what)
    if op != "logsumexp":
        wb = np.broadcast_to(np.asarray(w, dtype=bool), x.shape)
        assert np.all(got[~wb] == FILL[op]), what


def call(op, x, w, axis=-1, **kw):
    return OPS[op](x, axis=axis, where=w, **kw)


def _poison(x, w, rng):
    """Masked entries -> NaN, +-inf, +-1e30 (must not leak)."""
    x = x.copy()
    bad = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30], dtype=x.dtype)
    idx = ~np.broadcast_to(w, x.shape)
    x[idx] = bad[rng.integers(0, len(bad), int(idx.sum()))]
    return x


def _masks(kind, shape, rng):
    B, n = shape
    if kind == "random":
        return rng.random(shape) < 0.6
    if kind == "all_true":
        return np.ones(shape, bool)
    if kind == "false_rows":
        w = rng.random(shape) < 0.5
        w[::2] = False
        return w
    if kind == "single":
        w = np.zeros(shape, bool)
        w[np.arange(B), rng.integers(0, n, B)] = True
        return w
    raise AssertionError(kind)


# ---- random data vs the reference, every ISA, SIMD tails ---------------------

@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["random", "all_true", "false_rows", "single"])
def test_reference(isa, op, dtype, kind, rng):
    for n in SIZES:
        B = 5 if n < 1000 else 3
        x = (rng.standard_normal((B, n)) * 4).astype(dtype)
        w = _masks(kind, (B, n), rng)
        xp = _poison(x, w, rng)
        got = call(op, xp, w)
        check_masked(op, got, x, w, what=f"{isa} {op} {dtype.__name__} {kind} n={n}")


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temperature_and_threads(isa, threads, op, dtype, rng):
    x = (rng.standard_normal((300, 257)) * 3).astype(dtype)
    w = rng.random(x.shape) < 0.7
    w[5] = False
    xp = _poison(x, w, rng)
    if op == "logsumexp":
        got = call(op, xp, w)   # (no temperature)
        check_masked(op, got, x, w)
    else:
        got = call(op, xp, w, temperature=2.5)
        check_masked(op, got, x, w, temperature=2.5)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_kept_values(isa, op, dtype, rng):
    """Kept +-1e30, +-inf and NaN behave as in the unmasked call on the kept
    subset (NaN row -> NaN, +inf -> NaN at +inf / 0 elsewhere, ...)."""
    n = 40
    x = rng.standard_normal((6, n)).astype(dtype)
    x[0, 3] = 1e30
    x[1, 4] = -1e30
    x[2, 5] = np.inf
    x[3, 6] = -np.inf
    x[4, 7] = np.nan
    x[5, :] = -np.inf
    w = rng.random(x.shape) < 0.5
    w[:, 3:8] = True
    got = call(op, x, w)
    for r in range(6):
        keep = w[r]
        sub = x[r][keep]
        want = OPS[op](sub, axis=-1)
        # both within BOUND ULP of the reference (different paths)
        bound = 2 * BOUND[np.dtype(dtype)]
        if op == "logsumexp":
            assert_ulp(np.asarray(got[r]), np.float64(want), bound, dtype)
        else:
            assert_ulp(got[r][keep], want.astype(np.float64), bound, dtype)
            assert np.all(got[r][~keep] == FILL[op])


# ---- all true: the unmasked kernels' results, bit for bit -------------------

@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_true_bit_identical(op, dtype, rng):
    """An all-true mask gives bit for bit what the unmasked kernels give
    (rows of >= 33 elements: the masked SIMD float32 kernels are the
    unmasked lane loops, and the unmasked reduction takes its float64-lane
    loop below 32; float64 on the AVX-512 table borrows the AVX2 masked
    kernels while the unmasked ones are AVX-512).  Compared with the
    unmasked call on the path with the same arithmetic: FUSED for float32
    softmax, TWO_PASS otherwise."""
    for isa in [i for i in ("scalar", "avx2", "avx512") if i in _core.available_isas()]:
        if isa == "avx512" and dtype == np.float64:
            continue
        prev = _core._use_isa(isa)
        try:
            for n in (33, 65, 1000, 4099):
                x = (rng.standard_normal((7, n)) * 5).astype(dtype)
                w = np.ones(x.shape, bool)
                got = call(op, x, w)
                if op == "logsumexp":
                    want = cs.logsumexp(x, axis=-1)
                elif op == "softmax" and dtype == np.float32 and isa != "scalar":
                    with _core.forced("softmax", "FUSED"):
                        want = cs.softmax(x)
                else:
                    with _core.forced(op, "TWO_PASS"):
                        want = OPS[op](x)
                np.testing.assert_array_equal(got, want, err_msg=f"{isa} n={n}")
        finally:
            _core._use_isa(prev)


# ---- broadcasting, layouts, axes ---------------------------------------------

@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_broadcast_masks(isa, op, dtype, rng):
    B, V = 9, 103
    x = (rng.standard_normal((B, V)) * 3).astype(dtype)
    for w in (rng.random(V) < 0.6,                 # padded vocabulary (V,)
              rng.random((B, 1)) < 0.5,            # whole rows (B, 1)
              rng.random((1, V)) < 0.6,
              rng.random((B, V)) < 0.6,
              np.bool_(True), np.bool_(False)):
        wb = np.broadcast_to(w, x.shape)
        got = call(op, _poison(x, wb, rng), w)
        check_masked(op, got, x, wb, what=f"mask shape {np.shape(w)}")


def test_paths_named(rng):
    """The planner names the masked paths and the calls reach them."""
    x32 = rng.standard_normal((64, 500)).astype(np.float32)
    w = rng.random(x32.shape) < 0.5
    expect_sm = ("MASKED_FUSED" if _core.kernel_list and
                 dict(_core.kernel_list())["softmax_fused_rows_masked_f32"].get(_core.isa())
                 else "MASKED_ROWS")
    cs.softmax(x32, where=w)
    assert _core._last_plan() == ("softmax", expect_sm)
    assert _core.plan("softmax", x32.shape, np.float32, where=True)["path"] == expect_sm
    cs.softmax(x32.astype(np.float64), where=w)
    assert _core._last_plan() == ("softmax", "MASKED_ROWS")
    cs.log_softmax(x32, where=w)
    assert _core._last_plan() == ("log_softmax", "MASKED_ROWS")
    cs.logsumexp(x32, axis=-1, where=w)
    assert _core._last_plan() == ("logsumexp", "MASKED_ROWS")
    p = _core.plan("logsumexp", x32.shape, np.float32, axis=-1, where=True)
    assert p["path"] == "MASKED_ROWS"
    assert p["kernels"] == ["lse_rows_masked_f32", "finalize"]
    cs.log_softmax(x32, axis=0, where=w)
    assert _core._last_plan() == ("log_softmax", "MASKED_COLS")
    assert _core.plan("softmax", (4, 5, 6), np.float64, axis=1,
                      where=True)["kernels"] == ["lse_cols_masked_f64", "finalize",
                                                 "softmax_cols_masked_f64"]
    cs.softmax_backward(x32, x32, where=w)
    assert _core._last_plan() == ("softmax_backward", "MASKED_ROWS")
    t = np.argmax(w, axis=1)
    cs.cross_entropy(x32, t, where=w, return_grad=True)
    assert _core._last_plan() == ("cross_entropy", expect_sm)
    cs.cross_entropy(x32.astype(np.float64), t, where=w, return_grad=True)
    assert _core._last_plan() == ("cross_entropy", "MASKED_ROWS")
    assert _core.plan("cross_entropy", (4, 5, 6), np.float32, axis=1,
                      where=True)["kernels"] == ["lse_cols_masked_f32", "finalize",
                                                 "softmax_cols_masked_f32"]
    cs.log_softmax_backward(x32, x32, axis=0, where=w)
    assert _core._last_plan() == ("log_softmax_backward", "MASKED_COLS")
    # the unmasked call never takes a masked path, and cannot be forced to
    cs.softmax(x32)
    assert _core._last_plan()[1] not in ("MASKED_ROWS", "MASKED_COLS", "MASKED_FUSED")
    with _core.forced("softmax", "MASKED_ROWS"):
        with pytest.raises(ValueError, match="where= mask"):
            cs.softmax(x32)
        # ... and forcing MASKED_ROWS over MASKED_FUSED gives the same numbers
        a = cs.softmax(x32, where=w)
        assert _core._last_plan() == ("softmax", "MASKED_ROWS")
    assert_ulp(a, cs.softmax(x32, where=w).astype(np.float64), dtype=np.float32)
    # a forced unmasked path does not apply to a masked call
    with _core.forced("log_softmax", "TWO_PASS"):
        cs.log_softmax(x32, where=w)
        assert _core._last_plan() == ("log_softmax", "MASKED_ROWS")


def test_masked_kernels_in_list():
    names = [k for k, _ in _core.kernel_list()]
    for k in ("lse_rows_masked_f32", "softmax_rows_masked_f64",
              "log_softmax_cols_masked_f32", "softmax_bwd_rows_masked_f64",
              "softmax_fused_rows_masked_f32"):
        assert k in names


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_axis_and_layout(isa, op, dtype, rng):
    x = (rng.standard_normal((6, 7, 35)) * 3).astype(dtype)
    full = rng.random(x.shape) < 0.6
    axes = [0, 1, 2, -1]
    if op != "cross_entropy":
        axes += [(0, 2), (1, 2), None] if op == "logsumexp" else [(0, 2), (1, 2)]
    for axis in axes:
        for w in (full, full[:1], full[:, :1], full[..., :1], full[0, 0]):
            wb = np.broadcast_to(w, x.shape)
            got = call(op, _poison(x, wb, rng), w, axis=axis)
            check_masked(op, got, x, wb, axis, what=f"axis={axis} mask {w.shape}")


@pytest.mark.parametrize("op", list(OPS))
def test_strided_and_negative_strides(isa, op, rng):
    base = (rng.standard_normal((20, 300)) * 3).astype(np.float32)
    mbase = rng.random((20, 600)) < 0.6
    for x, w in ((base[::2, ::-1], mbase[::2, ::2]),        # non-contiguous x and mask
                 (base[::-1], mbase[::-1, :300]),            # negative row strides
                 (base[:, 5:250], mbase[::-1, ::-2][:, 10:255]),
                 (np.asfortranarray(base), np.asfortranarray(mbase[:, :300]))):
        got = call(op, _poison(np.ascontiguousarray(x), w, rng)[...], w)
        check_masked(op, got, np.ascontiguousarray(x), w)
        got2 = call(op, x, w)
        check_masked(op, got2, np.ascontiguousarray(x), w)


def test_mask_dtypes_and_errors(rng):
    x = rng.standard_normal((4, 10))
    w = rng.random((4, 10)) < 0.5
    want = cs.softmax(x, where=w)
    for m in (w.astype(np.uint8), w.astype(np.int8), w.astype(np.int64),
              w.astype(np.float32), (w * 7).astype(np.uint8), w.tolist()):
        np.testing.assert_array_equal(cs.softmax(x, where=m), want)
    with pytest.raises(TypeError, match="where"):
        cs.softmax(x, where=w.astype(complex))
    with pytest.raises(TypeError, match="where"):
        cs.logsumexp(x, where=np.array(["a"] * 10))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 10\)"):
        cs.log_softmax(x, where=np.ones(3, bool))
    with pytest.raises(ValueError, match="broadcast"):
        cs.softmax_backward(x, x, where=np.ones((2, 10), bool))
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError):
        cs.softmax(x, out=out, where=np.ones(3, bool))
    assert np.all(out == 7.0)   # nothing written on error



def test_half_precision_masks(rng):
    """float16 and bfloat16 masks are numbers like the others: nonzero = kept
    (a bfloat16 mask was refused once: its dtype kind is not 'f')."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng.standard_normal((4, 10))
    w = rng.random((4, 10)) < 0.5
    want = cs.softmax(x, where=w)
    for dt in (np.float16, ml_dtypes.bfloat16):
        m = (w * 3).astype(dt)
        np.testing.assert_array_equal(cs.softmax(x, where=m), want)
        np.testing.assert_array_equal(cs.log_softmax(x.astype(dt), where=m),
                                      cs.log_softmax(x.astype(dt), where=w))

def test_out_overlapping_the_mask(rng):
    """out= sharing memory with the mask: computed into a temporary first."""
    B, V = 6, 40
    x = rng.standard_normal((B, V)).astype(np.float32)
    buf = np.zeros(B * V * 4, np.uint8)
    out = buf.view(np.float32).reshape(B, V)
    m = buf[B * V * 2: B * V * 3].reshape(B, V)
    m[...] = rng.random((B, V)) < 0.5
    w = m.astype(bool)
    want = cs.softmax(x, where=w)
    got = cs.softmax(x, where=m, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)


def test_out_and_in_place(isa, rng):
    x = rng.standard_normal((50, 70)).astype(np.float32)
    w = rng.random(70) < 0.5
    want = cs.log_softmax(x, where=w)
    out = np.empty_like(x)
    assert cs.log_softmax(x, where=w, out=out) is out
    np.testing.assert_array_equal(out, want)
    y = x.copy()
    cs.log_softmax(y, where=w, out=y)
    np.testing.assert_array_equal(y, want)


def test_logsumexp_keepdims_sign_and_b(rng):
    x = rng.standard_normal((5, 8))
    w = rng.random((5, 8)) < 0.5
    w[1] = False
    r, s = cs.logsumexp(x, axis=1, where=w, return_sign=True, keepdims=True)
    assert r.shape == (5, 1)
    assert r[1, 0] == -np.inf and s[1, 0] == 0
    b = rng.random((5, 8)) + 0.5
    got = cs.logsumexp(x, axis=1, b=b, where=w)
    with np.errstate(divide="ignore"):
        want = np.log(np.sum(np.where(w, b * np.exp(x), 0), axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert cs.logsumexp(x, where=w).shape == ()


# ---- backward ------------------------------------------------------------------

@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward(isa, log, dtype, rng):
    for shape, axis, wshape in (((7, 33), -1, (7, 33)), ((7, 1000), -1, (1000,)),
                                ((5, 9, 4), 1, (5, 9, 4)), ((5, 9, 4), 0, (9, 1))):
        x = rng.standard_normal(shape)
        w = rng.random(wshape) < 0.6
        wb = np.broadcast_to(w, shape)
        fwd = cs.log_softmax if log else cs.softmax
        bwd = cs.log_softmax_backward if log else cs.softmax_backward
        y = fwd(x, axis=axis, where=w).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        dyp = np.where(wb, dy, np.nan).astype(dtype)   # masked dy must not leak
        got = bwd(y, dyp, axis=axis, where=w)
        assert got.dtype == dtype
        assert np.all(got[~wb] == 0)
        # float64 reference on the kept subset
        yy = np.where(wb, y.astype(np.float64), -np.inf if log else 0.0)
        d = np.where(wb, dy.astype(np.float64), 0.0)
        if log:
            want = d - np.exp(yy) * d.sum(axis=axis, keepdims=True)
        else:
            want = yy * (d - (yy * d).sum(axis=axis, keepdims=True))
        want = np.where(wb, want, 0.0)
        tol = 1e-5 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_backward_finite_differences(rng):
    """softmax_backward(where=) is the gradient of softmax(where=)."""
    x = rng.standard_normal((3, 12))
    w = rng.random((3, 12)) < 0.6
    w[:, 0] = True
    c = rng.standard_normal((3, 12))
    for fwd, bwd in ((cs.softmax, cs.softmax_backward),
                     (cs.log_softmax, cs.log_softmax_backward)):
        y = fwd(x, where=w)
        g = bwd(y, c, where=w)
        h = 1e-6
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[idx] = h
            fp = np.where(w, fwd(x + e, where=w), 0) * c
            fm = np.where(w, fwd(x - e, where=w), 0) * c
            num[idx] = (fp.sum() - fm.sum()) / (2 * h)
        np.testing.assert_allclose(g, num, atol=1e-7)
        assert np.all(g[~w] == 0)


# ---- cross-entropy ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy(isa, dtype, reduction, rng):
    B, C = 40, 37
    x = (rng.standard_normal((B, C)) * 3).astype(dtype)
    w = rng.random((B, C)) < 0.6
    t = rng.integers(0, C, B)
    t[::3] = [np.flatnonzero(w[i])[0] if w[i].any() else 0 for i in range(0, B, 3)]
    w[::3, t[::3]] = True
    t[1] = -100
    weight = rng.random(C) + 0.5
    xp = _poison(x, w, rng)
    loss, g = cs.cross_entropy(xp, t, where=w, weight=weight, reduction=reduction,
                               return_grad=True, temperature=1.5)
    # reference: float64 log_softmax on the kept classes
    x64 = np.where(w, x.astype(np.float64) / 1.5, -np.inf)
    with np.errstate(all="ignore"):
        m = x64.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(x64 - m).sum(axis=1, keepdims=True))
        lp = x64 - lse
        p = np.where(w, np.exp(lp), 0.0)
    tt = np.where(t < 0, 0, t)
    kept_t = w[np.arange(B), tt] & (t >= 0)
    wt = np.where(t >= 0, weight[tt], 0.0)
    with np.errstate(invalid="ignore"):
        lo = np.where(t < 0, 0.0, -wt * np.where(kept_t, lp[np.arange(B), tt], -np.inf))
    denom = wt.sum()
    if reduction == "none":
        want = lo
    elif reduction == "sum":
        want = lo.sum()
    else:
        want = lo.sum() / denom
    np.testing.assert_allclose(loss, want, rtol=4e-7 if dtype == np.float32 else 1e-13)
    a = np.where(kept_t, wt, 0.0) / 1.5 / (denom if reduction == "mean" else 1.0)
    gw = a[:, None] * p
    gw[np.arange(B)[kept_t], tt[kept_t]] -= a[kept_t]
    tol = 4e-7 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(g, gw, rtol=tol, atol=tol * np.abs(gw).max())
    assert np.all(g[~w] == 0)
    assert np.all(g[~kept_t] == 0)       # masked target / ignored: no gradient
    # a target on a masked class: +inf loss (optax with a -inf logit)
    if reduction == "none":
        assert np.all(np.isinf(loss[(t >= 0) & ~kept_t]))


def test_cross_entropy_where_refusals_and_axis(rng):
    x = rng.standard_normal((4, 6, 3))
    w = rng.random(6) < 0.7
    w[0] = True
    t = np.zeros((4, 3), int)
    got = cs.cross_entropy(x, t, axis=1, where=w[:, None], reduction="none")
    want = -np.take_along_axis(cs.log_softmax(x, axis=1, where=w[:, None]),
                               t[:, None, :], axis=1)[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    with pytest.raises(ValueError, match="label smoothing"):
        cs.cross_entropy(x, t, axis=1, where=w[:, None], label_smoothing=0.1)
    with pytest.raises(ValueError, match="class-index"):
        cs.cross_entropy(x, np.full(x.shape, 1 / 6), axis=1, where=w[:, None])
    g = np.zeros_like(x)
    loss, g2 = cs.cross_entropy(x, t, axis=1, where=w[:, None], return_grad=True,
                                grad_out=g)
    assert g2 is g
    # grad_out on the rows path: fresh, in place (= logits), overlapping the
    # mask; all give the same gradient
    x2 = rng.standard_normal((8, 40)).astype(np.float32)
    w2 = rng.random(40) < 0.7
    t2 = np.flatnonzero(w2)[rng.integers(0, w2.sum(), 8)]
    l0, g0 = cs.cross_entropy(x2, t2, where=w2, return_grad=True)
    l1, g1 = cs.cross_entropy(x2.copy(), t2, where=w2, return_grad=True,
                              grad_out=np.empty_like(x2))
    xi = x2.copy()
    l2, g2 = cs.cross_entropy(xi, t2, where=w2, return_grad=True, grad_out=xi)
    assert g2 is xi
    buf = np.zeros(8 * 40 * 4, np.uint8)
    go = buf.view(np.float32).reshape(8, 40)
    mo = buf[:40]
    mo[:] = w2
    l4, g4 = cs.cross_entropy(x2, t2, where=mo, return_grad=True, grad_out=go)
    for gg in (g1, g2, g4):
        np.testing.assert_array_equal(gg, g0)
    assert l0 == l1 == l2 == l4


# ---- against jax.nn ----------------------------------------------------------

def test_against_jax(rng):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax import config
    config.update("jax_enable_x64", True)
    try:
        x = rng.standard_normal((6, 45)) * 3
        w = rng.random((6, 45)) < 0.5
        w[2] = False
        w[3] = False
        w[3, 7] = True
        xj, wj = jnp.asarray(x), jnp.asarray(w)
        xp = _poison(x, w, rng)
        np.testing.assert_allclose(cs.softmax(xp, where=w),
                                   jax.nn.softmax(xj, where=wj), rtol=1e-13, atol=0)
        np.testing.assert_allclose(cs.log_softmax(xp, where=w),
                                   jax.nn.log_softmax(xj, where=wj), rtol=1e-13, atol=0)
        np.testing.assert_allclose(cs.logsumexp(xp, axis=-1, where=w),
                                   jax.nn.logsumexp(xj, axis=-1, where=wj), rtol=1e-13)
        np.testing.assert_allclose(cs.softmax(xp, axis=0, where=w),
                                   jax.nn.softmax(xj, axis=0, where=wj), rtol=1e-13, atol=0)
        # gradients: the backward ops and the cross-entropy
        c = rng.standard_normal(x.shape)
        for fwd, jf, bwd in ((cs.softmax, jax.nn.softmax, cs.softmax_backward),
                             (cs.log_softmax, jax.nn.log_softmax, cs.log_softmax_backward)):
            _, vjp = jax.vjp(lambda z: jf(z, where=wj), xj)
            jg = np.asarray(vjp(jnp.asarray(c))[0])
            g = bwd(fwd(x, where=w), c, where=w)
            np.testing.assert_allclose(g, jg, rtol=1e-11, atol=1e-14)
        t = rng.integers(0, 45, 6)
        t[3] = 7

        def jl(z):
            lp = jax.nn.log_softmax(z, where=wj)
            return -jnp.sum(jnp.take_along_axis(lp, jnp.asarray(t)[:, None], 1))
        ok = w[np.arange(6), t]
        loss, g = cs.cross_entropy(xp, t, where=w, reduction="sum", return_grad=True)
        assert loss == np.inf if not ok.all() else np.isclose(loss, float(jl(xj)))
        np.testing.assert_allclose(g, np.asarray(jax.grad(jl)(xj)), rtol=1e-11, atol=1e-14)
        lo = cs.cross_entropy(xp[ok], t[ok], where=w[ok], reduction="sum")
        wk = jnp.asarray(w[ok])
        jlo = -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(jnp.asarray(x[ok]), where=wk),
                                           jnp.asarray(t[ok])[:, None], 1))
        np.testing.assert_allclose(lo, float(jlo), rtol=1e-13)
    finally:
        config.update("jax_enable_x64", False)


# ---- adapters ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_adapter(dtype, rng):
    torch = pytest.importorskip("torch")
    import csoftmax.torch as ct
    x = torch.tensor(rng.standard_normal((5, 40)) * 3, dtype=getattr(torch, dtype),
                     requires_grad=True)
    w = torch.tensor(rng.random((5, 40)) < 0.6)
    w[2] = False
    w[:, 0] |= torch.arange(5) != 2
    xm = x.masked_fill(~w, -float("inf"))
    c = torch.tensor(rng.standard_normal((5, 40)), dtype=x.dtype)
    tol = dict(rtol=4e-6, atol=1e-7) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
    for f, tf, fill in ((ct.softmax, torch.softmax, 0.0),
                        (ct.log_softmax, torch.log_softmax, -np.inf)):
        y = f(x, dim=-1, where=w)
        want = torch.where(w, tf(xm, -1), fill)
        want[2] = fill                                   # nothing kept (torch: NaN)
        np.testing.assert_allclose(y.detach().numpy(), want.detach().numpy(), **tol)
        g, = torch.autograd.grad((torch.where(w, y, 0) * c).sum(), x)
        assert torch.all(g[~w] == 0)
        xr = x.detach().clone().requires_grad_()
        yr = tf(xr.masked_fill(~w, -float("inf"))[[0, 1, 3, 4]], -1)
        gr, = torch.autograd.grad((torch.where(w[[0, 1, 3, 4]], yr, 0) * c[[0, 1, 3, 4]]).sum(),
                                  xr)
        np.testing.assert_allclose(g[[0, 1, 3, 4]].numpy(), gr[[0, 1, 3, 4]].numpy(), **tol)
    lse = ct.logsumexp(x, dim=-1, where=w)
    assert lse[2] == -np.inf
    g, = torch.autograd.grad(lse[[0, 1, 3, 4]].sum(), x)
    assert torch.all(g[~w] == 0) and torch.all(g[2] == 0)
    t = torch.zeros(5, dtype=torch.long)
    loss = ct.cross_entropy(x[[0, 1, 3, 4]], t[:4], where=w[[0, 1, 3, 4]])
    want = torch.nn.functional.cross_entropy(xm[[0, 1, 3, 4]], t[:4])
    np.testing.assert_allclose(loss.item(), want.item(), rtol=tol["rtol"])
    # uint8 / broadcast masks
    y8 = ct.softmax(x, dim=-1, where=w.to(torch.uint8))
    np.testing.assert_array_equal(y8.detach().numpy(),
                                  ct.softmax(x, dim=-1, where=w).detach().numpy())
    yb = ct.softmax(x, dim=-1, where=w[0])
    np.testing.assert_array_equal(yb.detach().numpy(),
                                  cs.softmax(x.detach().numpy(), where=w[0].numpy()))


def test_jax_adapter(rng):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import csoftmax.jax as cj
    x = jnp.asarray(rng.standard_normal((6, 30)).astype(np.float32))
    w = rng.random((6, 30)) < 0.6
    w[1] = False
    w[:, 3] |= np.arange(6) != 1
    wj = jnp.asarray(w)
    c = jnp.asarray(rng.standard_normal((6, 30)).astype(np.float32))
    for f, jf in ((cj.softmax, jax.nn.softmax), (cj.log_softmax, jax.nn.log_softmax)):
        np.testing.assert_allclose(f(x, where=wj), jf(x, where=wj), rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(jax.jit(lambda z: f(z, where=wj))(x), f(x, where=wj))
        np.testing.assert_allclose(jax.vmap(lambda z: f(z, where=wj[0]))(x),
                                   jf(x, where=wj[0]), rtol=2e-5, atol=1e-7)
        g1 = jax.grad(lambda z: jnp.sum(jnp.where(wj, f(z, where=wj), 0) * c))(x)
        g2 = jax.grad(lambda z: jnp.sum(jnp.where(wj, jf(z, where=wj), 0) * c))(x)
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-6)
        assert np.all(np.asarray(g1)[~w] == 0)
    np.testing.assert_allclose(cj.logsumexp(x, axis=-1, where=wj),
                               jax.nn.logsumexp(x, axis=-1, where=wj), rtol=1e-6)
    g = jax.grad(lambda z: cj.logsumexp(z, axis=-1, where=wj).sum())(x)
    np.testing.assert_allclose(g, jax.grad(lambda z: jax.nn.logsumexp(z, axis=-1,
                                                                      where=wj).sum())(x),
                               rtol=1e-5, atol=1e-7)
    ok = jnp.asarray(np.arange(6) != 1)
    t = jnp.full(6, 3)
    l, g = jax.value_and_grad(lambda z: cj.cross_entropy(z[ok], t[ok], where=wj[ok]))(x)
    l2, g2 = jax.value_and_grad(
        lambda z: -jnp.mean(jax.nn.log_softmax(z[ok], where=wj[ok])[:, 3]))(x)
    np.testing.assert_allclose(l, l2, rtol=1e-6)
    np.testing.assert_allclose(g, g2, rtol=1e-5, atol=1e-7)


def test_dask_adapter(rng):
    da = pytest.importorskip("dask.array")
    import csoftmax.dask as cd
    x = (rng.standard_normal((30, 50)) * 3).astype(np.float32)
    w = rng.random((30, 50)) < 0.5
    w[3] = False
    w[:, 7] = False
    xd = da.from_array(x, chunks=(7, 13))
    for wm in (da.from_array(w, chunks=(5, 9)), w, w[0], w[:, :1]):
        wn = np.asarray(wm)
        for f, g in ((cd.softmax, cs.softmax), (cd.log_softmax, cs.log_softmax)):
            for ax in (0, 1):
                got = f(xd, axis=ax, where=wm).compute()
                assert_ulp(got, g(x, axis=ax, where=wn).astype(np.float64), 8, np.float32)
        for ax in (0, 1, None, (0, 1)):
            got = cd.logsumexp(xd, axis=ax, where=wm).compute()
            assert_ulp(np.asarray(got), np.asarray(cs.logsumexp(x, axis=ax, where=wn),
                                                   dtype=np.float64), 8, np.float32)
    with pytest.raises(ValueError, match="broadcast"):
        cd.softmax(xd, where=np.ones(3, bool))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [0.5, 1.0, 30.0])
def test_smooth_max_where(rng, dtype, k):
    """smooth_max(x, k, where=w) = LSE(k x over the kept elements) / k:
    the contract's reference (_helpers.ref_smooth_max) on x with the masked
    entries at -inf; masked entries hold NaN / inf / 1e30 and must not
    matter; a slice that keeps nothing gives -inf."""
    import _helpers as H
    for shape, axis in [((37, 9), -1), ((5, 33, 17), 1), ((4, 1000), -1),
                        ((6, 7, 8), (0, 2)), ((3, 11), None)]:
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        w = rng.random(shape) < 0.6
        flat = w.reshape(-1)
        flat[: shape[-1]] = False                 # some slices keep nothing
        junk = np.array([np.nan, np.inf, -np.inf, 1e30], dtype)
        xj = np.where(w, x, junk[rng.integers(0, 4, shape)])
        got = cs.smooth_max(xj, axis=axis, sharpness=k, where=w)
        xm = np.where(w, x, -np.inf).astype(dtype)
        want = H.ref_smooth_max(xm, axis, k)
        none = ~np.any(w, axis=_axes(axis, x.ndim))
        g = np.asarray(got, dtype=np.float64)
        assert np.all(g[none] == -np.inf), (shape, axis)
        keep = ~none
        if np.ndim(got) == 0:
            H.assert_within(got, want, "smooth_max", what=f"{shape} {axis} k={k}")
        elif keep.any():
            sl = None if want.slack is None else np.broadcast_to(want.slack, keep.shape)[keep]
            H.assert_within(np.asarray(got)[keep], H.mkref(np.asarray(want)[keep], slack=sl),
                            "smooth_max", what=f"{shape} {axis} k={k}")
    # keepdims and a broadcast mask
    x = rng.standard_normal((4, 6)).astype(dtype)
    r = cs.smooth_max(x, axis=1, sharpness=k, keepdims=True, where=np.arange(6) < 3)
    np.testing.assert_array_equal(r, cs.smooth_max(x[:, :3], axis=1, sharpness=k,
                                                   keepdims=True))


def test_smooth_max_where_errors(rng):
    x = rng.standard_normal((4, 10))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 10\)"):
        cs.smooth_max(x, where=np.ones(3, bool))
    with pytest.raises(TypeError, match="where"):
        cs.smooth_max(x, where=np.ones(10, complex))
