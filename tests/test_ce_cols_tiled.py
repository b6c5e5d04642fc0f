"""float32 cross-entropy along a non-last axis through column tiles: blocks
of up to 1024 columns are copied into contiguous tiles (the class rows of x
are usually a multiple of 4 KiB apart and share cache sets), the reduction
keeps its terms in the gradient tile and the write pass rescales them
(lse_store_cols_f32 / softmax_scale_cols_f32), and the gradient tile is
streamed out (copy_rows_nt_f32).

Checked as the row version (test_ce_store): gradient entries other than the
target within 4 float32 ULP of float64, the rest against the reference;
columns the store kernel does not take (NaN, inf, all -inf) and columns
whose rescale factor leaves its range must come out as they do with the
tiles off (_core.unfused()).
"""
import numpy as np
import pytest

import csoftmax

from _helpers import fused_kernels
from test_ce_store import _ulps
from test_cross_entropy import ref_ce


def _check(g, want, t, axis, what):
    g = np.moveaxis(np.asarray(g, dtype=np.float64), axis, -1)
    want = np.moveaxis(want, axis, -1)
    mask = np.ones(g.shape, dtype=bool)
    np.put_along_axis(mask, t[..., None], False, -1)
    u = np.where(mask, _ulps(g, want), 0.0)
    assert u.max() <= 4.0, f"{what}: {u.max():.2f} ULP"
    gt = np.take_along_axis(g, t[..., None], -1)
    wt = np.take_along_axis(want, t[..., None], -1)
    scale = np.abs(want).max()
    np.testing.assert_allclose(gt, wt, rtol=2e-6, atol=2e-7 * scale, err_msg=what)


def _untiled(f):
    with fused_kernels(False):
        return f()


@pytest.mark.parametrize("C", [2, 21, 100, 130])      # 130: too many rows for tiles
@pytest.mark.parametrize("inner", [64, 100, 1000, 1500])
@pytest.mark.parametrize("temperature", [1.0, 0.4])
def test_class_targets(C, inner, temperature, threads):
    rng = np.random.default_rng(C * inner)
    x = (rng.standard_normal((2, C, inner)) * 4).astype(np.float32)
    x[0, :, 5] += 300.0 * (np.arange(C) == 1)       # a dominant class
    x[1, :, 7] -= 1e4                               # a shifted column
    t = rng.integers(0, C, (2, inner))
    loss, g = csoftmax.cross_entropy(x, t, axis=1, temperature=temperature,
                                     reduction="sum", return_grad=True)
    rl, rg = ref_ce(x, t, axis=1, temperature=temperature, reduction="sum")
    np.testing.assert_allclose(loss, rl, rtol=2e-6)
    _check(g, rg, t, 1, f"C={C} inner={inner} T={temperature}")
    l2, g2 = _untiled(lambda: csoftmax.cross_entropy(
        x, t, axis=1, temperature=temperature, reduction="sum", return_grad=True))
    np.testing.assert_allclose(loss, l2, rtol=1e-6)
    assert _ulps(g, g2).max() <= 4.0


def test_special_columns_match_untiled(threads):
    rng = np.random.default_rng(3)
    C, inner = 21, 200
    x = (rng.standard_normal((2, C, inner)) * 3).astype(np.float32)
    x[0, 3, 0] = np.nan                 # NaN column (first 16-column group)
    x[0, 5, 17] = np.inf                # +inf column
    x[0, :, 40] = -np.inf               # all -inf column
    x[1, 4, 90] = -np.inf               # one -inf in a finite column
    x[1, 2, 33] = 3e38                  # no representable clamp
    t = np.full((2, inner), 2)
    with np.errstate(all="ignore"):
        got = csoftmax.cross_entropy(x, t, axis=1, reduction="none",
                                     return_grad=True)
        want = _untiled(lambda: csoftmax.cross_entropy(
            x, t, axis=1, reduction="none", return_grad=True))
    special = np.zeros((2, inner), dtype=bool)
    special[0, [0, 17, 40]] = True
    special[1, 33] = True
    gs, ws = np.moveaxis(got[1], 1, -1), np.moveaxis(want[1], 1, -1)
    np.testing.assert_array_equal(got[0][special], want[0][special])
    np.testing.assert_array_equal(gs[special], ws[special])
    np.testing.assert_allclose(got[0][~special], want[0][~special], rtol=1e-6)
    assert _ulps(gs[~special], ws[~special]).max() <= 4.0


def test_weights_smoothing_ignore_probabilities(threads):
    """coefficients far apart (rescale factor out of range -> written from
    x), ignored samples, label smoothing and probability targets"""
    rng = np.random.default_rng(4)
    C, inner = 21, 300
    x = (rng.standard_normal((2, C, inner)) * 3).astype(np.float32)
    t = rng.integers(0, C, (2, inner))
    t[0, ::7] = -100
    w = np.where(np.arange(C) % 2, 1e20, 1e-20)
    for kw in ({"weight": w}, {"label_smoothing": 0.1}, {}):
        loss, g = csoftmax.cross_entropy(x, t, axis=1, reduction="sum",
                                         return_grad=True, **kw)
        rl, rg = ref_ce(x, t, axis=1, reduction="sum", **kw)
        np.testing.assert_allclose(loss, rl, rtol=2e-6)
        scale = np.abs(rg).max()
        assert np.all(np.abs(g - rg) <= 4e-7 * scale + 1e-45), kw
        assert np.all(np.moveaxis(g, 1, -1)[t == -100] == 0)
    q = rng.dirichlet(np.ones(C), size=(2, inner)).astype(np.float32)
    q = np.moveaxis(q, -1, 1)
    loss, g = csoftmax.cross_entropy(x, q, axis=1, reduction="sum",
                                     return_grad=True)
    rl, rg = ref_ce(x, q, axis=1, reduction="sum")
    np.testing.assert_allclose(loss, rl, rtol=2e-6)
    assert np.all(np.abs(g - rg) <= 4e-7 * np.abs(rg).max())


def test_in_place_strided_and_backward(threads):
    rng = np.random.default_rng(5)
    C, inner = 21, 1100
    base = (rng.standard_normal((3, C, inner)) * 3).astype(np.float32)
    t = rng.integers(0, C, (3, inner))
    _, want = ref_ce(base, t, axis=1, reduction="sum")
    x = base.copy()
    _, g = csoftmax.cross_entropy(x, t, axis=1, reduction="sum",
                                  return_grad=True, grad_out=x)
    assert g is x
    _check(x, want, t, 1, "in place")
    out = np.full((3, 2 * C, inner), np.nan, np.float32)[:, ::-2, :]
    _, g = csoftmax.cross_entropy(base, t, axis=1, reduction="sum",
                                  return_grad=True, grad_out=out)
    assert g is out
    _check(out, want, t, 1, "reversed strided grad_out")
    dy = rng.standard_normal((3, inner)).astype(np.float32)
    dy[0, :50] = -dy[0, :50] * 1e-30
    gb = csoftmax.logsumexp_backward(base, dy, axis=1)
    x64 = base.astype(np.float64)
    p = np.exp(x64 - x64.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert _ulps(gb, p * dy.astype(np.float64)[:, None, :]).max() <= 4.0
