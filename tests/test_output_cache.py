"""The output cache (src/outcache.c, csoftmax.set_output_cache): large
results come from blocks NumPy freed before, never from memory a live array
still uses; the limit is kept; results do not depend on it."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name

import csoftmax
from csoftmax import _core

MIB = 1 << 20
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(csoftmax.__file__)))


@pytest.fixture
def cache():
    """A cache of 64 MiB, emptied before and after the test."""
    prev = csoftmax.set_output_cache(0)
    csoftmax.set_output_cache(64 * MIB)
    try:
        yield
    finally:
        csoftmax.set_output_cache(0)
        csoftmax.set_output_cache(prev)


def _owner(a):
    while a.base is not None and isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _x(shape, dt=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dt)


def test_large_results_come_from_the_cache_small_ones_not(cache):
    x = _x((64, 4096))                  # 1 MiB of float32
    y = csoftmax.softmax(x)
    assert get_handler_name(_owner(y)) == "csoftmax_output_cache"
    assert _owner(y).ctypes.data % 64 == 0
    s = csoftmax.softmax(x[:8])         # 128 KiB: NumPy's allocator
    assert get_handler_name(_owner(s)) == "default_allocator"
    assert get_handler_name() == "default_allocator"    # restored after the call


def test_freed_block_is_reused_and_live_ones_never(cache):
    x = _x((256, 4096))
    y1 = csoftmax.softmax(x)
    p1 = _owner(y1).ctypes.data
    del y1
    st = _core.output_cache_stats()
    assert st["held_blocks"] == 1 and st["held_bytes"] >= x.nbytes
    y2 = csoftmax.softmax(x)
    assert _owner(y2).ctypes.data == p1                  # the freed block
    assert _core.output_cache_stats()["held_blocks"] == 0
    view = y2[::3]                      # keeps y2's block alive
    del y2
    y3 = csoftmax.log_softmax(x)
    assert not np.shares_memory(view, y3)
    ref = csoftmax.softmax(x)
    np.testing.assert_array_equal(view, ref[::3])         # not overwritten
    np.testing.assert_array_equal(y3, csoftmax.log_softmax(x))


def test_results_do_not_depend_on_the_cache(cache):
    x = _x((300, 5000), np.float64, 3)
    t = np.random.default_rng(4).integers(0, 5000, 300)
    with_cache = [csoftmax.softmax(x), csoftmax.log_softmax(x),
                  csoftmax.cross_entropy(x, t, return_grad=True)[1]]
    csoftmax.set_output_cache(0)
    assert _core.output_cache_stats()["held_bytes"] == 0
    without = [csoftmax.softmax(x), csoftmax.log_softmax(x),
               csoftmax.cross_entropy(x, t, return_grad=True)[1]]
    for a, b in zip(with_cache, without):
        assert get_handler_name(_owner(a)) == "csoftmax_output_cache"
        assert get_handler_name(_owner(b)) == "default_allocator"
        np.testing.assert_array_equal(a, b)


def test_limit_is_kept_and_oldest_dropped_first(cache):
    csoftmax.set_output_cache(5 * MIB)
    arrs = [_core.empty((k * MIB,), np.uint8) for k in (1, 2, 3)]
    ptrs = [a.ctypes.data for a in arrs]
    del arrs[0]                          # 1 MiB kept
    del arrs[0]                          # + 2 MiB kept
    st = _core.output_cache_stats()
    assert st["held_blocks"] == 2 and st["held_bytes"] <= 5 * MIB
    del arrs[0]                          # 3 MiB: the 1 MiB block is dropped
    st = _core.output_cache_stats()
    assert st["held_blocks"] == 2 and st["held_bytes"] <= 5 * MIB
    a = _core.empty((3 * MIB,), np.uint8)
    assert a.ctypes.data == ptrs[2]      # the most recent fitting block
    b = _core.empty((MIB,), np.uint8)    # the 2 MiB block is too big for it
    assert b.ctypes.data != ptrs[1]
    big = _core.empty((6 * MIB,), np.uint8)
    del big                              # above the limit: not kept
    assert _core.output_cache_stats()["held_bytes"] <= 5 * MIB


def test_block_count_is_bounded(cache):
    arrs = [_core.empty((MIB,), np.uint8) for _ in range(12)]
    del arrs
    assert _core.output_cache_stats()["held_blocks"] == 8


def test_resize_and_copy_of_a_cached_array(cache):
    a = _core.empty((MIB // 8,), np.float64)
    a[:] = np.arange(a.size)
    a.resize(3 * MIB // 8, refcheck=False)       # NumPy reallocates through the handler
    np.testing.assert_array_equal(a[:MIB // 8], np.arange(MIB // 8))
    big = a.ctypes.data
    a.resize(MIB // 16, refcheck=False)          # under half the block: a smaller one
    np.testing.assert_array_equal(a, np.arange(MIB // 16))
    assert a.ctypes.data != big
    a.resize(MIB // 20, refcheck=False)          # over half: stays
    np.testing.assert_array_equal(a, np.arange(MIB // 20))
    c = a.copy()
    assert get_handler_name(c) == "default_allocator"
    del a
    np.testing.assert_array_equal(c, np.arange(MIB // 20))


def test_threads_allocating_and_freeing(cache):
    x = _x((128, 4096), np.float32, 7)
    ref = csoftmax.softmax(x)
    errors = []

    def work():
        try:
            keep = []
            for i in range(30):
                y = csoftmax.softmax(x)
                if i % 3 == 0:
                    keep.append(y)
                if not np.array_equal(y, ref):
                    errors.append("mismatch")
            for y in keep:
                if not np.array_equal(y, ref):
                    errors.append("overwritten")
        except Exception as e:      # pragma: no cover - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    assert _core.output_cache_stats()["held_blocks"] <= 8


def test_shape_as_numpy_integers(cache):
    a = _core.empty(np.int64(MIB), np.uint8)
    b = _core.empty((np.int32(2), np.int64(MIB)), np.uint8)
    assert a.shape == (MIB,) and b.shape == (2, MIB)
    with pytest.raises(ValueError):
        _core.empty((-1, MIB), np.uint8)


def test_a_handler_the_caller_installed_is_kept(cache):
    """Results use the cache only under NumPy's default handler: a handler
    set by the caller (here: another capsule of NumPy's allocator, standing
    in for a user's) is used as it is, and stays current."""
    x = _x((64, 4096))
    user = _core._other_default_handler()
    old = _core._set_handler(user)
    try:
        y = csoftmax.softmax(x)
        assert _core._get_handler() is user
    finally:
        _core._set_handler(old)
    assert get_handler_name() == "default_allocator"
    assert get_handler_name(_owner(y)) == "default_allocator"     # the caller's
    z = csoftmax.softmax(x)
    assert get_handler_name(_owner(z)) == "csoftmax_output_cache"
    np.testing.assert_array_equal(y, z)


def test_failed_allocation_drops_the_cache_and_retries():
    """A fresh block that cannot be had is asked for again after the kept
    blocks are freed (under an address-space limit, in a child process)."""
    code = r"""
import resource, numpy as np, csoftmax
from csoftmax import _core
MIB = 1 << 20
csoftmax.set_output_cache(256 * MIB)
keep = [_core.empty((16 * MIB,), np.uint8) for _ in range(8)]
for a in keep:
    a[::4096] = 1                       # touched: resident
del keep, a
assert _core.output_cache_stats()["held_blocks"] == 8
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
import os, sys
vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
if hard != resource.RLIM_INFINITY and hard < vm + 100 * MIB:
    print("skip hard limit"); sys.exit(0)
resource.setrlimit(resource.RLIMIT_AS, (vm + 100 * MIB, hard))
a = _core.empty((160 * MIB,), np.uint8)  # fits only once the 128 MiB are freed
a[::4096] = 2
print("ok", _core.output_cache_stats()["held_blocks"])
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS and /proc: Linux")
    if os.environ.get("CSOFTMAX_TEST_UNDER_ASAN") or "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("libasan aborts on a failed malloc instead of returning NULL")
    e = dict(os.environ)
    e["PYTHONPATH"] = _ROOT + os.pathsep + e.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                       timeout=120, cwd=_ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    if r.stdout.startswith("skip"):
        pytest.skip("the hard address-space limit leaves no room for the test")
    assert r.stdout.split() == ["ok", "0"]


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (True, TypeError),
                                      (1.5, TypeError), ("1M", TypeError), (None, TypeError)])
def test_set_output_cache_rejects(bad, exc):
    prev = csoftmax.get_config()["output_cache"]
    with pytest.raises(exc, match="nbytes"):
        csoftmax.set_output_cache(bad)
    assert csoftmax.get_config()["output_cache"] == prev


def test_set_output_cache_returns_previous_and_takes_numpy_ints():
    prev = csoftmax.set_output_cache(np.int64(3 * MIB))
    try:
        assert csoftmax.get_config()["output_cache"] == 3 * MIB
        assert csoftmax.set_output_cache(MIB) == 3 * MIB
    finally:
        csoftmax.set_output_cache(prev)


_PROBE = r"""
import json, warnings
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import csoftmax
print(json.dumps({"limit": csoftmax.get_config()["output_cache"],
                  "warnings": [str(c.message) for c in w]}))
"""


@pytest.mark.parametrize("value, limit, warns", [
    (None, 256 * MIB, False), ("0", 0, False), ("512M", 512 * MIB, False),
    ("1GiB", 1 << 30, False), ("4096", 4096, False), ("64k", 64 << 10, False),
    ("256MB", 256 * MIB, False), ("", 256 * MIB, False),
    ("lots", 256 * MIB, True), ("-1", 256 * MIB, True), ("1.5G", 256 * MIB, True),
    ("1i", 256 * MIB, True)])
def test_environment_variable(value, limit, warns):
    e = dict(os.environ)
    e.pop("CSOFTMAX_OUTPUT_CACHE", None)
    if value is not None:
        e["CSOFTMAX_OUTPUT_CACHE"] = value
    e["PYTHONPATH"] = _ROOT + os.pathsep + e.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _PROBE], env=e, capture_output=True,
                       text=True, timeout=60, cwd=_ROOT)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["limit"] == limit
    assert any("CSOFTMAX_OUTPUT_CACHE" in m for m in got["warnings"]) == warns
