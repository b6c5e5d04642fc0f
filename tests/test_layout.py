"""Any axis, any memory layout, out= and in-place: same answers as the
reference (within the stated bounds, tests/_helpers.py)."""
import itertools

import numpy as np
import pytest

import csoftmax
from _helpers import OPS, check, run

FLOATS = [np.float32, np.float64]
SHAPES = [(17,), (5, 9), (3, 4, 70), (2, 3, 5, 66)]


def _all_axes(shape):
    nd = len(shape)
    return list(range(nd)) + [-a - 1 for a in range(nd)]


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
def test_every_axis(isa, dtype, op, shape, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x0 = x.copy()
    for axis in _all_axes(shape):
        got = run(op, x, axis=axis)
        check(op, got, x, axis=axis, what=f"axis={axis}")
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_axis_tuples_and_none(isa, dtype, op, rng):
    x = (rng.standard_normal((3, 4, 5, 6)) * 3).astype(dtype)
    axes = [None, (0, 1), (1, 2), (2, 3), (0, 2), (1, 3), (0, 3), (3, 0), (-1, -2),
            (0, 1, 2), (0, 2, 3), (0, 1, 2, 3), (1,)]
    for axis in axes:
        check(op, run(op, x, axis=axis), x, axis=axis, what=f"axis={axis}")


def _layouts(base):
    """Non-contiguous views of a 2-D array: name -> view."""
    return {
        "c": base,
        "fortran": np.asfortranarray(base),
        "transpose": base.T,
        "rows_step2": base[::2],
        "cols_step3": base[:, ::3],
        "offset": base[1:, 1:-1],
        "neg_rows": base[::-1],
        "neg_cols": base[:, ::-1],
        "neg_both_step": base[::-2, ::-3],
        "broadcast_row": np.broadcast_to(base[0], base.shape),   # row stride 0
        "broadcast_col": np.broadcast_to(base[:, :1], base.shape),  # element stride 0
    }


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_noncontiguous_and_negative_strides(isa, dtype, op, rng):
    base = (rng.standard_normal((12, 75)) * 3).astype(dtype)
    for name, v in _layouts(base).items():
        for axis in (0, 1, -1):
            check(op, run(op, v, axis=axis), v, axis=axis, what=f"{name} axis={axis}")
    # 3-D: transposed and reversed views, every axis
    b3 = (rng.standard_normal((6, 7, 70)) * 3).astype(dtype)
    for name, v in {"transpose201": b3.transpose(2, 0, 1), "rev_mid": b3[:, ::-1],
                    "rev_last": b3[..., ::-1], "step_last": b3[..., ::2],
                    "fortran": np.asfortranarray(b3)}.items():
        for axis in range(3):
            check(op, run(op, v, axis=axis), v, axis=axis, what=f"{name} axis={axis}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_unaligned_input(isa, dtype):
    n = 37
    item = np.dtype(dtype).itemsize
    buf = np.zeros(item * n + 1, np.uint8)
    x = buf[1:].view(dtype)
    assert not x.flags.aligned
    x[:] = np.linspace(-5, 5, n)
    for op in OPS:
        check(op, run(op, x), x)


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", ">f8"])
def test_byte_order(isa, dtype):
    # regression: big-endian input used to be read as native (garbage)
    x = np.linspace(-3, 4, 29).astype(dtype)
    native = x.astype(np.dtype(dtype).newbyteorder("="))
    for op in OPS:
        got = run(op, x)
        assert got.dtype.isnative
        check(op, got, native)


# ---------------------------------------------------------------------------
# out=

@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_out_layouts(isa, dtype, op, axis, rng):
    x = (rng.standard_normal((9, 70)) * 3).astype(dtype)
    want = run(op, x, axis=axis)
    outs = {
        "c": np.empty_like(x),
        "fortran": np.empty_like(x, order="F"),
        "strided": np.empty((9, 140), dtype)[:, ::2],
        "negative": np.empty_like(x)[::-1, ::-1],
        "row_padded": np.empty((9, 80), dtype)[:, 5:75],
    }
    for name, out in outs.items():
        out[...] = 12345
        r = OPS[op](x, axis=axis, out=out)
        assert r is out, name
        np.testing.assert_array_equal(out, want, err_msg=name)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0, 1, None, (0, 2)])
def test_in_place(isa, dtype, op, axis, rng):
    x0 = (rng.standard_normal((4, 33, 70)) * 3).astype(dtype)
    want = run(op, x0, axis=axis)
    for name, view in {"contiguous": lambda a: a, "strided": lambda a: a[:, ::2],
                       "reversed": lambda a: a[::-1, :, ::-1],
                       "fortran": np.asfortranarray}.items():
        x = view(x0.copy())
        w = run(op, x, axis=axis)
        r = OPS[op](x, axis=axis, out=x)
        assert r is x
        np.testing.assert_array_equal(x, w, err_msg=name)
    x = x0.copy()
    OPS[op](x, axis=axis, out=x)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("dtype", FLOATS)
def test_out_overlapping_input(isa, dtype):
    """out aliases x in a different order: the result is as if x were read
    completely before anything is written."""
    x = np.linspace(-2, 3, 40).astype(dtype).reshape(4, 10)
    want = csoftmax.softmax(x)
    csoftmax.softmax(x, out=x[::-1])
    np.testing.assert_array_equal(x[::-1], want)
    x = np.linspace(-2, 3, 40).astype(dtype).reshape(4, 10)
    want = csoftmax.log_softmax(x.T, axis=0)
    csoftmax.log_softmax(x.T, axis=0, out=x.T[:, ::-1])
    np.testing.assert_array_equal(x.T[:, ::-1], want)


def test_out_with_dtype(isa, rng):
    x = rng.standard_normal((5, 40))
    out32 = np.full(x.shape, 7, np.float32)
    csoftmax.softmax(x, dtype=np.float32, out=out32)
    check("softmax", out32, x.astype(np.float32))
    out16 = np.full(x.shape, 7, np.float16)
    csoftmax.log_softmax(x.astype(np.float16), out=out16)
    np.testing.assert_array_equal(out16, csoftmax.log_softmax(x.astype(np.float16)))


@pytest.mark.parametrize("op", list(OPS))
def test_empty_arrays(isa, op):
    for shape, axis in itertools.product([(0,), (0, 3), (3, 0), (2, 0, 4)], [-1, 0]):
        x = np.zeros(shape)
        got = run(op, x, axis=axis)
        if op == "logsumexp":
            kept = [s for i, s in enumerate(shape) if i != axis % len(shape)]
            assert got.shape == tuple(kept)
            # an empty reduction is log(0) = -inf
            if shape[axis] == 0:
                assert np.all(got == -np.inf)
        else:
            assert got.shape == shape and got.dtype == np.float64


def test_zero_d_and_empty_axis_tuple(isa):
    # regression: these raised IndexError in _plan
    assert csoftmax.logsumexp(np.float64(2.5)) == 2.5
    assert csoftmax.logsumexp(2.5, keepdims=True).shape == ()
    assert csoftmax.softmax(np.float64(2.5), axis=None) == 1.0
    assert csoftmax.log_softmax(np.float64(2.5), axis=None) == 0.0
    assert csoftmax.smooth_max(np.float64(2.5), axis=None) == 2.5
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(csoftmax.logsumexp(x, axis=()), x)
    np.testing.assert_array_equal(csoftmax.softmax(x, axis=()), np.ones_like(x))
    np.testing.assert_array_equal(csoftmax.log_softmax(x, axis=()), np.zeros_like(x))
