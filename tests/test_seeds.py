"""The seeds' worked examples, exact to 4 decimals (issue #3, section 6)."""
import warnings

import numpy as np
import pytest

import csoftmax

X = [1.0, 2.0, 3.0, 4.0]
SOFTMAX_X = [0.0321, 0.0871, 0.2369, 0.6439]
SOFTMAX_X_DIV10 = [0.2138, 0.2363, 0.2612, 0.2887]

pytestmark = pytest.mark.parametrize("dtype", [np.float32, np.float64])


def r4(v):
    return np.round(np.asarray(v, dtype=np.float64), 4)


def test_softmax_and_lse(isa, dtype):
    x = np.array(X, dtype=dtype)
    y = csoftmax.softmax(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(r4(y), SOFTMAX_X)
    assert r4(csoftmax.logsumexp(x)) == 4.4402
    np.testing.assert_array_equal(r4(np.exp(csoftmax.log_softmax(x))), SOFTMAX_X)
    assert r4(csoftmax.smooth_max(x)) == 4.4402


def test_times_10(isa, dtype):
    x = np.array(X, dtype=dtype) * 10
    assert r4(csoftmax.logsumexp(x)) == 40.0000
    # and the smooth max with sharpness 10 of the original row
    assert r4(csoftmax.smooth_max(np.array(X, dtype=dtype), sharpness=10)) == 4.0000


def test_div_10_and_temperature_10(isa, dtype):
    x = np.array(X, dtype=dtype)
    np.testing.assert_array_equal(r4(csoftmax.softmax(x / dtype(10))), SOFTMAX_X_DIV10)
    np.testing.assert_array_equal(r4(csoftmax.softmax(x, temperature=10)), SOFTMAX_X_DIV10)
    np.testing.assert_array_equal(
        r4(np.exp(csoftmax.log_softmax(x, temperature=10))), SOFTMAX_X_DIV10)
    assert r4(csoftmax.logsumexp(x / dtype(10))) == 1.6425
    # smooth_max(x, k) = LSE(k x) / k, so k * smooth_max(x, k=0.1) = LSE(x / 10)
    assert r4(0.1 * csoftmax.smooth_max(x, sharpness=0.1)) == 1.6425


def test_large_logits_no_overflow_no_warnings(isa, dtype):
    x = np.array([10.0, 2.0, 40.0, 4.0], dtype=dtype) * 10000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            y = csoftmax.softmax(x)
            ly = csoftmax.log_softmax(x)
            lse = csoftmax.logsumexp(x)
            sm = csoftmax.smooth_max(x, sharpness=3.0)
    np.testing.assert_array_equal(y, np.array([0.0, 0.0, 1.0, 0.0], dtype))
    np.testing.assert_array_equal(ly, x - dtype(400000))   # exact: all gaps >= 3.6e5
    assert lse == dtype(400000.0) and lse.dtype == dtype
    assert sm == dtype(400000.0)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(ly))
