"""where= backward over rows and along a non-last axis (the masked backward
row and column kernels).

The float32 SIMD kernels copy dy (and y for softmax) with the masked
entries replaced by 0 and run the unmasked backward kernel on the copies,
then zero the masked outputs (src/simd/masked_bwd_f32_body.h); along a
non-last axis the same through tiles of 64 columns and the unmasked
column backward kernels.
Checked on every table against the float64 formula on the kept subset,
with NaN / inf / 1e30 in both y and dy at masked entries, lengths around
the vector width and past the stack copy (4096: malloc), a mask per row and
one broadcast over the rows, and out=dy in place.  Bound: the tolerance of
test_where.test_backward (float32 1e-5 relative to the row's largest
gradient; float64 1e-13).
"""
import numpy as np
import pytest

import csoftmax as cs


def _poison(a, wb, rng):
    a = a.copy()
    bad = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30], dtype=a.dtype)
    a[~wb] = bad[rng.integers(0, len(bad), int((~wb).sum()))]
    return a


def _want(y, dy, wb, log):
    yy = np.where(wb, y.astype(np.float64), -np.inf if log else 0.0)
    d = np.where(wb, dy.astype(np.float64), 0.0)
    if log:
        w = d - np.exp(yy) * d.sum(axis=-1, keepdims=True)
    else:
        w = yy * (d - (yy * d).sum(axis=-1, keepdims=True))
    return np.where(wb, w, 0.0)


def _close(got, want, dtype, what):
    tol = 1e-5 if dtype == np.float32 else 1e-13
    scale = np.abs(want).max(axis=-1, keepdims=True)
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= tol * np.abs(want) + tol * scale), (what, err.max())


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 1000, 4097])
@pytest.mark.parametrize("per_row", [True, False])
def test_rows_poisoned(isa, log, dtype, n, per_row, rng):
    x = rng.standard_normal((6, n)) * 3
    w = rng.random((6, n) if per_row else (n,)) < 0.6
    wb = np.broadcast_to(w, x.shape)
    fwd = cs.log_softmax if log else cs.softmax
    bwd = cs.log_softmax_backward if log else cs.softmax_backward
    y = fwd(x, where=w).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    got = bwd(_poison(y, wb, rng), _poison(dy, wb, rng), where=w)
    assert got.dtype == dtype
    assert np.all(got[~wb] == 0)
    _close(got, _want(y, dy, wb, log), dtype, f"n={n} per_row={per_row}")


@pytest.mark.parametrize("log", [False, True])
def test_rows_in_place(isa, log, rng):
    """out=dy: the kernels read their copies, so the output may be an input."""
    x = rng.standard_normal((5, 300)) * 3
    w = rng.random(x.shape) < 0.5
    fwd = cs.log_softmax if log else cs.softmax
    bwd = cs.log_softmax_backward if log else cs.softmax_backward
    y = fwd(x, where=w).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    want = bwd(y, dy, where=w)
    d2 = dy.copy()
    assert bwd(y, d2, where=w, out=d2) is d2
    np.testing.assert_array_equal(d2, want)
    _close(d2, _want(y, dy, w, log), np.float32, "in place")


@pytest.mark.parametrize("log", [False, True])
def test_rows_kept_non_finite(isa, log, rng):
    """A kept NaN / inf in dy makes the row's sum non-finite: the kept
    outputs follow the scalar masked kernel (NaN / inf where it has them),
    the masked ones stay 0."""
    from csoftmax import _core
    x = rng.standard_normal((3, 40)) * 3
    w = rng.random(x.shape) < 0.6
    w[:, :2] = True
    fwd = cs.log_softmax if log else cs.softmax
    bwd = cs.log_softmax_backward if log else cs.softmax_backward
    y = fwd(x, where=w).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dy[0, 1] = np.nan
    dy[1, 0] = np.inf
    dy[2, 1] = -np.inf
    got = bwd(y, dy, where=w)
    assert np.all(got[~w] == 0)
    prev = _core._use_isa("scalar")
    try:
        want = bwd(y, dy, where=w)
    finally:
        _core._use_isa(prev)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    assert np.all(np.isfinite(got[fin]))


def _want_axis(y, dy, wb, log, axis):
    yy = np.moveaxis(y, axis, -1)
    dd = np.moveaxis(dy, axis, -1)
    ww = np.moveaxis(wb, axis, -1)
    return np.moveaxis(_want(yy, dd, ww, log), -1, axis)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inner", [15, 16, 17, 64, 65, 130])
@pytest.mark.parametrize("n", [1, 21, 300])
def test_columns_poisoned(isa, log, dtype, inner, n, rng):
    shape = (2, n, inner)
    x = rng.standard_normal(shape) * 3
    w = rng.random(shape) < 0.6
    fwd = cs.log_softmax if log else cs.softmax
    bwd = cs.log_softmax_backward if log else cs.softmax_backward
    y = fwd(x, axis=1, where=w).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    got = bwd(_poison(y, w, rng), _poison(dy, w, rng), axis=1, where=w)
    assert got.dtype == dtype
    assert np.all(got[~w] == 0)
    want = _want_axis(y, dy, w, log, 1)
    _close(np.moveaxis(got, 1, -1), np.moveaxis(want, 1, -1), dtype,
           f"inner={inner} n={n}")


@pytest.mark.parametrize("log", [False, True])
def test_columns_in_place_broadcast_and_non_finite(isa, log, rng):
    """out=dy along axis 1; a mask broadcast over the columns (scalar
    kernel); a kept NaN / inf dy in some columns (NaN / inf where the scalar
    table has them, masked outputs 0)."""
    from csoftmax import _core
    shape = (3, 9, 70)
    x = rng.standard_normal(shape) * 3
    fwd = cs.log_softmax if log else cs.softmax
    bwd = cs.log_softmax_backward if log else cs.softmax_backward
    for w in (rng.random(shape) < 0.5, rng.random((3, 9, 1)) < 0.5):
        wb = np.broadcast_to(w, shape)
        y = fwd(x, axis=1, where=w).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        want = bwd(y, dy, axis=1, where=w)
        _close(np.moveaxis(want, 1, -1),
               np.moveaxis(_want_axis(y, dy, wb, log, 1), 1, -1), np.float32, "ref")
        d2 = dy.copy()
        assert bwd(y, d2, axis=1, where=w, out=d2) is d2
        np.testing.assert_array_equal(d2, want)
    w = rng.random(shape) < 0.6
    w[:, :2, :] = True
    y = fwd(x, axis=1, where=w).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    dy[0, 1, 3] = np.nan
    dy[1, 0, 40] = np.inf
    got = bwd(y, dy, axis=1, where=w)
    assert np.all(got[~w] == 0)
    prev = _core._use_isa("scalar")
    try:
        ref = bwd(y, dy, axis=1, where=w)
    finally:
        _core._use_isa(prev)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(np.isinf(got), np.isinf(ref))
