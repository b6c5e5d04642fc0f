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
