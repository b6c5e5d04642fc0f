"""Zero-copy intake (issue #6, section 1): DLPack (torch, JAX), the buffer
protocol and the array interface.

"No copy" is proved by pointer identity: the Cython entry points that the
facade hands the data to (``_core.rows_softmax`` etc.) are wrapped by a spy
that records the address of the array the kernels will read, and that
address must be the producer's own data pointer (``Tensor.data_ptr()``,
``jax.Array.unsafe_buffer_pointer()``, ``array.buffer_info()``, ...).
Results must equal what csoftmax computes on the same values as an ndarray
(same kernels, so bit for bit).
"""
import array

import numpy as np
import pytest

import csoftmax
from csoftmax import _core
from csoftmax._validate import as_input

_ENTRY_POINTS = ("rows_softmax", "cols_softmax", "rows_reduce", "cols_reduce")


def _ptr(a):
    return a.__array_interface__["data"][0]


@pytest.fixture
def kernel_reads(monkeypatch):
    """List of data addresses handed to the kernels during the test."""
    seen = []
    for fname in _ENTRY_POINTS:
        orig = getattr(_core, fname)

        def spy(x, *args, _orig=orig):
            seen.append(_ptr(x))
            return _orig(x, *args)

        monkeypatch.setattr(_core, fname, spy)
    return seen


def _all_ops(x):
    """Every public function on x; results as a list of ndarrays."""
    return [csoftmax.softmax(x), csoftmax.log_softmax(x),
            csoftmax.softmax(x, temperature=3.0),
            np.asarray(csoftmax.logsumexp(x, axis=-1)),
            np.asarray(csoftmax.smooth_max(x, sharpness=2.0))]


def _check_zero_copy(x, addr, values, kernel_reads):
    """All ops on x read memory at `addr` and agree with the ndarray `values`."""
    a, _, _ = as_input(x)
    assert _ptr(a) == addr, "as_input copied the data"
    kernel_reads.clear()
    got = _all_ops(x)
    assert len(kernel_reads) == 5
    assert all(p == addr for p in kernel_reads), "the kernels did not read x's own memory"
    want = _all_ops(values)
    for g, w in zip(got, want):
        assert type(g) is np.ndarray
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------------------
# torch

@pytest.fixture
def torch_mod():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_contiguous_zero_copy(torch_mod, dtype, kernel_reads):
    g = torch_mod.Generator().manual_seed(1)
    t = torch_mod.randn(40, 1000, generator=g, dtype=getattr(torch_mod, dtype)) * 4
    _check_zero_copy(t, t.data_ptr(), t.numpy().copy(), kernel_reads)


def test_torch_strided_rows_zero_copy(torch_mod, kernel_reads):
    # rows of 5 contiguous elements, 12 elements apart: the kernels take the
    # row stride, so no copy even though the tensor is not contiguous
    base = torch_mod.randn(30, 12, dtype=torch_mod.float64,
                           generator=torch_mod.Generator().manual_seed(2))
    t = base[:, 3:8]
    assert not t.is_contiguous()
    _check_zero_copy(t, t.data_ptr(), t.numpy().copy(), kernel_reads)


def test_torch_non_last_axis_zero_copy(torch_mod, kernel_reads):
    t = torch_mod.randn(6, 50, 70, dtype=torch_mod.float32,
                        generator=torch_mod.Generator().manual_seed(3))
    kernel_reads.clear()
    y = csoftmax.softmax(t, axis=1)
    assert kernel_reads == [t.data_ptr()]
    np.testing.assert_array_equal(y, csoftmax.softmax(t.numpy().copy(), axis=1))


def test_torch_in_place_through_numpy_view(torch_mod):
    t = torch_mod.randn(8, 300, dtype=torch_mod.float64,
                        generator=torch_mod.Generator().manual_seed(4))
    want = csoftmax.softmax(t.numpy().copy())
    r = csoftmax.softmax(t, out=t.numpy())
    assert _ptr(r) == t.data_ptr()
    np.testing.assert_array_equal(t.numpy(), want)     # the tensor itself changed


@pytest.mark.parametrize("dtype,result", [("float16", np.float16), ("int64", np.float64),
                                          ("int32", np.float64), ("bool", np.float64)])
def test_torch_other_dtypes(torch_mod, dtype, result):
    # these need a conversion (a copy), but are read through DLPack all the same
    t = (torch_mod.arange(24).reshape(4, 6) % 5).to(getattr(torch_mod, dtype))
    y = csoftmax.softmax(t)
    assert type(y) is np.ndarray and y.dtype == result
    np.testing.assert_array_equal(y, csoftmax.softmax(t.numpy()))
    np.testing.assert_array_equal(csoftmax.logsumexp(t, axis=0),
                                  csoftmax.logsumexp(t.numpy(), axis=0))


def test_torch_requires_grad_is_refused(torch_mod):
    t = torch_mod.randn(3, 4, requires_grad=True)
    with pytest.raises(TypeError, match=r"requires grad.*detach\(\)"):
        csoftmax.softmax(t)
    with pytest.raises(TypeError, match=r"b is a torch.Tensor that requires grad"):
        csoftmax.logsumexp(np.zeros(4), b=torch_mod.ones(4, requires_grad=True))
    y = csoftmax.softmax(t.detach())                   # the documented way out
    np.testing.assert_array_equal(y, csoftmax.softmax(t.detach().numpy()))


def test_torch_meta_device_is_refused_before_writing(torch_mod):
    out = np.full((3, 4), 7.0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"device meta.*CPU"):
        csoftmax.softmax(torch_mod.empty(3, 4, device="meta"), out=out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("dtype", ["complex64"])
def test_torch_unsupported_dtypes(torch_mod, dtype):
    t = torch_mod.ones(2, 3, dtype=getattr(torch_mod, dtype))
    with pytest.raises(TypeError, match="complex"):
        csoftmax.softmax(t)


def test_torch_bfloat16_read_in_place(torch_mod):
    # NumPy's DLPack import has no bfloat16: the tensor is read as int16 and
    # reinterpreted as ml_dtypes.bfloat16 (issue #20); a TypeError naming
    # ml_dtypes without it
    t = (torch_mod.arange(12, dtype=torch_mod.float32).reshape(3, 4) / 4).to(torch_mod.bfloat16)
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        with pytest.raises(TypeError, match="ml_dtypes"):
            csoftmax.softmax(t)
        return
    r = csoftmax.softmax(t.t(), axis=0)
    assert r.dtype.name == "bfloat16"
    want = torch_mod.softmax(t.t().double(), 0).to(torch_mod.bfloat16).float().numpy()
    np.testing.assert_allclose(r.astype(np.float32), want, rtol=2 ** -7)


# ---------------------------------------------------------------------------
# JAX

def test_jax_zero_copy(kernel_reads):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jax.random.normal(jax.random.PRNGKey(0), (20, 333), dtype=jnp.float32) * 3
    addr = x.unsafe_buffer_pointer()
    _check_zero_copy(x, addr, np.array(x), kernel_reads)


def test_jax_int_and_axis_none():
    jax = pytest.importorskip("jax")
    x = jax.numpy.arange(12, dtype=jax.numpy.int32).reshape(3, 4)
    np.testing.assert_array_equal(csoftmax.logsumexp(x), csoftmax.logsumexp(np.array(x)))
    np.testing.assert_array_equal(csoftmax.softmax(x, axis=None),
                                  csoftmax.softmax(np.array(x), axis=None))


# ---------------------------------------------------------------------------
# DLPack producers on devices the CPU cannot read, faked

class _FakeDevice:
    """A DLPack producer living on CUDA device 1: must be refused up front."""

    def __dlpack_device__(self):
        return (2, 1)

    def __dlpack__(self, **kw):             # pragma: no cover - must not be reached
        raise AssertionError("exported from a CUDA device")


def test_non_cpu_dlpack_device_is_refused():
    out = np.full(4, 7.0)
    with pytest.raises(ValueError, match=r"cuda \(DLPack device type 2, id 1\).*CPU"):
        csoftmax.softmax(_FakeDevice(), out=out)
    assert (out == 7.0).all()
    for f in (csoftmax.log_softmax, csoftmax.logsumexp, csoftmax.smooth_max):
        with pytest.raises(ValueError, match="cuda"):
            f(_FakeDevice())


# ---------------------------------------------------------------------------
# buffer protocol and array interface

@pytest.mark.parametrize("code", ["f", "d"])
def test_array_array_zero_copy(code, kernel_reads):
    rng = np.random.default_rng(5)
    arr = array.array(code, (rng.standard_normal(257) * 5).tolist())
    addr = arr.buffer_info()[0]
    values = np.array(arr)
    _check_zero_copy(arr, addr, values, kernel_reads)
    _check_zero_copy(memoryview(arr), addr, values, kernel_reads)


def test_memoryview_2d_zero_copy(kernel_reads):
    base = np.random.default_rng(6).standard_normal((9, 40)).astype(np.float32)
    _check_zero_copy(memoryview(base), _ptr(base), base.copy(), kernel_reads)


class _ArrayInterface:
    def __init__(self, a):
        self._a = a                              # keeps the memory alive
        self.__array_interface__ = a.__array_interface__


class _ArrayStruct:
    def __init__(self, a):
        self._a = a
        self.__array_struct__ = a.__array_struct__


@pytest.mark.parametrize("wrapper", [_ArrayInterface, _ArrayStruct])
def test_array_interface_zero_copy(wrapper, kernel_reads):
    base = np.random.default_rng(7).standard_normal((11, 64))
    _check_zero_copy(wrapper(base), _ptr(base), base.copy(), kernel_reads)


def test_bytes_buffer_is_uint8():
    # a memoryview of bytes has format 'B' (uint8): integers -> float64 result
    y = csoftmax.softmax(memoryview(b"\x00\x01\x02"))
    np.testing.assert_array_equal(y, csoftmax.softmax(np.array([0.0, 1.0, 2.0])))


def test_ndarray_untouched_path(kernel_reads):
    x = np.random.default_rng(8).standard_normal((4, 100))
    a, comp, res = as_input(x)
    assert a is x and comp == res == np.float64
