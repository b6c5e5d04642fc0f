"""Thread control (issue #6, section 5): csoftmax follows the OpenMP runtime
(OMP_NUM_THREADS, threadpoolctl) unless set_num_threads(n) pins it.

Nothing here is timed: the team size is observed through
``get_num_threads()`` and ``_core._last_num_threads()``, which reports
``omp_get_num_threads()`` as seen inside the last parallel loop (1 when the
loop ran serial).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import csoftmax
from csoftmax import _core

needs_openmp = pytest.mark.skipif(not _core.have_openmp(), reason="built without OpenMP")

LARGE = (256, 512)        # 131072 elements: above the 32768 threshold, 2+ blocks


@pytest.fixture(autouse=True)
def follow_openmp():
    """Each test starts following OpenMP (other tests may have pinned a count)."""
    prev = csoftmax.set_num_threads(None)
    try:
        yield
    finally:
        csoftmax.set_num_threads(prev)


@pytest.fixture
def threadpoolctl():
    return pytest.importorskip("threadpoolctl")


def _x(shape=LARGE, dtype=np.float64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _ops():
    """Each op with an input reaching one of the parallel loops."""
    rows = _x()
    cols = _x((4, 300, 64))
    long_row = _x((1, 70000))          # split across threads (>= 65536)
    cols1 = _x((1, 40, 1000), np.float32)
    return [
        ("softmax rows", lambda: csoftmax.softmax(rows)),
        ("log_softmax rows f32", lambda: csoftmax.log_softmax(rows.astype(np.float32))),
        ("logsumexp rows", lambda: csoftmax.logsumexp(rows, axis=1)),
        ("softmax cols", lambda: csoftmax.softmax(cols, axis=1)),
        # float32 columns take 1024-column tiles: one outer block of 1000
        # columns must still be cut for the threads
        ("log_softmax cols f32 one block",
         lambda: csoftmax.log_softmax(cols1, axis=1)),
        ("logsumexp cols", lambda: csoftmax.logsumexp(cols, axis=1)),
        ("softmax long row", lambda: csoftmax.softmax(long_row)),
        ("logsumexp long row", lambda: csoftmax.logsumexp(long_row, axis=1)),
    ]


def _teams():
    out = {}
    for name, f in _ops():
        f()
        out[name] = _core._last_num_threads()
    return out


# ---------------------------------------------------------------------------

def test_default_follows_omp_get_max_threads(threadpoolctl):
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openmp"]
    if _core.have_openmp():
        lib = _core._openmp_library()
        mine = [i for i in info if lib and os.path.samefile(i["filepath"], lib)]
        assert mine, f"threadpoolctl does not list csoftmax's OpenMP runtime {lib}: {info}"
        assert csoftmax.get_num_threads() == mine[0]["num_threads"]
    assert csoftmax.get_config()["num_threads"] == csoftmax.get_num_threads()


def test_threadpoolctl_lists_csoftmax_runtime(threadpoolctl):
    if not _core.have_openmp():
        pytest.skip("built without OpenMP")
    lib = _core._openmp_library()
    assert lib is not None and os.path.exists(lib)
    paths = [i["filepath"] for i in threadpoolctl.threadpool_info()
             if i["internal_api"] == "openmp"]
    assert any(os.path.samefile(p, lib) for p in paths), (lib, paths)


@needs_openmp
@pytest.mark.parametrize("limit", [1, 2])
def test_threadpool_limits_limit_the_team(threadpoolctl, limit):
    with threadpoolctl.threadpool_limits(limits=limit, user_api="openmp"):
        assert csoftmax.get_num_threads() == limit
        teams = _teams()
    assert teams == {name: limit for name in teams}


@needs_openmp
def test_threadpool_limits_is_lifted_on_exit(threadpoolctl):
    before = csoftmax.get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        assert csoftmax.get_num_threads() == 1
    assert csoftmax.get_num_threads() == before


@needs_openmp
def test_set_num_threads_takes_precedence_until_reset(threadpoolctl):
    assert csoftmax.set_num_threads(2) is None           # was following OpenMP
    with threadpoolctl.threadpool_limits(1):
        assert csoftmax.get_num_threads() == 2
        teams = _teams()
        assert teams == {name: 2 for name in teams}
        assert csoftmax.set_num_threads(None) == 2       # back to OpenMP ...
        assert csoftmax.get_num_threads() == 1           # ... which is limited
        teams = _teams()
        assert teams == {name: 1 for name in teams}


@needs_openmp
def test_set_num_threads_sets_the_team():
    for n in (1, 2):
        csoftmax.set_num_threads(n)
        assert csoftmax.get_num_threads() == n
        teams = _teams()
        assert teams == {name: n for name in teams}


def test_small_inputs_run_serial():
    csoftmax.set_num_threads(2)
    csoftmax.softmax(_x((10, 100)))            # 1000 elements
    assert _core._last_num_threads() == 1
    csoftmax.logsumexp(_x((3, 100, 10)), axis=1)
    assert _core._last_num_threads() == 1


def test_set_num_threads_returns_previous_and_validates():
    assert csoftmax.set_num_threads(3) is None
    expected = 3 if _core.have_openmp() else 1
    assert csoftmax.set_num_threads(1) == expected
    assert csoftmax.set_num_threads(np.int64(2)) == 1
    for bad in (0, -3):
        with pytest.raises(ValueError, match="threads must be >= 1"):
            csoftmax.set_num_threads(bad)
    for bad in ("two", 2.5):
        with pytest.raises(TypeError, match="integer or None"):
            csoftmax.set_num_threads(bad)
    assert csoftmax.get_num_threads() == (2 if _core.have_openmp() else 1)  # unchanged


@pytest.mark.parametrize("n", [1, 2])
def test_results_do_not_depend_on_the_source_of_the_count(threadpoolctl, n):
    # the same team size, pinned or limited through threadpoolctl, gives the
    # same bits (1 vs 2 threads need not: a split long row rounds differently)
    csoftmax.set_num_threads(n)
    ref = [f() for _, f in _ops()]
    csoftmax.set_num_threads(None)
    with threadpoolctl.threadpool_limits(n):
        got = [f() for _, f in _ops()]
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r, g)


_PROBE = ("import json, csoftmax; from csoftmax import _core; "
          "csoftmax.softmax([[0.0] * 512] * 256); "
          "print(json.dumps([csoftmax.get_num_threads(), _core._last_num_threads()]))")


def _probe(**env):
    e = dict(os.environ)
    e.pop("OMP_NUM_THREADS", None)
    e.update(env)
    # run where the imported csoftmax lives: from a source checkout's root the
    # uncompiled package would shadow an installed one (cwd is on sys.path)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(csoftmax.__file__)))
    r = subprocess.run([sys.executable, "-c", _PROBE], env=e, capture_output=True,
                       text=True, timeout=120, cwd=pkg_parent)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@needs_openmp
@pytest.mark.parametrize("n", ["1", "2"])
def test_omp_num_threads_environment(n):
    assert _probe(OMP_NUM_THREADS=n) == [int(n), int(n)]
