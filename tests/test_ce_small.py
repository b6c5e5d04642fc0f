"""float32 cross-entropy of short rows (C <= 32) in one kernel call
(ce_small_f32: the fused short-row softmax scaled by each row's coefficient,
the target entry a * expm1(log p_t) and log p_t for the loss, all in vector
lanes; taken for class targets without label smoothing and for
logsumexp_backward).

The reference is exact where a naive float64 one cancels: the target entry
is -sum of the other probabilities (times the coefficient) and the loss is
log1p(sum_{j != t} exp(z_j - z_t)) when z_t is within 1 of the max
(else (max - z_t) + log sum exp(z - max): no cancellation either).  Bounds, element by element:
* every gradient entry, the target's included, within 4 float32 ULP
  (softmax's bound) wherever the reference is a normal float32;
* the per-sample loss within 4 float32 ULP (relative 2.4e-7).
With the one-exp kernels off (_core.unfused(): reduction, write pass and
per-sample fix-ups) the same bounds hold, and rows with NaN / inf / all
-inf come out bit for bit as there.
"""
import numpy as np
import pytest

import csoftmax
from _helpers import fused_kernels
from test_ce_store import _ulps

SIZES = [1, 2, 3, 7, 8, 9, 10, 16, 17, 31, 32]
ULP = 4.0


def exact_ce(x, t, *, weight=None, temperature=1.0, reduction="sum",
             ignore_index=-100):
    """(per-sample loss, gradient) in float64 without cancellation."""
    z = np.asarray(x, dtype=np.float64) / temperature
    B, C = z.shape
    rows = np.arange(B)
    keep = t != ignore_index
    tc = np.where(keep, t, 0)
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    wy = np.where(keep, w[tc], 0.0)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    p = e / e.sum(axis=1, keepdims=True)
    zt = z[rows, tc]
    near = zt >= m[:, 0] - 1.0        # target near the max: log1p form
    with np.errstate(over="ignore", invalid="ignore"):
        rel = np.exp(z - np.where(near, zt, m[:, 0])[:, None])
    rel[rows, tc] = 0.0
    with np.errstate(invalid="ignore"):
        li = np.where(near, np.log1p(rel.sum(axis=1)),
                      (m[:, 0] - zt) + np.log(e.sum(axis=1)))
    loss = np.where(keep, wy * li, 0.0)
    others = p.copy()
    others[rows, tc] = 0.0
    d = p.copy()
    d[rows, tc] = -others.sum(axis=1)               # p_t - 1, exactly
    s = 1.0 / temperature
    if reduction == "mean":
        s /= wy.sum()
    return loss, d * (wy * s)[:, None]


def _logits(kind, rows, C, rng):
    x = rng.standard_normal((rows, C)).astype(np.float32)
    if kind == "wide":
        x *= 40
    elif kind == "shifted":
        x = x * 3 - 1e4
    elif kind == "dominant":                      # p_t -> 1 and p_t -> 0
        x[:, C // 2] = 30.0
    elif kind == "ties":
        x = np.round(x)
        x[:, ::3] = x.max()
    elif kind == "huge":                          # |x/T| > 2^20: no clamp
        x = (x * 3 + 3e6).astype(np.float32)
    return x


def _check(loss, g, x, t, **kw):
    rl, rg = exact_ce(x, t, **kw)
    u = _ulps(g, rg)
    assert u.max() <= ULP, f"grad {u.max():.2f} ULP at {np.unravel_index(u.argmax(), u.shape)}"
    ul = _ulps(loss, rl)
    assert ul.max() <= ULP, f"loss {ul.max():.2f} ULP at {ul.argmax()}"


@pytest.mark.parametrize("C", SIZES)
@pytest.mark.parametrize("kind", ["normal", "wide", "shifted", "dominant",
                                  "ties", "huge"])
def test_class_targets(C, kind, fused):
    rng = np.random.default_rng(C * 31 + len(kind))
    for rows in (1, 7, 9, 67):
        x = _logits(kind, rows, C, rng)
        t = rng.integers(0, C, rows)
        t[::5] = -100
        for T in (1.0, 0.3, 7.0):
            loss, g = csoftmax.cross_entropy(x, t, temperature=T,
                                             reduction="none", return_grad=True)
            _check(loss, g, x, t, temperature=T)
            assert np.all(g[t == -100] == 0)


@pytest.mark.parametrize("C", [3, 10, 32])
def test_weights_and_reductions(C, fused):
    rng = np.random.default_rng(C)
    x = _logits("wide", 41, C, rng)
    t = rng.integers(0, C, 41)
    t[3] = -100
    w = rng.uniform(0.1, 3.0, C)
    w[0] = 0.0
    for red in ("none", "sum", "mean"):
        loss, g = csoftmax.cross_entropy(x, t, weight=w, reduction=red,
                                         return_grad=True)
        rl, rg = exact_ce(x, t, weight=w, reduction=red)
        if red != "none":
            np.testing.assert_allclose(loss, rl.sum() / (1 if red == "sum"
                                       else w[t[t != -100]].sum()), rtol=1e-6)
        u = _ulps(g, rg)
        assert u.max() <= ULP, (red, u.max())


def test_coefficients_far_apart(fused):
    """weights 1e-40 .. 1e60: coefficients above 2^60 take the unclamped
    lanes (a clamped element's a * p would no longer round to 0), tiny ones
    give denormal gradients rounded once."""
    rng = np.random.default_rng(4)
    C = 10
    x = _logits("wide", 64, C, rng)
    t = np.arange(64) % C
    w = 10.0 ** np.array([-40, -30, -12, 0, 5, 17, 18, 19, 25, 30], dtype=np.float64)
    loss, g = csoftmax.cross_entropy(x, t, weight=w, reduction="none",
                                     return_grad=True)
    rl, rg = exact_ce(x, t, weight=w)
    assert _ulps(g, rg).max() <= ULP
    assert _ulps(loss, rl).max() <= ULP
    if not fused:
        # the two-pass path's reduction clamps elements ~120 below the max
        # (exp ~1e-52: invisible in an LSE, not once multiplied by 1e60)
        return
    # an element 210 below the max (under the short-row clamp, ~200) whose
    # a * p = 1e60 * exp(-210) is a normal float32
    # (and the target's a * (p_t - 1) = -a * p_j as well)
    x2 = np.zeros((8, 2), dtype=np.float32)
    x2[:, 1] = -210.0
    t2 = np.zeros(8, dtype=np.int64)
    w2 = np.full(2, 1e60)
    _, g2 = csoftmax.cross_entropy(x2, t2, weight=w2, reduction="sum",
                                   return_grad=True)
    _, rg2 = exact_ce(x2, t2, weight=w2)
    assert np.all(g2[:, 1] > 1e-32) and np.all(g2[:, 0] < -1e-32)
    assert _ulps(g2, rg2).max() <= ULP


def test_target_near_one():
    """p_t = 1 - tiny: the target entry is a * expm1(log p_t) from the
    max/count/rest state, not a cancelling p_t - 1."""
    for gap in (80.0, 40.0, 17.0, 5.0, 1.0, 0.3, 0.29, 0.0):
        x = np.zeros((9, 5), dtype=np.float32)
        x[:, 2] = gap
        t = np.full(9, 2)
        loss, g = csoftmax.cross_entropy(x, t, reduction="none",
                                         return_grad=True)
        _check(loss, g, x, t)
        if gap >= 17.0:
            assert np.all(loss > 0) and np.all(g[:, 2] < 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_rows_among_clean_rows(dtype, fused):
    rng = np.random.default_rng(11)
    C = 10
    x = _logits("normal", 16, C, rng).astype(dtype)
    x[1, 4] = np.nan
    x[2, 9] = np.inf
    x[3, :] = -np.inf
    x[4, 5] = -np.inf
    x[5, 0] = 1e30
    x[6, 3] = -1e30
    x[9, 2] = np.nan           # with a zero weight below: zeros, NaN target
    t = np.full(16, 2)
    x[12, 2] = -np.inf         # the target itself: p_t = 0, loss inf
    t[10] = -100
    loss, g = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True)
    clean = [0, 4, 5, 6, 7, 8, 10, 11, 13, 14, 15]
    _check_dt(loss[clean], g[clean], np.where(np.isneginf(x[clean]), -1e30, x[clean]),
              t[clean])
    assert np.isnan(loss[1]) and np.all(np.isnan(g[1]))
    assert loss[12] == np.inf and g[12, 2] == -1.0
    x12 = np.delete(x[12], 2).astype(np.float64)
    p12 = np.exp(x12 - x12.max()) / np.exp(x12 - x12.max()).sum()
    if dtype == np.float32:
        assert _ulps(np.delete(g[12], 2), p12).max() <= ULP
    else:
        np.testing.assert_allclose(np.delete(g[12], 2), p12, rtol=2e-15)
    with fused_kernels(False):
        loss2, g2 = csoftmax.cross_entropy(x, t, reduction="none",
                                           return_grad=True)
    np.testing.assert_array_equal(loss[1:4], loss2[1:4])
    np.testing.assert_array_equal(g[1:4], g2[1:4])
    # a zero class weight: zeros, and the target entry 0 * expm1(log p_t)
    w0 = np.ones(C)
    w0[2] = 0.0
    outs = []
    for flag in (True, False):
        with fused_kernels(flag):
            outs.append(csoftmax.cross_entropy(x, t, weight=w0, reduction="none",
                                               return_grad=True))
    (l1, g1), (l2, g2) = outs
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(l1, l2)
    assert np.isnan(g1[9, 2]) and np.all(g1[9, [0, 1, 3]] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 7, 10, 32])
def test_logsumexp_backward(C, dtype, fused):
    rng = np.random.default_rng(C)
    x = _logits("wide", 37, C, rng).astype(dtype)
    if dtype == np.float64:
        x += rng.standard_normal(x.shape) * 1e-3
    dy = rng.standard_normal(37)
    dy[::4] = 0.0
    dy[1] = -1e30              # |a| > 2^60: unclamped lanes
    dy[2] = 3e-39
    dy[5] = -2.5
    got = csoftmax.logsumexp_backward(x, dy)
    assert got.dtype == dtype
    z = x.astype(np.longdouble)
    d = z - z.max(axis=1, keepdims=True)
    e = np.exp(d)
    want = e / e.sum(axis=1, keepdims=True) * dy[:, None]
    if dtype == np.float32:
        assert _ulps(got, want.astype(np.float64)).max() <= ULP
    else:       # 8 ULP + the rounding of the arguments (see _check64)
        lS = np.log(e.sum(axis=1, keepdims=True))
        H = (np.abs(d) * e / e.sum(axis=1, keepdims=True)).sum(axis=1, keepdims=True)
        w64 = want.astype(np.float64)
        bound = 8 * np.spacing(np.abs(w64)) + \
            ((np.abs(d) + lS + H) * 2.0 ** -51 * np.abs(want)).astype(np.float64)
        assert np.all(np.abs(got - w64) <= bound)
    assert np.all(got[::4] == 0)
    xi = x.copy()
    csoftmax.logsumexp_backward(xi, dy, out=xi)
    np.testing.assert_array_equal(xi, got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_in_place_and_threads(dtype):
    """strided and reversed rows, grad_out=, in place (bit for bit the same
    as out of place), and 1 vs 2 threads (bit for bit)."""
    rng = np.random.default_rng(2)
    C = 10
    base = _logits("wide", 2 * 1003, C, rng).astype(dtype)
    t = rng.integers(0, C, 1003)
    ref_loss, ref_g = csoftmax.cross_entropy(np.ascontiguousarray(base[::-2]), t,
                                             reduction="none", return_grad=True)
    _check_dt(ref_loss, ref_g, base[::-2], t)
    for x in (base[::-2], base[::2], base[:1003], base[:, ::-1][::2]):
        loss, g = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True)
        _check_dt(loss, g, x, t)
        buf = np.full(x.shape[::-1], 7.0, dtype=dtype).T
        _, g2 = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True,
                                       grad_out=buf)
        assert g2 is buf
        np.testing.assert_array_equal(buf, g)
    xi = np.ascontiguousarray(base[::-2])
    _, gi = csoftmax.cross_entropy(xi, t, reduction="none", return_grad=True,
                                   grad_out=xi)
    assert gi is xi
    np.testing.assert_array_equal(xi, ref_g)
    x = np.ascontiguousarray(base)
    tt = rng.integers(0, C, x.shape[0])
    res = []
    for n in (1, 2):
        prev = csoftmax.set_num_threads(n)
        try:
            res.append(csoftmax.cross_entropy(x, tt, reduction="none",
                                              return_grad=True))
        finally:
            csoftmax.set_num_threads(prev)
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])


def test_row_result_does_not_depend_on_lane():
    """each row, alone or in any lane of a group (8 rows, 16 on AVX-512),
    gives the same bits."""
    rng = np.random.default_rng(8)
    C = 9
    x = _logits("wide", 37, C, rng)
    x[4, 1] = np.nan
    x[20, 3] = np.inf
    t = rng.integers(0, C, 37)
    _, g = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True)
    for r in range(37):
        _, g1 = csoftmax.cross_entropy(x[r:r + 1], t[r:r + 1], reduction="none",
                                       return_grad=True)
        np.testing.assert_array_equal(g1[0], g[r])
    # coefficients in and out of the float32 rescale's range (|a| / S up to
    # 2^13), zero among them: the out-of-range lanes are redone alone
    w = np.array([1.0, 0.0, 1e-40, 3e4, 1e6, 0.5, 2.0, 8191.0, 1e-25])
    _, g = csoftmax.cross_entropy(x, t, weight=w, reduction="none", return_grad=True)
    for r in range(37):
        _, g1 = csoftmax.cross_entropy(x[r:r + 1], t[r:r + 1], weight=w,
                                       reduction="none", return_grad=True)
        np.testing.assert_array_equal(g1[0], g[r])



# -- float64 ------------------------------------------------------------------

def _check_dt(loss, g, x, t, **kw):
    if g.dtype == np.float32:
        _check(loss, g, x, t, **kw)
    else:
        _check64(loss, g, x, t, **kw)


def exact_ce64(x, t, *, weight=None, temperature=1.0):
    """Per-sample loss, gradient, the exponent arguments d = scale*(x - max)
    and log S = log sum exp(d), in longdouble for float64 logits with the
    library's definition z = scale * x, scale = 1/T in float64 (softmax is
    shift-invariant; x - max is exact here).  The float64 rounding of d
    (2^-53 |d|) is the inherent error of a float64 computation."""
    xl = np.asarray(x, dtype=np.longdouble)
    B, C = xl.shape
    rows = np.arange(B)
    scale = np.longdouble(np.float64(1.0) / np.float64(temperature))
    d = (xl - xl.max(axis=1, keepdims=True)) * scale
    keep = t != -100
    tc = np.where(keep, t, 0)
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    wy = np.where(keep, w[tc], 0.0).astype(np.longdouble)
    e = np.exp(d)
    S = e.sum(axis=1)
    p = e / S[:, None]
    dt = d[rows, tc]
    near = dt >= -1.0
    with np.errstate(over="ignore", invalid="ignore"):
        rel = np.exp(d - np.where(near, dt, 0.0)[:, None])
    rel[rows, tc] = 0.0
    li = np.where(near, np.log1p(rel.sum(axis=1)), -dt + np.log(S))
    others = p.copy()
    others[rows, tc] = 0.0
    g = p.copy()
    g[rows, tc] = -others.sum(axis=1)
    g = g * (wy * scale)[:, None]
    return wy * li, g, d, np.log(S), wy * scale


def _check64(loss, g, x, t, **kw):
    """Each gradient entry within 8 float64 ULP + delta * size, delta =
    2^-51 (|d| + log S + sum_j p_j |d_j| + C R / 4) (the rounding of its
    exponent argument: d itself, log S through the terms' arguments and the
    summation of the terms below the max, R their share of the sum), size =
    |g| (the target entry a * expm1(lp): a * p_t); the loss within 8 ULP +
    delta_t * w_t."""
    rl, rg, d, lS, a = exact_ce64(x, t, **kw)
    rows = np.arange(g.shape[0])
    tc = np.where(t != -100, t, 0)
    H = (np.abs(d) * np.exp(d - lS[:, None])).sum(axis=1)    # sum p_j |d_j|
    # the sum of the n terms below the max (sequential in the scalar
    # kernels): relative error n 2^-53 of their share R of the sum
    R = np.where(d < 0, np.exp(d - lS[:, None]), 0.0).sum(axis=1)
    delta = (np.abs(d) + (lS + H + d.shape[1] * R / 4)[:, None]) * 2.0 ** -51
    size = np.abs(rg)
    size[rows, tc] = np.abs(a) * np.exp(d[rows, tc] - lS)
    rg64 = rg.astype(np.float64)
    bound = 8 * np.spacing(np.abs(rg64)) + (delta * size).astype(np.float64)
    err = np.abs(g - rg64)
    assert np.all(err <= bound), f"grad {np.max(err / bound):.3f} x bound"
    rl64 = rl.astype(np.float64)
    wy = np.abs(a) * np.float64(temperature_of(kw))
    lb = 8 * np.spacing(np.abs(rl64)) + (delta[rows, tc] * wy).astype(np.float64)
    le = np.abs(np.asarray(loss) - rl64)
    assert np.all(le <= lb), f"loss {np.max(le / lb):.3f} x bound"
    return max(np.max(err / bound), np.max(le / lb))


def temperature_of(kw):
    return kw.get("temperature", 1.0)


@pytest.mark.parametrize("C", SIZES)
@pytest.mark.parametrize("kind", ["normal", "wide", "shifted", "dominant",
                                  "ties", "huge"])
def test_class_targets_f64(C, kind, fused):
    rng = np.random.default_rng(C * 17 + len(kind))
    for rows in (1, 3, 5, 67):
        x = _logits(kind, rows, C, rng).astype(np.float64)
        x += rng.standard_normal(x.shape) * 1e-3     # use the float64 mantissa
        t = rng.integers(0, C, rows)
        t[::5] = -100
        w = rng.uniform(0.5, 2.0, C)
        for T in (1.0, 0.3, 7.0):
            loss, g = csoftmax.cross_entropy(x, t, temperature=T, weight=w,
                                             reduction="none", return_grad=True)
            _check64(loss, g, x, t, temperature=T, weight=w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,axis", [(40, -1), (300, -1), (5, 0), (21, 0)])
def test_target_near_one_fixup_paths(C, axis, dtype, fused):
    """The paths this kernel does not take (rows longer than 32, columns)
    compute the target entries a block at a time (expm1_le0_f64): p_t from
    1 - 1e-35 to ~0, both sides of the exp(t) - 1 / series switch at -0.3."""
    gaps = np.array([80.0, 40.0, 17.0, 9.0, 5.0, 3.0, 1.0, 0.3, 0.2, 0.0, -2.0])
    x = np.zeros((gaps.size * 7, C), dtype=dtype)
    x[:, 1] = np.repeat(gaps, 7)
    x += (np.arange(x.shape[0])[:, None] % 7) * 1e-3 * (np.arange(C) % 3)
    t = np.full(x.shape[0], 1)
    xa = x if axis == -1 else np.ascontiguousarray(x.T)
    loss, g = csoftmax.cross_entropy(xa, t, axis=axis, reduction="none",
                                     return_grad=True)
    g = g if axis == -1 else g.T
    _check_dt(loss, g, x.astype(dtype), t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_same_with_and_without_gradient(dtype, isa):
    """The loss is the same number whether or not the gradient is asked for
    (the gradient's kernel and the loss-only reduction agree on max and
    log_sum), for every short-row length, temperatures, coefficients in and
    out of the float32 rescale's range, special rows and ignored samples."""
    rng = np.random.default_rng(21)
    # past the short rows: the stored-terms reduction (FUSED, with the
    # gradient) against the two-pass one (the loss alone), tails of more
    # than one half-step included (39, 47, 63: AVX2; 41-47, 59: AVX-512).
    # float64 rows past CHUNK = 2048 classes are left out: there the
    # two-pass reduction merges per-chunk sums, the stored terms take one
    # row max (docs/accuracy.md)
    Cs = (1, 2, 7, 10, 16, 31, 32, 33, 39, 41, 47, 48, 59, 63, 64, 127, 1000, 2047,
          2048)
    for C in Cs:
        x = (rng.standard_normal((53, C)) * 3).astype(dtype)
        x[3, 0] = np.nan
        x[7, -1] = np.inf
        x[9] = -np.inf
        x[11, 0] = 1e30
        t = rng.integers(0, C, 53)
        t[5] = -100
        w = np.exp(rng.uniform(-60, 25, C))
        for kw in ({}, {"temperature": 0.37}, {"temperature": 3.0}, {"weight": w}):
            l1, _ = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True, **kw)
            l2 = csoftmax.cross_entropy(x, t, reduction="none", **kw)
            np.testing.assert_array_equal(np.asarray(l1), np.asarray(l2), err_msg=f"C={C} {kw}")
