"""dtype rules: float32/float64 native, float16 computed in float32 and
returned as float16, ints/bools -> float64, dtype= selects the result."""
import numpy as np
import pytest

import csoftmax
from _helpers import OPS, assert_ulp, check, ref, run


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_dtypes_preserved(isa, op, dtype):
    x = np.linspace(-3, 3, 24, dtype=dtype).reshape(4, 6)
    assert run(op, x).dtype == dtype


@pytest.mark.parametrize("op", list(OPS))
def test_float16_computed_in_float32(isa, op, rng):
    x = (rng.standard_normal((8, 40)) * 4).astype(np.float16)
    got = run(op, x)
    assert got.dtype == np.float16
    via32 = run(op, x.astype(np.float32)).astype(np.float16)
    np.testing.assert_array_equal(got, via32)
    assert_ulp(got, ref(op, x), bound=1.0)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_])
def test_ints_and_bools_to_float64(isa, op, dtype):
    x = (np.arange(12) % 5).astype(dtype).reshape(3, 4)
    got = run(op, x)
    assert got.dtype == np.float64
    check(op, got, x.astype(np.float64))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_dtype_parameter(isa, op, rng):
    x = rng.standard_normal((6, 30)) * 3
    for dt in [np.float16, np.float32, np.float64, "float32", np.dtype("<f8")]:
        got = OPS[op](x, dtype=dt)
        assert got.dtype == np.dtype(dt)
    # dtype=float32 on float64 input: the input is rounded to float32 first
    check(op, OPS[op](x, dtype=np.float32), x.astype(np.float32))
    # dtype=float64 on float32 input: computed in float64
    x32 = x.astype(np.float32)
    check(op, OPS[op](x32, dtype=np.float64), x32.astype(np.float64))
    # dtype=float16: computed in float32, rounded once more
    assert_ulp(OPS[op](x, dtype=np.float16), ref(op, x.astype(np.float32)), bound=1.0)
    # ints with dtype=float32
    assert OPS[op](np.arange(5), dtype=np.float32).dtype == np.float32


def test_python_lists_and_scalars(isa):
    np.testing.assert_allclose(csoftmax.softmax([[1, 2], [3, 3]]), [[0.26894142, 0.73105858], [0.5, 0.5]])
    assert csoftmax.logsumexp([1.0, 2.0]).dtype == np.float64
    assert csoftmax.smooth_max([1, 2, 3]).dtype == np.float64


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp", "smooth_max"])
def test_complex_rejected(op):
    f = getattr(csoftmax, op)
    for dt in (np.complex64, np.complex128):
        with pytest.raises(TypeError, match="complex"):
            f(np.ones(3, dt))


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp", "smooth_max"])
def test_object_and_str_rejected(op):
    f = getattr(csoftmax, op)
    for x in (np.array([1.0, 2.0], dtype=object), np.array(["a", "b"]),
              ["1", "2"], np.array([b"a"]), np.array(["2020-01-01"], dtype="M8[D]")):
        with pytest.raises(TypeError, match="dtype"):
            f(x)


def test_bad_dtype_parameter():
    for bad in (np.int32, np.complex128, "S5", object):
        with pytest.raises(TypeError, match="dtype"):
            csoftmax.softmax([1.0, 2.0], dtype=bad)
    with pytest.raises(TypeError, match="dtype"):
        csoftmax.log_softmax([1.0, 2.0], dtype="not-a-dtype")


def test_longdouble_rejected():
    if np.dtype(np.longdouble) == np.float64:
        pytest.skip("longdouble is float64 here")
    with pytest.raises(TypeError, match=r"float16, bfloat16 \(ml_dtypes\), float32 and float64"):
        csoftmax.softmax(np.ones(3, np.longdouble))


@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
def test_backward_result_dtype_is_numpys_promotion(op, rng):
    """The result of a backward op is NumPy's promotion of y's and dy's
    dtypes, whatever their order: float16 with bfloat16 -- neither wider --
    is float32 both ways (bfloat16 with a float16 dy was bfloat16)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    kinds = [np.float64, np.float32, np.float16, ml_dtypes.bfloat16]
    y64 = csoftmax.softmax(rng.standard_normal((3, 37)) * 2)
    if op == "log_softmax_backward":
        y64 = np.log(y64)
    dy64 = rng.standard_normal((3, 37))
    f = getattr(csoftmax, op)
    for a in kinds:
        for b in kinds:
            y, dy = y64.astype(a), dy64.astype(b)
            got = f(y, dy)
            want = np.result_type(a, b)
            assert got.dtype == want, (np.dtype(a).name, np.dtype(b).name, got.dtype)
            # computed from the rounded inputs, rounded once to the result
            exact = f(y.astype(np.float64), dy.astype(np.float64))
            np.testing.assert_allclose(got.astype(np.float64), exact,
                                       rtol=2 * float(np.finfo(want).eps),
                                       atol=4 * float(np.finfo(want).eps) * np.abs(exact).max())
