"""logsumexp: scipy.special.logsumexp semantics (axis None/int/tuple, b,
return_sign, keepdims, non-finite values, empty reductions) and accuracy."""
import numpy as np
import pytest

import csoftmax
from _helpers import BOUND, check, ref, ulp_err

special = pytest.importorskip("scipy.special")

lse = csoftmax.logsumexp
inf, nan = np.inf, np.nan
AXES = [None, 0, 1, 2, -1, (0, 2), (2, 0), (0, 1, 2), (1,)]


def close(got, want, rtol):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_matches_scipy_axes(isa, dtype, rtol, keepdims, rng):
    x = (rng.standard_normal((4, 5, 6)) * 3 + 2).astype(dtype)   # mean > 0: no cancellation
    for axis in AXES:
        got = lse(x, axis=axis, keepdims=keepdims)
        want = special.logsumexp(x, axis=axis, keepdims=keepdims)
        assert np.shape(got) == np.shape(want), axis
        assert np.result_type(got) == np.result_type(want) == dtype
        close(got, want, rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_axes(isa, dtype, rng):
    x = (rng.standard_normal((4, 5, 6)) * 3).astype(dtype)
    for axis in AXES:
        check("logsumexp", lse(x, axis=axis), x, axis=axis, what=f"axis={axis}")


@pytest.mark.parametrize("b_shape", [(4, 5, 6), (6,), (5, 1), (1, 5, 6), ()])
@pytest.mark.parametrize("axis", [None, -1, 0, (0, 2)])
def test_b_matches_scipy(isa, b_shape, axis, rng):
    x = rng.standard_normal((4, 5, 6)) * 3
    b = rng.standard_normal(b_shape)                     # negative weights included
    got, sgot = lse(x, axis=axis, b=b, return_sign=True)
    want, swant = special.logsumexp(x, axis=axis, b=b, return_sign=True)
    close(got, want, 1e-12)
    np.testing.assert_array_equal(sgot, swant)
    # without return_sign a negative sum gives NaN, as in scipy
    with np.errstate(invalid="ignore"):
        close(lse(x, axis=axis, b=b), special.logsumexp(x, axis=axis, b=b), 1e-12)
    # keepdims with b
    close(lse(x, axis=axis, b=b, keepdims=True),
          special.logsumexp(x, axis=axis, b=b, keepdims=True), 1e-12)


def test_b_positive_matches_reference(isa, rng):
    x = rng.standard_normal((6, 50)) * 4
    b = rng.uniform(0.5, 2.0, x.shape)
    got = lse(x, axis=-1, b=b)
    # reference: log(sum b e^x) = LSE(x + log b), in longdouble
    xl = x.astype(np.longdouble) + np.log(b.astype(np.longdouble))
    want = ref("logsumexp", xl, axis=-1, wd=np.longdouble)
    assert ulp_err(got, want, np.float64).max() <= BOUND[np.dtype(np.float64)] + 8


def test_b_special_cases_like_scipy(isa):
    cases = [
        ([1.0, 2.0], [1, -1]),            # negative sum
        ([1.0, 1.0], [1, -1]),            # exact zero -> -inf, sign 0
        ([inf, 1.0], [0, 1]),             # b == 0 hides +inf
        ([nan, 1.0], [0, 1]),             # b == 0 hides nan
        ([inf, 1.0], [-1, 1]),            # -inf-weighted +inf
        ([inf, inf], [1, -1]),            # inf - inf
        ([-inf, -inf], [1, -1]),
        ([0.0, -40.0], [1, 1]),
        ([3.0, 3.0, 3.0], [1, 1, -2]),    # cancels exactly among the maxima
        ([1.0, 2.0], [nan, 1]),
    ]
    for x, b in cases:
        x = np.array(x)
        got = lse(x, b=b, return_sign=True)
        with np.errstate(all="ignore"):
            want = special.logsumexp(x, b=b, return_sign=True)
        np.testing.assert_allclose(got, want, rtol=1e-15, err_msg=f"x={x}, b={b}")


def test_b_dtype_promotion_like_scipy():
    for xd in [np.float16, np.float32, np.float64, np.int64]:
        for bd in [np.float16, np.float32, np.float64]:
            x, b = np.ones(3, xd), np.full(3, 2, bd)
            got = lse(x, b=b)
            assert got.dtype == special.logsumexp(x, b=b).dtype, (xd, bd)
    # deliberate difference: integer weights keep float32 x in float32
    # (scipy promotes float32 x with int64 b to float64)
    assert lse(np.ones(3, np.float32), b=[1, 2, 3]).dtype == np.float32


def test_b_dtype_promotion_half_precision():
    """bfloat16 (ml_dtypes, dtype kind 'V') weights promote as float16 ones:
    NumPy's promotion of the two dtypes, in either order (float16 x with
    bfloat16 b gave float16)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = np.dtype(ml_dtypes.bfloat16)
    kinds = [np.dtype(np.float16), bf, np.dtype(np.float32), np.dtype(np.float64)]
    for xd in kinds:
        for bd in kinds:
            got = lse(np.ones(3, xd), b=np.full(3, 2, bd))
            assert got.dtype == np.result_type(xd, bd), (xd, bd)
            assert abs(float(got) - (1.0 + np.log(6.0))) < 1e-2


def test_b_broadcast_error(isa):
    with pytest.raises(ValueError, match="broadcast"):
        lse(np.ones((3, 4)), b=np.ones(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_like_scipy(isa, dtype):
    rows = [[1.0, nan, 2.0], [1.0, inf, 2.0], [inf, inf, 1.0], [-inf, -inf, -inf],
            [-inf, 0.0, -inf], [inf, -inf, 0.0], [1e30, -1e30, 0.0], [-1e30, -1e30, -1e30],
            [nan, inf, -inf]]
    x = np.array(rows, dtype=dtype)
    for axis in (1, 0, None):
        xx = x if axis != 0 else np.ascontiguousarray(x.T)
        with np.errstate(all="ignore"):
            want, swant = special.logsumexp(xx, axis=axis, return_sign=True)
        got, sgot = lse(xx, axis=axis, return_sign=True)
        close(got, want, 1e-6 if dtype == np.float32 else 1e-15)
        np.testing.assert_array_equal(sgot, swant)


def test_empty_reductions(isa):
    for shape, axis in [((0,), None), ((0,), 0), ((3, 0), 1), ((3, 0), None), ((0, 3), 0),
                        ((2, 0, 4), 1), ((2, 0, 4), (0, 1))]:
        x = np.zeros(shape)
        got = lse(x, axis=axis)
        assert np.all(got == -inf) and np.shape(got) == np.shape(
            np.sum(x, axis=axis)), (shape, axis)
        if x.ndim == 1 or isinstance(axis, int):   # scipy 1.17 raises IndexError otherwise
            np.testing.assert_array_equal(got, special.logsumexp(x, axis=axis))
        # deliberate difference: the sign of an empty (zero) sum is 0, as for
        # lse([1, 1], b=[1, -1]) and lse([-inf]); scipy 1.17 reports -1
        _, sgn = lse(x, axis=axis, return_sign=True)
        assert np.all(sgn == 0)
    # reductions that keep an empty axis give empty results
    got = lse(np.zeros((0, 3)), axis=1)
    assert got.shape == (0,)
    got = lse(np.zeros((0, 3)), axis=1, b=np.zeros((0, 3)), return_sign=True)
    assert got[0].shape == got[1].shape == (0,)
    # regression: with b= an empty reduction raised ValueError in reshape
    got, sgn = lse(np.zeros((2, 0)), axis=1, b=np.zeros((2, 0)), return_sign=True)
    np.testing.assert_array_equal(got, [-inf, -inf])
    np.testing.assert_array_equal(sgn, [0, 0])


def test_return_types(isa):
    r = lse([1.0, 2.0])
    assert np.isscalar(r) or np.ndim(r) == 0
    r, s = lse([1.0, 2.0], return_sign=True)
    assert np.ndim(r) == 0 and s == 1.0
    assert lse(np.ones((2, 3)), axis=None, keepdims=True).shape == (1, 1)
    assert lse(np.arange(4), axis=0).dtype == np.float64           # ints -> float64
    assert lse(np.ones(3, np.float16)).dtype == np.float16
    assert lse([True, False]).dtype == np.float64


def test_dominant_max_not_zero(isa):
    """scipy gh-18295: LSE([0, -40]) must be 4.248e-18, not 0 -- also for
    float32, with a repeated maximum and through the column kernels."""
    for dt in (np.float32, np.float64):
        x = np.array([0.0, -40.0], dt)
        want = np.log1p(np.exp(np.longdouble(-40)))
        assert ulp_err(lse(x), want, dt) <= BOUND[np.dtype(dt)]
        assert ulp_err(lse(x[:, None], axis=0)[0], want, dt) <= BOUND[np.dtype(dt)]
        x2 = np.array([0.0, -40.0, 0.0], dt)
        want2 = np.log(np.longdouble(2)) + np.log1p(np.exp(np.longdouble(-40)) / 2)
        assert ulp_err(lse(x2), want2, dt) <= BOUND[np.dtype(dt)]


def test_float32_cancellation(isa):
    """float32 LSE whose max + log S cancels to |LSE| << 1 must still be within
    4 ULP of the (tiny) result, as the acceptance bound says.  The AVX2
    reduction's exp is accurate to ~1 ULP of float32, so the kernel detects
    such rows and recomputes them exactly (regression: [-1.5182965,
    -0.24728869] once gave 4.11e-09 instead of 3.855e-09)."""
    rng = np.random.default_rng(5)
    a = rng.uniform(-3, -0.7, 2000)
    b = np.log1p(-np.exp(a)) + rng.uniform(-1e-4, 1e-4, a.size)
    x = np.stack([a, b], 1).astype(np.float32)
    got = lse(x, axis=-1)
    e = ulp_err(got, ref("logsumexp", x, axis=-1))
    assert e.max() <= BOUND[np.dtype(np.float32)], f"{e.max()} ULP"


# The result written by the drivers block by block (rows_reduce / cols_reduce
# with out=, the route of logsumexp and smooth_max) is the float64
# max + log_sum / k of the (max, log_sum) route rounded once: bit for bit,
# on every path that serves the reduction, 1 and 2 threads.
LSE_SHAPES = [((300, 10), 1, "SMALL"), ((300, 40), -1, "SMALL"),
              ((70, 1000), 1, "TWO_PASS"), ((3, 70000), 1, "LONG_ROW_SPLIT"),
              ((3, 70000), 1, "TWO_PASS"), ((5, 21, 130), 1, "COLS_BLOCKS"),
              ((2, 3, 200), 1, "COLS_BLOCKS")]


@pytest.mark.parametrize("shape,axis,path", LSE_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1.0, 3.5])
def test_result_written_per_block(isa, threads, shape, axis, path, dtype, k, rng):
    from csoftmax import _api, _core
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.reshape(-1)[::97] = -np.inf
    x.reshape(-1)[5::1001] = 80.0
    axes = (axis % x.ndim,)
    try:
        with _core.forced("logsumexp", path):
            mx, ls = _api._reduce(x, dtype, axes, k)
            got = (csoftmax.logsumexp(x, axis=axis) if k == 1.0
                   else csoftmax.smooth_max(x, axis=axis, sharpness=k))
            used = _core._last_plan()
    except ValueError as e:           # the path does not serve this table / shape
        pytest.skip(str(e))
    assert used[1] == path
    want = (mx + ls / k if k != 1.0 else mx + ls).astype(dtype)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # and against the float64 reference
    if k == 1.0:
        check("logsumexp", got, x, axis=axis, what=path)


def test_infinite_weight_is_an_infinite_sum():
    """b = +-inf on a term with exp(a) > 0 makes the sum that infinity, also
    where exp(a - max) underflows (the kernels' b exp(a - max) was inf * 0 =
    NaN below a - max ~ -745); both signs, a NaN and exp(-inf) * inf give
    NaN; an entry with b == 0 takes no part, as documented, whatever its a
    (jax.scipy.special.logsumexp's rule).  Each case also along axis 0 of a
    2-D array beside an ordinary column, which keeps its value."""
    inf, nan = np.inf, np.nan
    cases = [([0.0, -700.0], [1.0, inf], inf, 1.0), ([0.0, -800.0], [1.0, inf], inf, 1.0),
             ([700.0, 1.0, -700.0], [2.0, 0.0, inf], inf, 1.0),
             ([0.0, -800.0], [1.0, -inf], inf, -1.0), ([0.0, -800.0], [inf, -inf], nan, nan),
             ([0.0, nan], [inf, 1.0], nan, nan), ([-inf, 0.0], [inf, 1.0], nan, nan),
             ([inf, -800.0], [0.0, inf], inf, 1.0), ([nan, -800.0], [0.0, -inf], inf, -1.0),
             ([inf, -800.0], [-1.0, inf], nan, nan),
             ([inf, -800.0], [2.0, inf], inf, 1.0),
             # exp(-inf) * inf beside another infinite weight
             ([1.0, -inf], [inf, -inf], nan, nan), ([1.0, -inf], [-inf, -inf], nan, nan),
             ([-inf, 2.0], [inf, -inf], nan, nan), ([inf, -inf], [inf, -inf], nan, nan)]
    for a, b, want, sign in cases:
        r, s = csoftmax.logsumexp(a, b=b, return_sign=True)
        np.testing.assert_equal((float(r), float(s)), (want, sign), err_msg=f"{a} {b}")
        if sign == 1.0:
            assert csoftmax.logsumexp(a, b=b) == inf
        a2 = np.stack([np.asarray(a), np.zeros(len(a))], axis=1)
        b2 = np.stack([np.asarray(b), np.ones(len(b))], axis=1)
        r2, s2 = csoftmax.logsumexp(a2, axis=0, b=b2, return_sign=True)
        np.testing.assert_equal((r2[0], s2[0]), (want, sign))
        np.testing.assert_allclose(r2[1], np.log(len(a)), rtol=1e-15)
    # float32 input: the same rule, float32 result
    r = csoftmax.logsumexp(np.array([0.0, -800.0], np.float32), b=np.array([1, inf], np.float32))
    assert r == inf and r.dtype == np.float32


def _special_term(a, b):
    """b * exp(a) with IEEE special values, exp(a) of a finite a taken as the
    positive number it is (not its float64 underflow); b == 0: no term."""
    if np.isnan(b):
        return np.nan
    if b == 0:
        return 0.0
    if np.isnan(a):
        return np.nan
    if a == -np.inf:
        return np.nan if np.isinf(b) else 0.0
    if a == np.inf:
        return np.nan if b == 0 else np.inf * np.sign(b)
    return np.inf * np.sign(b) if np.isinf(b) else None     # None: finite


def test_weighted_special_values_exhaustive():
    """Every pair and some triples of a in {-inf, -800, 0, 1, inf, nan} and b
    in {-inf, -1, 0, 2, inf, nan}: the value and sign of log|sum b exp(a)|
    follow the IEEE sum of the terms (NaN for inf * 0 or inf - inf, the
    infinity otherwise; an entry with b == 0 no term) wherever a term is not
    finite, in float64 and float32, with and without return_sign, along
    either axis."""
    import itertools
    A = [-np.inf, -800.0, 0.0, 1.0, np.inf, np.nan]
    B = [-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan]
    pairs = list(itertools.product(A, B))
    cases = [list(c) for c in itertools.product(pairs, repeat=2)]
    cases += [[pairs[i], pairs[j], pairs[k]] for i, j, k in
              itertools.product(range(0, len(pairs), 5), range(1, len(pairs), 4), range(2, len(pairs), 7))]
    checked = 0
    for case in cases:
        a = np.array([t[0] for t in case])
        b = np.array([t[1] for t in case])
        terms = [_special_term(x, w) for x, w in case]
        special = [t for t in terms if t is not None and t != 0.0]
        if any(np.isnan(t) for t in special) or (np.inf in special and -np.inf in special):
            want = (np.nan, np.nan)
        elif special:
            want = (np.inf, float(np.sign(special[0])))
        else:
            continue                # every term finite: the accuracy tests' business
        checked += 1
        for dt in (np.float64, np.float32):
            r, sg = csoftmax.logsumexp(a.astype(dt), b=b.astype(dt), return_sign=True)
            np.testing.assert_equal((float(r), float(sg)), want, err_msg=f"{a} {b} {dt}")
            plain = csoftmax.logsumexp(a.astype(dt), b=b.astype(dt))
            np.testing.assert_equal(float(plain), want[0] if want[1] != -1.0 else np.nan)
        r2, s2 = csoftmax.logsumexp(np.stack([a, np.zeros_like(a)]).T, axis=0,
                                    b=np.stack([b, np.ones_like(b)]).T, return_sign=True)
        np.testing.assert_equal((r2[0], s2[0]), want)
        assert r2[1] == np.log(len(a)) and s2[1] == 1.0
    assert checked > 1000
