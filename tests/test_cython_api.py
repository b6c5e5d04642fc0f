"""Cython / C API (issue #6, section 4): a downstream Cython extension,
built in a temporary directory against the installed csoftmax, cimports
csoftmax and calls its nogil row functions inside its own prange loop.

The downstream results are compared with csoftmax's Python functions on the
same rows (the same dispatched kernels, so bit for bit when the row grouping
is the same: one row per call) and with a float64 NumPy reference
(rtol 1e-13 for float64, 2 ULP for float32).
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest

import csoftmax
from csoftmax import _core

DOWNSTREAM_PYX = textwrap.dedent('''
    # cython: language_level=3, boundscheck=False, wraparound=False
    from cython.parallel cimport prange, threadid
    cimport csoftmax                                   # csoftmax/__init__.pxd
    from csoftmax cimport (lse_rows_f64, log_softmax_rows_f32, softmax_rows,
                           log_softmax_rows, lse_rows, kernel_table)

    def softmax_each_row_f64(const double[:, ::1] x, double[:, ::1] y,
                             long[::1] tid, int nth):
        """One call per row, rows spread over the caller's own threads."""
        cdef Py_ssize_t r, n = x.shape[1]
        for r in prange(x.shape[0], nogil=True, num_threads=nth, schedule='static'):
            csoftmax.softmax_rows_f64(&x[r, 0], 1, n, n, 1.0, &y[r, 0], n)
            tid[r] = threadid()

    def log_softmax_chunks_f32(const float[:, :] x, float[:, :] y, Py_ssize_t chunk,
                               double scale, int nth):
        """Chunks of rows per call, strided rows (x and y row strides differ)."""
        cdef Py_ssize_t c, r0, m, nchunks = (x.shape[0] + chunk - 1) // chunk
        cdef Py_ssize_t xrs = x.strides[0] // sizeof(float)
        cdef Py_ssize_t yrs = y.strides[0] // sizeof(float)
        for c in prange(nchunks, nogil=True, num_threads=nth):
            r0 = c * chunk
            m = min(chunk, x.shape[0] - r0)
            log_softmax_rows_f32(&x[r0, 0], m, x.shape[1], xrs, scale, &y[r0, 0], yrs)

    def lse_each_row_f64(const double[:, ::1] x, double[::1] out, double scale, int nth):
        cdef Py_ssize_t r
        for r in prange(x.shape[0], nogil=True, num_threads=nth):
            lse_rows_f64(&x[r, 0], 1, x.shape[1], x.shape[1], scale, &out[r])

    def lse_all_f32(const float[:, ::1] x, double[::1] out):
        with nogil:
            lse_rows(&x[0, 0], x.shape[0], x.shape[1], x.shape[1], 1.0, &out[0])

    def fused_softmax(floating[:, ::1] x, floating[:, ::1] y, bint log):
        with nogil:
            if log:
                log_softmax_rows(&x[0, 0], x.shape[0], x.shape[1], x.shape[1], 1.0,
                                 &y[0, 0], y.shape[1])
            else:
                softmax_rows(&x[0, 0], x.shape[0], x.shape[1], x.shape[1], 1.0,
                             &y[0, 0], y.shape[1])

    def lse_empty_rows(Py_ssize_t rows):
        cdef double out[4]
        cdef double dummy = 0.0
        lse_rows_f64(&dummy, rows, 0, 0, 1.0, out)
        return [out[i] for i in range(rows)]

    def table_name():
        return kernel_table().name.decode()

    def ce_rows(floating[:, ::1] x, Py_ssize_t[::1] t, double scale, floating[:, ::1] g,
                double[::1] loss, int nth):
        """Per-row cross-entropy + gradient (mean over rows) in a prange loop."""
        cdef Py_ssize_t r, n = x.shape[1]
        cdef double inv = 1.0 / x.shape[0]
        for r in prange(x.shape[0], nogil=True, num_threads=nth):
            if floating is float:
                loss[r] = csoftmax.cross_entropy_row_f32(&x[r, 0], n, t[r], scale,
                                                         &g[r, 0], inv)
            else:
                loss[r] = csoftmax.cross_entropy_row_f64(&x[r, 0], n, t[r], scale,
                                                         &g[r, 0], inv)
''').replace("from cython.parallel", "from cython cimport floating\nfrom cython.parallel", 1)

SETUP_PY = textwrap.dedent('''
    import os, sys
    import numpy, csoftmax
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    omp = ["-fopenmp"] if os.environ.get("DS_OPENMP") == "1" else []
    ext = Extension("downstream", ["downstream.pyx"],
                    include_dirs=[csoftmax.get_include(), numpy.get_include()],
                    extra_compile_args=omp, extra_link_args=omp)
    # the .pxd files are found next to the installed package
    pkg_parent = os.path.dirname(os.path.dirname(csoftmax.__file__))
    setup(name="downstream", script_args=["build_ext", "--inplace", "-q"],
          ext_modules=cythonize([ext], include_path=[pkg_parent], quiet=True))
''')


def _have_compiler():
    cc = (sysconfig.get_config_var("CC") or "").split()
    return bool(cc) and shutil.which(cc[0]) is not None


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    pytest.importorskip("Cython")
    pytest.importorskip("setuptools")
    if not _have_compiler():
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("downstream")
    (d / "downstream.pyx").write_text(DOWNSTREAM_PYX)
    (d / "setup.py").write_text(SETUP_PY)
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(csoftmax.__file__))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + [p for p in [env.get("PYTHONPATH")] if p])
    env["DS_OPENMP"] = "1" if (_core.have_openmp() and os.name != "nt") else "0"
    r = subprocess.run([sys.executable, "setup.py"], cwd=d, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"downstream build failed:\n{r.stdout}\n{r.stderr}"
    sys.path.insert(0, str(d))
    try:
        import downstream as mod
    finally:
        sys.path.remove(str(d))
    return mod


NTH = 2


def _ref_log_softmax(x, scale=1.0):
    z = np.asarray(x, dtype=np.float64) * scale
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def _rows(shape, dtype, seed):
    return (np.random.default_rng(seed).standard_normal(shape) * 6).astype(dtype)


def test_kernel_table_is_the_dispatched_one(downstream, isa):
    assert downstream.table_name() == isa == csoftmax.get_config()["isa"]


def test_softmax_rows_in_prange(downstream, isa):
    x = _rows((203, 77), np.float64, 1)
    y = np.full_like(x, np.nan)
    tid = np.full(x.shape[0], -1, dtype=np.int_)
    downstream.softmax_each_row_f64(x, y, tid, NTH)
    if _core.have_openmp():
        assert set(tid) == set(range(NTH)), "the prange loop did not run on the threads"
    want = np.stack([csoftmax.softmax(row) for row in x])     # one row per call
    np.testing.assert_array_equal(y, want)
    np.testing.assert_allclose(y, np.exp(_ref_log_softmax(x)), rtol=1e-13)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_log_softmax_strided_chunks_f32(downstream, isa, scale):
    big = _rows((150, 40), np.float32, 2)
    x = big[:, 5:36]                         # strided rows, 31 contiguous elements
    out = np.full((150, 50), np.nan, dtype=np.float32)
    y = out[:, 7:38]
    downstream.log_softmax_chunks_f32(x, y, 17, scale, NTH)
    ref = _ref_log_softmax(x, scale)
    np.testing.assert_array_max_ulp(y, ref.astype(np.float32), maxulp=2)
    assert np.isnan(out[:, :7]).all() and np.isnan(out[:, 38:]).all()   # nothing outside
    np.testing.assert_allclose(y, csoftmax.log_softmax(x, temperature=1 / scale),
                               rtol=4 * 2.0 ** -23, atol=1e-6)


def test_lse_rows(downstream, isa):
    x = _rows((64, 300), np.float64, 3)
    out = np.empty(64)
    downstream.lse_each_row_f64(x, out, 1.0, NTH)
    np.testing.assert_array_equal(out, [csoftmax.logsumexp(row) for row in x])
    downstream.lse_each_row_f64(x, out, 3.0, NTH)           # LSE(scale * x)
    z = 3.0 * x
    m = z.max(axis=1)
    np.testing.assert_allclose(out, m + np.log(np.exp(z - m[:, None]).sum(axis=1)), rtol=1e-13)

    xf = _rows((130, 45), np.float32, 4)                    # > 64 rows: several blocks
    outf = np.empty(130)
    downstream.lse_all_f32(xf, outf)
    # float32 kernels evaluate each exp term to ~1 ULP of float32 and sum in
    # float64 (csoftmax.h), so the double LSE of float32 rows is good to an
    # absolute 2^-23 (about 1 ULP of float32 at |LSE| in [1, 2))
    np.testing.assert_allclose(outf, csoftmax.logsumexp(xf.astype(np.float64), axis=1),
                               rtol=0, atol=2.0 ** -23)
    np.testing.assert_array_max_ulp(outf.astype(np.float32),
                                    csoftmax.logsumexp(xf, axis=1), maxulp=1)


def test_lse_rows_empty_and_special(downstream):
    assert downstream.lse_empty_rows(3) == [-np.inf] * 3
    out = np.empty(3)
    x = np.array([[0.0, -40.0], [-np.inf, -np.inf], [np.inf, 1.0]])
    downstream.lse_each_row_f64(x, out, 1.0, 1)
    assert out[0] == csoftmax.logsumexp([0.0, -40.0]) > 0        # 4.25e-18, not 0
    assert out[1] == -np.inf and out[2] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_fused_wrappers(downstream, isa, dtype, log):
    x = _rows((70, 33), dtype, 5)
    y = np.empty_like(x)
    downstream.fused_softmax(x, y, log)
    ref = _ref_log_softmax(x)
    ref = ref if log else np.exp(ref)
    if dtype == np.float32:
        np.testing.assert_array_max_ulp(y, ref.astype(np.float32), maxulp=2)
    else:
        np.testing.assert_allclose(y, ref, rtol=1e-13)


def test_headers_and_pxd_ship_with_the_package():
    inc = csoftmax.get_include()
    assert os.path.isfile(os.path.join(inc, "csoftmax.h"))
    pkg = os.path.dirname(csoftmax.__file__)
    for f in ("__init__.pxd", "_core.pxd"):
        assert os.path.isfile(os.path.join(pkg, f)), f


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_row(downstream, isa, dtype):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((37, 19)) * 3).astype(dtype)
    t = rng.integers(0, 19, 37).astype(np.intp)
    g = np.empty_like(x)
    loss = np.empty(37)
    downstream.ce_rows(x, t, 0.5, g, loss, 2)
    want_loss, want_g = csoftmax.cross_entropy(x.astype(np.float64), t, temperature=2.0,
                                               reduction="none", return_grad=True)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss, want_loss, rtol=tol)
    np.testing.assert_allclose(g, want_g / 37, rtol=tol, atol=tol * 1e-2)
    # in place (grad = x) gives the same gradient; a bad label gives NaN, no write
    xi = x.copy()
    downstream.ce_rows(xi, t, 0.5, xi, loss, 1)
    np.testing.assert_array_equal(xi, g)
    t[0] = 19
    x0 = x.copy()
    downstream.ce_rows(x0, t, 0.5, x0, loss, 1)
    assert np.isnan(loss[0]) and np.array_equal(x0[0], x[0])
