"""Every error case raises the numpy-style exception, with a message saying
what is wrong, and writes nothing: a sentinel-filled `out` and the input are
unchanged afterwards."""
import numpy as np
import pytest
from numpy.exceptions import AxisError

import csoftmax

SENTINEL = -12345.0
FUNCS = [csoftmax.softmax, csoftmax.log_softmax]


def _x():
    return np.linspace(-2, 2, 24).reshape(4, 6)


def _out(shape=(4, 6), dtype=np.float64):
    return np.full(shape, SENTINEL, dtype=dtype)


def _raises(exc, match, f, x, out=None, **kw):
    x0 = np.array(x, copy=True)
    o0 = None if out is None else out.copy()
    with pytest.raises(exc, match=match):
        f(x, out=out, **kw) if out is not None else f(x, **kw)
    np.testing.assert_array_equal(x, x0)                 # input untouched
    if out is not None:
        np.testing.assert_array_equal(out, o0)           # nothing written
        assert np.all(out == SENTINEL)


@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize("axis", [2, -3, 100, (0, 2), (-3,)])
def test_bad_axis(isa, f, axis):
    _raises(AxisError, "axis", f, _x(), out=_out(), axis=axis)


@pytest.mark.parametrize("f", FUNCS)
def test_bad_axis_type_and_repeat(f):
    _raises(TypeError, "axis", f, _x(), out=_out(), axis=1.5)
    _raises(TypeError, "axis", f, _x(), out=_out(), axis="0")
    _raises(ValueError, "repeated axis", f, _x(), out=_out(), axis=(0, -2))


@pytest.mark.parametrize("f", FUNCS)
def test_out_wrong_shape(f):
    for shape in [(6, 4), (4, 5), (24,), (1, 4, 6)]:
        _raises(ValueError, r"shape", f, _x(), out=_out(shape))


@pytest.mark.parametrize("f", FUNCS)
def test_out_wrong_dtype(f):
    for dt in [np.float32, np.float16, np.int64, np.complex128]:
        _raises(TypeError, "dtype", f, _x(), out=_out(dtype=dt))
    # float32 input with a float64 out and no dtype=
    _raises(TypeError, "dtype", f, _x().astype(np.float32), out=_out())
    # dtype= and out disagree
    _raises(TypeError, "dtype", f, _x(), out=_out(), dtype=np.float32)


@pytest.mark.parametrize("f", FUNCS)
def test_out_not_an_array(f):
    with pytest.raises(TypeError, match="ndarray"):
        f(_x(), out=[[0.0] * 6] * 4)


@pytest.mark.parametrize("f", FUNCS)
def test_out_read_only(f):
    out = _out()
    out.flags.writeable = False
    _raises(ValueError, "read-only", f, _x(), out=out)
    # a read-only broadcast view
    _raises(ValueError, "read-only", f, _x(), out=np.broadcast_to(_out((6,)), (4, 6)))


@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize("t", [0, 0.0, -1.0, -np.inf, np.inf, np.nan, -0.0])
def test_bad_temperature(f, t):
    _raises(ValueError, "temperature", f, _x(), out=_out(), temperature=t)


@pytest.mark.parametrize("f", FUNCS)
def test_temperature_not_a_number(f):
    for t in ["hot", None, [1.0], 1 + 1j]:
        _raises(TypeError, "temperature", f, _x(), out=_out(), temperature=t)


@pytest.mark.parametrize("f", FUNCS)
def test_complex_input_with_out(f):
    x = _x().astype(np.complex128)
    _raises(TypeError, "complex", f, x, out=_out())


@pytest.mark.parametrize("f", FUNCS)
def test_non_numeric_input_with_out(f):
    _raises(TypeError, "dtype", f, np.array([["a"] * 6] * 4), out=_out())
    _raises(TypeError, "dtype", f, _x().astype(object), out=_out())


@pytest.mark.parametrize("f", FUNCS)
def test_in_place_error_leaves_input(f):
    """out=x with a bad argument: x (which is also out) is unchanged."""
    x = _x()
    x0 = x.copy()
    for kw, exc in [({"axis": 5}, AxisError), ({"temperature": 0}, ValueError),
                    ({"dtype": np.int8}, TypeError)]:
        with pytest.raises(exc):
            f(x, out=x, **kw)
        np.testing.assert_array_equal(x, x0)


def test_logsumexp_errors():
    x = _x()
    x0 = x.copy()
    with pytest.raises(AxisError):
        csoftmax.logsumexp(x, axis=2)
    with pytest.raises(AxisError):
        csoftmax.logsumexp(x, axis=(0, 3))
    with pytest.raises(ValueError, match="broadcast"):
        csoftmax.logsumexp(x, b=np.ones(4))
    with pytest.raises(TypeError, match="complex"):
        csoftmax.logsumexp(x, b=np.ones(6, np.complex128))
    with pytest.raises(TypeError, match="complex"):
        csoftmax.logsumexp(x.astype(np.complex64))
    with pytest.raises(TypeError, match="dtype"):
        csoftmax.logsumexp(np.array(["x"]))
    np.testing.assert_array_equal(x, x0)


def test_smooth_max_errors():
    for k in [0, -2.0, np.nan, np.inf]:
        with pytest.raises(ValueError, match="sharpness"):
            csoftmax.smooth_max(_x(), sharpness=k)
    with pytest.raises(TypeError, match="sharpness"):
        csoftmax.smooth_max(_x(), sharpness="big")
    with pytest.raises(AxisError):
        csoftmax.smooth_max(_x(), axis=-3)
    with pytest.raises(TypeError, match="complex"):
        csoftmax.smooth_max(np.ones(3, np.complex128))


def test_error_messages_say_what_is_wrong():
    with pytest.raises(ValueError) as e:
        csoftmax.softmax(_x(), out=_out((3, 6)))
    assert "(3, 6)" in str(e.value) and "(4, 6)" in str(e.value)
    with pytest.raises(TypeError) as e:
        csoftmax.softmax(_x(), out=_out(dtype=np.float32))
    assert "float32" in str(e.value) and "float64" in str(e.value)
    with pytest.raises(ValueError) as e:
        csoftmax.softmax(_x(), temperature=-2)
    assert "-2" in str(e.value)
    with pytest.raises(TypeError) as e:
        csoftmax.softmax(np.ones(2, np.complex64))
    assert "complex64" in str(e.value)
    with pytest.raises(AxisError) as e:
        csoftmax.log_softmax(_x(), axis=7)
    assert "7" in str(e.value)
