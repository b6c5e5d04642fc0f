"""smooth_max(x, k) = LSE(k x) / k: max <= smooth_max <= max + log(n)/k,
tends to max as k grows."""
import numpy as np
import pytest

import csoftmax
import _helpers as H
from _helpers import ulp_err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [0.01, 0.5, 1.0, 3.0, 16.0, 1e3])
def test_equals_scaled_lse(isa, dtype, k, rng):
    """The contract (README "Accuracy"): smooth_max within 4 ULP (float32) /
    8 ULP + the float64 slack (float64) of max + log(sum e^{k(x-max)})/k
    evaluated in float64 / long double (_helpers.ref_smooth_max)."""
    x = (rng.standard_normal((7, 50)) * 3).astype(dtype)
    got = csoftmax.smooth_max(x, sharpness=k)
    assert got.dtype == dtype and got.shape == (7,)
    H.assert_within(got, H.ref_smooth_max(x, -1, k), "smooth_max", what=f"k={k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bounds_and_limit(isa, dtype, rng):
    x = (rng.standard_normal((5, 40)) * 2).astype(dtype)
    mx = x.max(axis=-1)
    n = x.shape[-1]
    prev_gap = np.inf
    for k in [0.1, 1.0, 10.0, 100.0, 1e4, 1e6]:
        sm = csoftmax.smooth_max(x, sharpness=k)
        slack = 4 * np.spacing(np.abs(sm))
        assert np.all(sm >= mx - slack)
        assert np.all(sm <= mx + np.log(n) / k + slack)
        gap = np.max(sm - mx)
        assert gap <= prev_gap          # decreases towards the max
        prev_gap = gap
    np.testing.assert_allclose(csoftmax.smooth_max(x, sharpness=1e7), mx, rtol=0,
                               atol=float(np.log(n) / 1e7 + 4 * np.spacing(dtype(8))))
    # the upper bound is attained by a constant row
    c = np.full(16, 1.5, dtype)
    assert ulp_err(csoftmax.smooth_max(c, sharpness=2.0), 1.5 + np.log(16) / 2, dtype) <= 4


def test_axes_keepdims_and_defaults(isa, rng):
    x = rng.standard_normal((3, 4, 5))
    assert csoftmax.smooth_max(x).shape == (3, 4)
    assert csoftmax.smooth_max(x, axis=0).shape == (4, 5)
    assert csoftmax.smooth_max(x, axis=(0, 2), keepdims=True).shape == (1, 4, 1)
    assert np.ndim(csoftmax.smooth_max(x, axis=None)) == 0
    H.assert_within(csoftmax.smooth_max(x, axis=(0, 2)), H.ref_smooth_max(x, (0, 2), 1.0),
                    "smooth_max", what="axis (0, 2)")
    H.assert_within(csoftmax.smooth_max(x, axis=1, sharpness=2.0), H.ref_smooth_max(x, 1, 2.0),
                    "smooth_max", what="axis 1, k = 2")


def test_large_values_no_overflow(isa):
    x = np.array([1e300, -1e300, 1e300])
    with np.errstate(all="raise"):
        assert csoftmax.smooth_max(x, sharpness=1e5) == 1e300
    x32 = np.array([3e38, 1.0], np.float32)
    with np.errstate(all="raise"):
        assert csoftmax.smooth_max(x32, sharpness=100.0) == np.float32(3e38)
