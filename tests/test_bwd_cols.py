"""softmax_backward / log_softmax_backward along a non-last axis through the
AVX2 column kernels (softmax_bwd_cols_*, log_softmax_bwd_cols_*: 8 columns
at a time in float64 lanes; tiles of a padded pitch when n <= 128 rows,
the array itself otherwise), against a longdouble reference, element by
element:

    softmax:     o = y (dy - s),          s = sum_j y_j dy_j
    log_softmax: o = dy - exp(y) s,       s = sum_j dy_j

bound = 2 ULP of the result dtype + the float64 work (n 2^-52 of the sum's
terms, 2^-50 of the two terms of o) + for float32 log_softmax the vector
exp's 3e-9 relative error on exp(y) s.  The same with the kernels off
(_core.unfused(): the scalar loop), special columns (y > 0, NaN, -inf)
as the scalar path gives them, in place, and 1 vs 2 threads bit for bit.
"""
import numpy as np
import pytest

import csoftmax
from _helpers import fused_kernels

ROWS = [1, 7, 21, 129, 300]          # 129, 300: no tile (the array itself)
INNER = [8, 9, 63, 64, 1000]         # 1000: tiles and a partial unit


def _ref(y, dy, log):
    yl = np.asarray(y, np.longdouble)
    dl = np.asarray(dy, np.longdouble)
    if log:
        s = dl.sum(axis=1, keepdims=True)
        o = dl - np.exp(yl) * s
        mag = np.abs(dl) + np.exp(yl) * np.abs(dl).sum(axis=1, keepdims=True)
    else:
        s = (yl * dl).sum(axis=1, keepdims=True)
        o = yl * (dl - s)
        mag = np.abs(yl) * (np.abs(dl) + np.abs(yl * dl).sum(axis=1, keepdims=True))
    return o, mag, np.exp(yl) * np.abs(s)


def _check(got, y, dy, log):
    dt = got.dtype
    o, mag, es = _ref(y, dy, log)
    n = y.shape[1]
    o64 = o.astype(np.float64)
    bound = (2 * np.spacing(np.abs(o64).astype(dt)).astype(np.float64)
             + ((n + 4) * 2.0 ** -50 * mag).astype(np.float64))
    if log and dt == np.float32:
        bound += (3e-9 * es).astype(np.float64)
    err = np.abs(got.astype(np.float64) - o64)
    assert np.all(err <= bound), f"{np.max(err / bound):.2f} x bound"


def _inputs(shape, dtype, rng, log):
    x = rng.standard_normal(shape) * 3
    y = csoftmax.log_softmax(x, axis=1) if log else csoftmax.softmax(x, axis=1)
    dy = rng.standard_normal(shape)
    return y.astype(dtype), dy.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("n", ROWS)
def test_vs_reference(n, log, dtype, fused):
    rng = np.random.default_rng(n * 7 + log)
    f = csoftmax.log_softmax_backward if log else csoftmax.softmax_backward
    for inner in INNER:
        y, dy = _inputs((2, n, inner), dtype, rng, log)
        got = f(y, dy, axis=1)
        assert got.dtype == dtype
        _check(got, y, dy, log)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_columns(dtype):
    """y > 0 (not a log-probability), NaN in y or dy, -inf in y: the column
    group goes column by column (libm exp, IEEE propagation), as the
    scalar path does; the other columns are unaffected."""
    rng = np.random.default_rng(3)
    y, dy = _inputs((2, 21, 200), dtype, rng, True)
    y[0, 3, 10] = 0.5
    y[0, 7, 20] = 800.0            # exp overflows: inf in libm
    y[0, 4, 50] = np.nan
    dy[1, 5, 90] = np.nan
    y[1, 6, 130] = -np.inf
    y[1, :, 131] = -np.inf
    got = csoftmax.log_softmax_backward(y, dy, axis=1)
    with fused_kernels(False):
        want = csoftmax.log_softmax_backward(y, dy, axis=1)
    assert np.isnan(got[0, 4, 50]) and np.all(np.isnan(got[1, :, 90]))
    assert np.isnan(got).sum() == 1 + 21
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    for o, bad in ((0, [20, 50]), (1, [90])):   # columns without NaN / inf
        keep = np.delete(np.arange(200), bad)
        _check(got[o:o + 1][:, :, keep], y[o:o + 1][:, :, keep],
               dy[o:o + 1][:, :, keep], True)
    np.testing.assert_array_equal(got[1, :, 131], dy[1, :, 131])
    # the column with y > 0 is exact to the scalar path's libm exp
    np.testing.assert_allclose(got[0, :, 10], want[0, :, 10], rtol=1e-15 if
                               dtype == np.float64 else 1e-7)
    np.testing.assert_array_equal(got[0, :, 20], want[0, :, 20])
    assert np.isinf(got[0, 7, 20])
    sgot = csoftmax.softmax_backward(np.where(np.isnan(y), 0.1, y), dy, axis=1)
    assert np.all(np.isnan(sgot[1, :, 90]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_in_place_and_threads(log, dtype):
    rng = np.random.default_rng(5)
    f = csoftmax.log_softmax_backward if log else csoftmax.softmax_backward
    for n in (21, 300):
        y, dy = _inputs((3, n, 777), dtype, rng, log)
        want = f(y, dy, axis=1)
        _check(want, y, dy, log)
        for which in ("y", "dy"):
            yy, dd = y.copy(), dy.copy()
            tgt = yy if which == "y" else dd
            r = f(yy, dd, axis=1, out=tgt)
            assert r is tgt
            np.testing.assert_array_equal(tgt, want)
        res = []
        for k in (1, 2):
            prev = csoftmax.set_num_threads(k)
            try:
                res.append(f(y, dy, axis=1))
            finally:
                csoftmax.set_num_threads(prev)
        np.testing.assert_array_equal(res[0], res[1])
        np.testing.assert_array_equal(res[0], want)
