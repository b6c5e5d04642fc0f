"""float32 cross-entropy gradient through the AVX2 store + rescale kernels
(lse_store_rows_f32 / softmax_scale_rows_f32: the reduction keeps its terms
in the gradient, the write pass rescales them -- one exp per element).

Checked element by element, not against the largest entry: every gradient
entry other than the target's is coef * p_i, so it must be within 4 float32
ULP of the float64 reference (the softmax bound) wherever the reference is a
normal float32; the target entry and the loss as in test_cross_entropy.
The same calls with the kernels switched off (_core.unfused(): reduction
+ exp write pass) must agree to the same bound, and rows the store kernel
does not take (NaN, inf, all -inf, short) must come out as they do there.
"""
import numpy as np
import pytest

import csoftmax

import _helpers as H
from _helpers import fused_kernels
from test_cross_entropy import ref_ce

TINY = np.finfo(np.float32).tiny


def _ulps(got, want):
    """|got - want| in float32 ULPs of want (normal range; 0 elsewhere)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    sp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    with np.errstate(invalid="ignore"):             # inf - inf, set to 0 below
        err = np.abs(got - want) / sp
    both_inf = np.isinf(got) & (got == want)
    err = np.where(both_inf, 0.0, err)
    return np.where(np.abs(want) >= TINY, err, 0.0)


def _logits(kind, rows, C, rng):
    x = rng.standard_normal((rows, C)).astype(np.float32)
    if kind == "wide":
        x *= 40
    elif kind == "shifted":
        x = x * 3 - 1e4
    elif kind == "dominant":
        x[:, C // 3] = 200.0
    elif kind == "ties":
        x = np.round(x)
        x[:, ::7] = x.max()
    elif kind == "underflow":
        x *= 60
        x[:, 5] = 400.0
    return x


def _check_grad(g, want, t, what):
    """Every entry at the contract: 4 ULP + 2^-36 x the cancelling terms
    (want: an H.ref_ce gradient, carrying cond)."""
    H.assert_within(g, want, "cross_entropy_grad", what=what)


@pytest.mark.parametrize("C", [33, 64, 65, 1000, 2049, 5000])
@pytest.mark.parametrize("kind", ["normal", "wide", "shifted", "dominant",
                                  "ties", "underflow"])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_class_targets(C, kind, temperature, fused):
    rng = np.random.default_rng(C)
    x = _logits(kind, 70, C, rng)           # 70 rows: two row blocks
    t = rng.integers(0, C, x.shape[0])
    loss, g = csoftmax.cross_entropy(x, t, temperature=temperature,
                                     reduction="sum", return_grad=True)
    rl, rg = H.ref_ce(x, t, temperature=temperature, reduction="sum")
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what="loss")
    _check_grad(g, rg, t, f"C={C} {kind} T={temperature}")


@pytest.mark.parametrize("C", [40, 1000])
def test_smoothing_weights_ignore(C, fused):
    rng = np.random.default_rng(7)
    x = _logits("normal", 50, C, rng)
    t = rng.integers(0, C, x.shape[0])
    t[3] = -100
    t[17] = -100
    w = rng.uniform(0.1, 3.0, C)
    for red in ("mean", "sum", "none"):
        loss, g = csoftmax.cross_entropy(x, t, weight=w, label_smoothing=0.1,
                                         reduction=red, return_grad=True)
        rl, rg = H.ref_ce(x, t, weight=w, label_smoothing=0.1, reduction=red)
        H.assert_within(np.asarray(loss), rl, "cross_entropy", what=f"loss {red}")
        assert np.all(g[[3, 17]] == 0)
        # every entry coef (p_i A - w_i eps/C), which may cancel: per element
        # 4 ULP + 2^-36 (p_i |A| + w_i eps/C) coef
        H.assert_within(g, rg, "cross_entropy_grad", what=red)


def test_probability_targets(fused):
    rng = np.random.default_rng(3)
    x = _logits("wide", 20, 300, rng)
    q = rng.dirichlet(np.ones(300), size=20).astype(np.float32)
    loss, g = csoftmax.cross_entropy(x, q, reduction="sum", return_grad=True)
    rl, rg = H.ref_ce(x, q, reduction="sum")
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what="loss")
    H.assert_within(g, rg, "cross_entropy_grad", what="probability targets")


def test_coefficients_far_apart(fused):
    """class weights 1e-30 .. 1: rows whose rescale factor leaves the fast
    range take the write pass from x; all rows stay accurate."""
    rng = np.random.default_rng(5)
    C = 200
    x = _logits("normal", 40, C, rng)
    t = np.arange(40) % C
    w = np.ones(C)
    w[: 20] = 10.0 ** -np.arange(20, 40, 1.0)   # 1e-20 .. 1e-39
    _, g = csoftmax.cross_entropy(x, t, weight=w, reduction="sum",
                                  return_grad=True)
    _, rg = ref_ce(x, t, weight=w, reduction="sum")
    _check_grad(g, rg, t, "weights 1e-20..1e-39")


def test_special_rows_among_clean_rows(fused):
    rng = np.random.default_rng(11)
    C = 100
    x = _logits("normal", 8, C, rng)
    x[1, 4] = np.nan
    x[2, 9] = np.inf
    x[3, :] = -np.inf
    x[4, 50] = -np.inf
    t = np.full(8, 2)
    loss, g = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True)
    clean = [0, 4, 5, 6, 7]
    # (the reference's 0 * log 0 would be NaN: -inf -> -1e30, same result)
    rl_c, rg_c = ref_ce(np.where(np.isneginf(x[clean]), -1e30, x[clean]),
                        t[clean], reduction="none")
    rl = np.zeros(8)
    rl[clean] = rl_c
    rg = np.zeros(x.shape)
    rg[clean] = rg_c
    H.assert_within(loss[clean], rl_c, "cross_entropy", what="clean rows loss")
    _check_grad(g[clean], rg_c, t[clean], "clean rows")
    assert np.isnan(loss[1]) and np.all(np.isnan(g[1]))
    with fused_kernels(False):
        loss2, g2 = csoftmax.cross_entropy(x, t, reduction="none",
                                           return_grad=True)
    np.testing.assert_array_equal(loss[1:4], loss2[1:4])
    np.testing.assert_array_equal(g[1:4], g2[1:4])


@pytest.mark.parametrize("C", [65, 3000])
def test_store_matches_write_path(C):
    rng = np.random.default_rng(C)
    x = _logits("wide", 64, C, rng)
    t = rng.integers(0, C, 64)
    out = []
    for flag in (True, False):
        with fused_kernels(flag):
            out.append(csoftmax.cross_entropy(x, t, reduction="none",
                                              return_grad=True))
    (l1, g1), (l2, g2) = out
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    assert _ulps(g1, g2).max() <= 4.0


def test_layouts(fused):
    """negative and non-unit row strides, grad_out=, and grad_out=logits
    (in place: the store kernels must not be used, x is still read)."""
    rng = np.random.default_rng(2)
    C = 500
    base = _logits("normal", 40, C, rng)
    t = rng.integers(0, C, 20)
    _, want = ref_ce(base[::-2], t, reduction="sum")
    for x in (base[::-2], base[::2]):
        _, rg = ref_ce(x, t, reduction="sum")
        _, g = csoftmax.cross_entropy(x, t, reduction="sum", return_grad=True)
        _check_grad(g, rg, t, "strided")
        buf = np.full((20, C), 7.0, dtype=np.float32)
        _, g2 = csoftmax.cross_entropy(x, t, reduction="sum",
                                       return_grad=True, grad_out=buf)
        assert g2 is buf
        _check_grad(buf, rg, t, "grad_out")
    x = np.ascontiguousarray(base[::-2])
    _, g = csoftmax.cross_entropy(x, t, reduction="sum", return_grad=True,
                                  grad_out=x)
    assert g is x
    _check_grad(x, want, t, "in place")


def test_logsumexp_backward_negative_upstream(fused):
    """the per-sample coefficient (upstream gradient) may be negative or
    span many orders of magnitude"""
    rng = np.random.default_rng(9)
    x = _logits("normal", 12, 700, rng)
    dy = np.array([1.0, -2.0, 1e-30, -1e-25, 3e4, 0.0, 1.0, -1.0, 2.5,
                   1e-3, -7.0, 1e20], dtype=np.float32)
    g = csoftmax.logsumexp_backward(x, dy, axis=-1)
    x64 = x.astype(np.float64)
    p = np.exp(x64 - x64.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = p * dy.astype(np.float64)[:, None]
    u = _ulps(g, want)
    assert u.max() <= 4.0, u.max()
    assert np.all(g[5] == 0)


# ---------------------------------------------------------------------------
# float64: lse_store_rows_f64 / softmax_scale_rows_f64 (terms exp(s (x - M))
# kept in the gradient, rescaled by alpha exp(-log_sum) when that is in
# [2^-60, 1]; other rows written from x)

def _rel64(g, want, t):
    """max relative error of the non-target entries (normal range)."""
    g = np.asarray(g, dtype=np.float64)
    mask = np.ones(g.shape, dtype=bool)
    if t is not None:
        mask[np.arange(g.shape[0]), t] = False
    ok = mask & (np.abs(want) >= 1e-290)
    err = np.abs(g - want) / np.where(ok, np.abs(want), 1.0)
    return np.where(ok, err, 0.0).max()


@pytest.mark.parametrize("C", [8, 9, 64, 1000, 5000])
@pytest.mark.parametrize("kind", ["normal", "wide", "shifted", "dominant",
                                  "ties", "underflow"])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_float64_class_targets(C, kind, temperature, fused):
    rng = np.random.default_rng(C + 1)
    x = _logits(kind, 70, C, rng).astype(np.float64)
    t = rng.integers(0, C, x.shape[0])
    loss, g = csoftmax.cross_entropy(x, t, temperature=temperature,
                                     reduction="sum", return_grad=True)
    rl, rg = ref_ce(x, t, temperature=temperature, reduction="sum")
    np.testing.assert_allclose(loss, rl, rtol=1e-12)
    # exp(s (x - M)) then one product: ~|s (x - M)| ulps of the argument;
    # the reference's own x / T rounds by ~|x / T| ulps (shifted rows)
    tol = 2e-13 + 8 * 2.0 ** -52 * np.abs(x).max() / temperature
    assert _rel64(g, rg, t) <= tol, f"C={C} {kind} T={temperature}"
    rows = np.arange(x.shape[0])
    np.testing.assert_allclose(g[rows, t], rg[rows, t], rtol=1e-12,
                               atol=tol * np.abs(rg).max())


def test_float64_special_rows_and_weights(fused):
    rng = np.random.default_rng(13)
    C = 100
    x = rng.standard_normal((10, C))
    x[1, 4] = np.nan
    x[2, 9] = np.inf
    x[3, :] = -np.inf
    x[4, 50] = -np.inf
    t = np.arange(10) % C
    w = np.ones(C)
    w[5:10] = [1e30, 1e-30, 1e-300, 3.0, 1e200]     # factor above 1 / tiny
    with np.errstate(all="ignore"):
        loss, g = csoftmax.cross_entropy(x, t, weight=w, reduction="none",
                                         return_grad=True)
        loss2, g2 = _unfused64(x, t, w)
    np.testing.assert_array_equal(loss[1:4], loss2[1:4])
    np.testing.assert_array_equal(g[1:4], g2[1:4])
    clean = [0, 4, 5, 6, 7, 8, 9]
    rl, rg = ref_ce(np.where(np.isneginf(x[clean]), -1e300, x[clean]), t[clean],
                    weight=w, reduction="none")
    np.testing.assert_allclose(loss[clean], rl, rtol=1e-12)
    assert _rel64(g[clean], rg, t[clean]) <= 2e-13


def _unfused64(x, t, w):
    with fused_kernels(False):
        return csoftmax.cross_entropy(x, t, weight=w, reduction="none",
                                      return_grad=True)


def test_float64_in_place_and_backward(fused):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((30, 700)) * 5
    t = rng.integers(0, 700, 30)
    _, want = ref_ce(x, t, reduction="sum")
    xx = x.copy()
    _, g = csoftmax.cross_entropy(xx, t, reduction="sum", return_grad=True,
                                  grad_out=xx)
    assert g is xx
    assert _rel64(xx, want, t) <= 2e-13
    dy = np.array([1.0, -2.0, 1e-300, -1e-25, 3e4] + [0.5] * 25)
    gb = csoftmax.logsumexp_backward(x, dy, axis=-1)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert _rel64(gb, p * dy[:, None], None) <= 2e-13
