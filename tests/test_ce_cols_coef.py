"""Per-sample coefficients along a non-last axis.

A column of a (outer, C, inner) array is one sample, so the cross-entropy
machinery's per-sample work (_ce_samples, _ce_prepare, _ce_fixup in
_losses.pxi) runs once per C elements.  Its fast paths: class targets
without smoothing take the target entries only and zero the ignored
columns; ignored and zero-coefficient columns keep a finite log_sum (the
fix-up zeroes them, so their neighbours keep the fast column kernel); a
block with 8 or more negative coefficients (logsumexp_backward's signs)
flips them in one pass along the rows.

Each is checked against the float64 reference (the accuracy contract of
the op: assert_within) on every kernel table and column path, with NaN and
inf in ignored columns, zero and negative coefficients, few and many
negative signs per block, float32 and float64.
"""
import numpy as np
import pytest

import csoftmax
from csoftmax import _core

import _helpers as H

PATHS = ["COLS_BLOCKS", "COLS_TILED"]   # (COLS_TILED: float32 only)


def _data(rng, dtype, shape=(2, 21, 100)):
    return (rng.standard_normal(shape) * 3).astype(dtype)


def _run_forced(op, path, dtype, f):
    if path == "COLS_TILED" and np.dtype(dtype) != np.float32:
        pytest.skip("the column tiles are float32 only")
    try:
        ctx = _core.forced(op, path)
    except Exception as e:
        pytest.skip(f"{op} cannot force {path}: {e}")
    try:
        with ctx:
            return f()
    except ValueError as e:
        if "cannot" in str(e) or "path" in str(e):
            pytest.skip(f"{op} {path}: {e}")
        raise


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", PATHS)
def test_ignored_columns(isa, dtype, path):
    """ignore_index on about 1 column in 6, some of them holding NaN / inf:
    those give loss 0 and a zero gradient column; the rest the reference."""
    rng = np.random.default_rng(11)
    x = _data(rng, dtype)
    t = rng.integers(0, 21, (2, 100))
    ign = rng.random((2, 100)) < 0.17
    ign[0, :3] = True
    t[ign] = -100
    x[0, 4, 0] = np.nan          # ignored columns with non-finite entries
    x[0, 7, 1] = np.inf
    x[0, :, 2] = -np.inf
    xr = np.where(np.isfinite(x), x, 0).astype(dtype)   # the reference's input
    loss, g = _run_forced("cross_entropy", path, dtype, lambda: csoftmax.cross_entropy(
        x, t, axis=1, reduction="none", return_grad=True))
    rl, rg = H.ref_ce(xr, t, axis=1, reduction="none")
    assert np.all(loss[ign] == 0)
    assert np.all(g.transpose(0, 2, 1)[ign] == 0)
    H.assert_within(loss, rl, "cross_entropy", what=f"{path} loss")
    H.assert_within(g, rg, "cross_entropy_grad", what=f"{path} grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", PATHS)
def test_class_weights_zero_and_ignored(isa, dtype, path):
    """Class weights that differ per column (one zero weight: a zero
    coefficient) together with ignored columns."""
    rng = np.random.default_rng(12)
    x = _data(rng, dtype)
    t = rng.integers(0, 21, (2, 100))
    t[rng.random((2, 100)) < 0.1] = 5
    t[:, ::9] = -100
    w = rng.random(21) + 0.25
    w[5] = 0.0
    loss, g = _run_forced("cross_entropy", path, dtype, lambda: csoftmax.cross_entropy(
        x, t, axis=1, weight=w, reduction="sum", return_grad=True))
    rl, rg = H.ref_ce(x, t, axis=1, weight=w, reduction="sum")
    assert np.all(g.transpose(0, 2, 1)[t == 5] == 0)
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what=f"{path} loss")
    H.assert_within(g, rg, "cross_entropy_grad", what=f"{path} grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("signs", ["few", "half", "all"])
def test_logsumexp_backward_signs(isa, dtype, path, signs):
    """softmax(x) * dy with dy of random magnitude: a few negative signs per
    block (each column flipped alone), half and all negative (one pass
    along the rows), zeros (zero coefficients) and a NaN column in x."""
    rng = np.random.default_rng(13)
    x = _data(rng, dtype)
    dy = rng.random((2, 100)) * 10 + 0.1
    neg = {"few": rng.random((2, 100)) < 0.05, "half": rng.random((2, 100)) < 0.5,
           "all": np.ones((2, 100), bool)}[signs]
    dy[neg] *= -1
    dy[1, 10:13] = 0.0
    dy[0, 50] = 1e-300 if dtype == np.float64 else 1e-30
    x[1, 3, 40] = np.nan
    got = _run_forced("logsumexp_backward", path, dtype,
                      lambda: csoftmax.logsumexp_backward(x, dy, axis=1))
    assert np.isnan(got[1, :, 40]).all()
    ok = np.ones(100, bool)
    ok[40] = False
    ref = H.ref_logsumexp_bwd(x[:, :, ok], dy[:, ok], axis=1)
    H.assert_within(got[:, :, ok], ref, "logsumexp_backward", what=f"{path} {signs}")
    # the sign of every finite entry is the sign of its coefficient
    s = np.sign(got[:, :, ok]).transpose(0, 2, 1)
    want = np.sign(dy[:, ok])[..., None] * np.ones_like(s)
    nz = s != 0
    assert np.array_equal(s[nz], want[nz])
