"""csoftmax.scipy against scipy's own test file for these functions.

scipy ships scipy/special/tests/test_logsumexp.py; it is read from the
installed scipy at test time (never copied here), its import of
``logsumexp, softmax, log_softmax`` from scipy.special re-pointed at
csoftmax.scipy, and run by pytest in a subprocess with scipy's own conftest
(its `xp` fixture, NumPy backend).  Every real-valued case must pass; the
complex-valued cases are deselected (csoftmax.scipy refuses complex input
with TypeError, tested below), and so is the test of scipy's private
helper `_wrap_radians`.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

scipy = pytest.importorskip("scipy")

import csoftmax.scipy as css  # noqa: E402

SRC = os.path.join(os.path.dirname(scipy.__file__), "special", "tests", "test_logsumexp.py")
IMPORT = "from scipy.special import log_softmax, logsumexp, softmax"
# Deselected at collection (a conftest written beside the copy): cases with
# a complex parameter or dtype, and the complex-only tests, since complex
# input is refused by design; _wrap_radians tests scipy's private helper.
DESELECT_CONFTEST = '''
COMPLEX_ONLY = ("complex_sign", "gh21610", "gh21709", "wrap_radians")


def _complex(v):
    if isinstance(v, complex) or (isinstance(v, str) and v.startswith("complex")):
        return True
    return isinstance(v, (list, tuple)) and any(_complex(u) for u in v)


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(_complex(v) for v in params.values()) or any(
                k in item.name for k in COMPLEX_ONLY):
            drop.append(item)
        else:
            keep.append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
'''


def _scipy_tests(tmp_path):
    if not os.path.exists(SRC):
        pytest.skip(f"scipy {scipy.__version__} does not ship {SRC}")
    with open(SRC) as f:
        text = f.read()
    if IMPORT not in text:
        pytest.skip("scipy's test file no longer imports the functions as expected")
    path = tmp_path / "test_scipy_logsumexp_on_csoftmax.py"
    # the functions under test come from csoftmax.scipy; scipy's own stay
    # only as keys of its array-API capability table (make_xp_test_case)
    text = text.replace(IMPORT, IMPORT.replace("import log_softmax, logsumexp, softmax",
                                               "import log_softmax as _sp_log_softmax, "
                                               "logsumexp as _sp_logsumexp, "
                                               "softmax as _sp_softmax")
                        + "\nfrom csoftmax.scipy import log_softmax, logsumexp, softmax")
    text = re.sub(r"make_xp_test_case\((\w+)\)", r"make_xp_test_case(_sp_\1)", text)
    path.write_text(text)
    (tmp_path / "conftest.py").write_text(DESELECT_CONFTEST)
    return path


def test_scipy_own_tests_pass(tmp_path):
    path = _scipy_tests(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "scipy.conftest",
         "-W", "ignore::DeprecationWarning", "--rootdir", str(tmp_path),
         "-o", "addopts=", str(path)],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    out = r.stdout + r.stderr
    m = re.search(r"(\d+) passed", out)
    assert r.returncode == 0 and m, out[-4000:]
    assert int(m.group(1)) >= 50, out[-2000:]
    assert " failed" not in out, out[-4000:]


def test_complex_input_is_refused():
    for f in (css.logsumexp, css.softmax, css.log_softmax):
        with pytest.raises(TypeError, match="complex"):
            f(np.array([1 + 1j, 2]))


def test_defaults_are_scipys():
    x = np.arange(6.0).reshape(2, 3)
    sp = pytest.importorskip("scipy.special")
    np.testing.assert_allclose(css.softmax(x), sp.softmax(x), rtol=1e-15)
    np.testing.assert_allclose(css.log_softmax(x), sp.log_softmax(x), rtol=1e-15)
    assert css.softmax(3.0) == 1.0 and css.log_softmax(3.0) == 0.0
    assert css.logsumexp(a=x) == pytest.approx(sp.logsumexp(x), rel=1e-15)
    r = css.logsumexp(np.array([1, 2], np.int32), b=np.float32([1, 1]))
    assert r.dtype == sp.logsumexp(np.array([1, 2], np.int32), b=np.float32([1, 1])).dtype


# ---------------------------------------------------------------------------
# 0-d input and result dtypes, against scipy.special itself

def _outcome(f, *args, **kw):
    """(kind, dtype, shape, value) of a result, or the exception type (and,
    for AxisError, its message)."""
    try:
        with np.errstate(all="ignore"):     # scipy's own inf - inf warnings
            r = f(*args, **kw)
    except Exception as e:  # noqa: BLE001 - the type is the outcome compared
        return (type(e).__name__, str(e) if isinstance(e, np.exceptions.AxisError) else "")
    rs = r if isinstance(r, tuple) else (r,)
    # the value as text: nan == nan; + 0.0: the sign of a zero is not compared
    # (the AVX2 short-row float32 log_softmax gives -0.0 at the argmax of a
    # one-element row, scipy +0.0: a known nit, docs/accuracy.md)
    return tuple((type(u).__name__, np.asarray(u).dtype, np.shape(u),
                  str((np.asarray(u, dtype=np.float64) + 0.0).tolist())) for u in rs)


ZERO_D = [np.float64(3.0), 3.0, 2, np.float32(-1.5), np.array(0.25, np.float16),
          np.array(-np.inf)]
AXES_0D = [0, -1, 1, -2, (0,), (-1,), (1,), (), None]


@pytest.mark.parametrize("axis", AXES_0D, ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_zero_d_softmax_family_is_scipys(name, axis):
    sp = pytest.importorskip("scipy.special")
    for x in ZERO_D:
        assert _outcome(getattr(css, name), x, axis=axis) == \
            _outcome(getattr(sp, name), x, axis=axis), (x, axis)


@pytest.mark.parametrize("axis", AXES_0D, ids=str)
def test_zero_d_logsumexp_is_scipys(axis):
    sp = pytest.importorskip("scipy.special")
    for x in ZERO_D:
        for b in (None, 2.0, np.array(0.0), -1.0, np.float32(0.5)):
            for keepdims in (False, True):
                for return_sign in (False, True):
                    kw = dict(axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
                    assert _outcome(css.logsumexp, x, **kw) == \
                        _outcome(sp.logsumexp, x, **kw), (x, kw)


def test_zero_d_examples():
    assert css.softmax(np.float64(3.0), axis=0) == 1.0
    assert css.log_softmax(np.float64(3.0), axis=-1) == 0.0
    assert css.logsumexp(np.float64(3.0), axis=0) == 3.0
    with pytest.raises(np.exceptions.AxisError, match="dimension 0") as e:
        css.softmax(np.float64(3.0), axis=1)
    assert "csoftmax.scipy" not in str(e.value)


DTYPE_VALUES = {
    "int": 2, "float": 0.5, "bool": True,
    "np.float16": np.float16(0.5), "np.float32": np.float32(0.5),
    "np.float64": np.float64(0.5), "np.int8": np.int8(2), "np.int64": np.int64(2),
    "np.uint8": np.uint8(2), "np.bool": np.bool_(True),
    "float16[]": np.float16([1, 2]), "float32[]": np.float32([1, 2]),
    "float64[]": np.float64([1, 2]), ">f8[]": np.array([1, 2], ">f8"),
    "int8[]": np.int8([1, 2]), "int16[]": np.int16([1, 2]), "int32[]": np.int32([1, 2]),
    "int64[]": np.int64([1, 2]), "uint8[]": np.uint8([1, 2]), "uint64[]": np.uint64([1, 2]),
    "bool[]": np.array([True, False]), "float32 0-d": np.array(0.5, np.float32),
    "list": [1.0, 2.0],
}


def _dtype_of(f, *args, **kw):
    try:
        with np.errstate(all="ignore"):
            r = f(*args, **kw)
    except Exception as e:  # noqa: BLE001
        return type(e).__name__
    r = r[0] if isinstance(r, tuple) else r
    return type(r).__name__, np.asarray(r).dtype


@pytest.mark.parametrize("a", list(DTYPE_VALUES), ids=str)
def test_logsumexp_result_dtype_is_scipys(a):
    """Python scalars are weak in the promotion (NumPy 2): float32 with
    b=0.5 stays float32; scipy.special.logsumexp is the reference."""
    sp = pytest.importorskip("scipy.special")
    av = DTYPE_VALUES[a]
    for b, bv in [("None", None)] + list(DTYPE_VALUES.items()):
        for rs in (False, True):
            assert _dtype_of(css.logsumexp, av, b=bv, return_sign=rs) == \
                _dtype_of(sp.logsumexp, av, b=bv, return_sign=rs), (a, b, rs)


def test_logsumexp_python_scalar_examples():
    assert css.logsumexp(np.float32([1, 2]), b=0.5).dtype == np.float32
    assert css.logsumexp(1.0, b=np.float32(2)).dtype == np.float32
    assert css.logsumexp(np.float16([1, 2]), b=2).dtype == np.float16
    assert css.logsumexp(2**70, b=np.float32(1)) == np.float32(2**70)
    np.testing.assert_allclose(css.logsumexp(np.float32([1, 2]), b=0.5),
                               np.log(0.5 * (np.e + np.e**2)), rtol=1e-6)


@pytest.mark.parametrize("x", [k for k in DTYPE_VALUES if "bool" not in k], ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_result_dtype_is_scipys(name, x):
    """x's float dtype; integers: the dtype np.exp gives them (int8: float16).
    Values against scipy on float64 input (scipy's own x - max(x) wraps
    around for unsigned integers)."""
    sp = pytest.importorskip("scipy.special")
    xv = DTYPE_VALUES[x]
    with np.errstate(all="ignore"):     # scipy's integer x - max(x) overflows
        ours, ref = getattr(css, name)(xv), getattr(sp, name)(xv)
    assert (type(ours), np.asarray(ours).dtype) == (type(ref), np.asarray(ref).dtype)
    want = getattr(sp, name)(np.asarray(xv, dtype=np.float64))
    np.testing.assert_allclose(np.asarray(ours, np.float64), want,
                               rtol=2e-3 if np.asarray(ref).dtype == np.float16 else 1e-6)


def test_softmax_family_bool_input_is_float64():
    """scipy refuses bool x (NumPy's boolean subtract); here it computes in
    float64, as documented."""
    for f in (css.softmax, css.log_softmax):
        assert f(np.array([True, False])).dtype == np.float64
