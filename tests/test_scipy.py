"""softmax / log_softmax against scipy.special on random data and special
values.  Where csoftmax deliberately differs (more accurate or better
defined), the test says so instead of asserting scipy's value."""
import numpy as np
import pytest

import csoftmax
from _helpers import check

special = pytest.importorskip("scipy.special")

inf, nan = np.inf, np.nan
PAIRS = [(csoftmax.softmax, special.softmax), (csoftmax.log_softmax, special.log_softmax)]


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_random_data(isa, ours, theirs, dtype, rtol, rng):
    x = (rng.standard_normal((4, 5, 6)) * 3).astype(dtype)
    for axis in [None, 0, 1, 2, -1, (0, 2), (2, 1), (0, 1, 2)]:
        got = ours(x, axis=axis)
        want = theirs(x, axis=axis)
        assert got.shape == want.shape and got.dtype == want.dtype == dtype
        # scipy computes float32 log_softmax in float32 and loses the relative
        # accuracy of entries near 0 (x - max - log S cancels); csoftmax keeps
        # it (checked against the reference below), so compare with an atol.
        atol = 1e-6 * np.abs(want).max() if dtype == np.float32 else 0
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"axis={axis}")
        check(ours.__name__, got, x, axis=axis)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(isa, dtype):
    rows = np.array([[1.0, nan, 2.0], [-inf, -inf, -inf], [-inf, 0.0, -inf],
                     [-inf, 1.0, 2.0], [1e30, -1e30, 0.0], [1.0, inf, 2.0],
                     [inf, inf, 1.0], [inf, -inf, 0.0]], dtype=dtype)
    for ours, theirs in PAIRS:
        with np.errstate(all="ignore"):
            want = theirs(rows, axis=1)
        got = ours(rows, axis=1)
        got_c = ours(np.ascontiguousarray(rows.T), axis=0).T
        check(ours.__name__, got, rows, axis=1)
        check(ours.__name__, got_c, rows, axis=1)
        if ours is csoftmax.softmax:
            # Deliberate difference: a row holding +inf gives NaN only at the
            # +inf entries and 0 elsewhere (exp(x - inf) = 0), where scipy
            # makes the whole row NaN.  log_softmax agrees with scipy.
            fin = ~np.isposinf(rows).any(axis=1)
            np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6)
            inf_rows = got[~fin]
            np.testing.assert_array_equal(np.isnan(inf_rows), np.isposinf(rows[~fin]))
            assert np.all(inf_rows[~np.isposinf(rows[~fin])] == 0)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_more_accurate_than_scipy_float32(isa):
    """Deliberate difference: float32 rows are computed with x - max in
    float64, so a row where x - max is inexact in float32 is still correctly
    rounded; scipy's float32 arithmetic is off by ~15 ULP here."""
    x = np.array([1.2345678, -28.3], dtype=np.float32)
    check("softmax", csoftmax.softmax(x), x)
    check("log_softmax", csoftmax.log_softmax(x), x)
    assert csoftmax.softmax(x)[1] != special.softmax(x)[1]


def test_empty(isa):
    for shape in [(0,), (0, 3), (3, 0)]:
        x = np.zeros(shape)
        for ours, theirs in PAIRS:
            got = ours(x, axis=-1)
            assert got.shape == shape and got.dtype == np.float64
            # scipy raises on reductions over a zero-length axis; csoftmax
            # returns the (empty) result
            if shape[-1]:
                np.testing.assert_array_equal(got, theirs(x, axis=-1))


def test_integer_and_bool_input(isa):
    x = np.arange(12).reshape(3, 4)
    for ours, theirs in PAIRS:
        got = ours(x)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, theirs(x, axis=-1), rtol=1e-14)
        np.testing.assert_allclose(ours([True, False]), theirs([1.0, 0.0], axis=-1), rtol=1e-14)
