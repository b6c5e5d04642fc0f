"""Property tests (hypothesis; small default profile, see conftest.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import csoftmax
from _helpers import BOUND, check

FLOAT = st.sampled_from([np.float32, np.float64])


@st.composite
def arrays(draw, dtype=None, max_side=40, bound=60.0, min_n=1):
    dt = draw(FLOAT) if dtype is None else dtype
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=min_n, max_side=max_side))
    elems = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32)
    x = draw(hnp.arrays(dt, shape, elements=elems))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    return x, axis


@given(arrays())
def test_softmax_is_a_distribution(xa):
    x, axis = xa
    y = csoftmax.softmax(x, axis=axis)
    assert np.all(y >= 0) and np.all(y <= 1)
    # each entry within BOUND ULP of exact, so the sum is within BOUND ulps of its terms
    s = y.astype(np.float64).sum(axis=axis)
    tol = BOUND[y.dtype] * np.spacing(y).astype(np.float64).sum(axis=axis) + 1e-15 * y.shape[axis]
    assert np.all(np.abs(s - 1) <= tol), np.max(np.abs(s - 1) - tol)


@given(arrays(), st.integers(-64, 64))
def test_shift_invariance(xa, c):
    """softmax(x + c) = softmax(x) for a shift c that is exact in x's dtype
    (integers on values rounded to multiples of 1/64)."""
    x, axis = xa
    x = np.round(x * 64) / 64
    y0 = csoftmax.softmax(x, axis=axis)
    y1 = csoftmax.softmax(x + x.dtype.type(c), axis=axis)
    np.testing.assert_allclose(y1, y0, rtol=2 * BOUND[x.dtype] * np.finfo(x.dtype).eps,
                               atol=2 * BOUND[x.dtype] * np.finfo(x.dtype).smallest_subnormal)
    l0 = csoftmax.log_softmax(x, axis=axis)
    l1 = csoftmax.log_softmax(x + x.dtype.type(c), axis=axis)
    np.testing.assert_allclose(l1, l0, rtol=2 * BOUND[x.dtype] * np.finfo(x.dtype).eps)
    lse0 = csoftmax.logsumexp(x, axis=axis).astype(np.float64)
    lse1 = csoftmax.logsumexp(x + x.dtype.type(c), axis=axis).astype(np.float64)
    np.testing.assert_allclose(lse1 - c, lse0, rtol=0,
                               atol=float(4 * BOUND[x.dtype] * np.finfo(x.dtype).eps * (np.abs(lse1).max() + 1)))


@given(arrays())
def test_log_softmax_nonpositive_and_consistent(xa):
    x, axis = xa
    ly = csoftmax.log_softmax(x, axis=axis)
    assert np.all(ly <= 0)
    check("log_softmax", ly, x, axis=axis)


@given(arrays())
def test_lse_between_max_and_max_plus_log_n(xa):
    x, axis = xa
    lse = csoftmax.logsumexp(x, axis=axis)
    mx = x.max(axis=axis)
    n = x.shape[axis]
    assert np.all(lse >= mx)                    # exact: max + log S with log S >= 0
    slack = BOUND[x.dtype] * np.spacing(np.abs(lse))
    assert np.all(lse <= mx + np.log(n) + slack)
    check("logsumexp", lse, x, axis=axis)


@given(arrays(max_side=12), st.floats(0.05, 20.0))
def test_temperature_matches_reference(xa, t):
    x, axis = xa
    check("softmax", csoftmax.softmax(x, axis=axis, temperature=t), x, axis=axis, temperature=t)
    check("log_softmax", csoftmax.log_softmax(x, axis=axis, temperature=t), x, axis=axis,
          temperature=t)


@pytest.mark.parametrize("isa_name", ["scalar", "avx2"])
@given(xa=arrays(bound=1e4))
def test_isas_agree(isa_name, xa):
    from csoftmax import _core
    if isa_name not in _core.available_isas():
        return
    x, axis = xa
    prev = _core._use_isa(isa_name)
    try:
        y = csoftmax.softmax(x, axis=axis)
        ly = csoftmax.log_softmax(x, axis=axis)
    finally:
        _core._use_isa(prev)
    check("softmax", y, x, axis=axis)
    check("log_softmax", ly, x, axis=axis)
