"""get_config, thread count, and the CSOFTMAX_ISA / OMP_NUM_THREADS
environment variables (checked in fresh interpreters)."""
import json
import os
import subprocess
import sys

import pytest

import csoftmax
from csoftmax import _core

# make the subprocess import the same csoftmax as this process
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(csoftmax.__file__)))
_PROBE = r"""
import json, warnings
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import csoftmax
    y = csoftmax.softmax([1.0, 2.0, 3.0, 4.0])
print(json.dumps({"config": csoftmax.get_config(), "y": [float(v) for v in y],
                  "warnings": [(c.category.__name__, str(c.message)) for c in w]}))
"""


def _probe(**env):
    e = dict(os.environ)
    e.pop("CSOFTMAX_ISA", None)
    e.update(env)
    e["PYTHONPATH"] = _ROOT + os.pathsep + e.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _PROBE], env=e, capture_output=True,
                       text=True, timeout=60, cwd=_ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_get_config_keys():
    c = csoftmax.get_config()
    assert set(c) == {"version", "isa", "available_isas", "openmp", "num_threads",
                      "max_threads", "output_cache"}
    assert isinstance(c["output_cache"], int) and c["output_cache"] >= 0
    assert c["version"] == csoftmax.__version__ and isinstance(c["version"], str)
    assert c["isa"] in c["available_isas"]
    assert "scalar" in c["available_isas"]
    assert set(c["available_isas"]) <= {"scalar", "avx2", "avx512"}
    assert isinstance(c["openmp"], bool)
    assert isinstance(c["num_threads"], int) and c["num_threads"] >= 1


def test_use_isa_switches_and_restores():
    for name in _core.available_isas():
        prev = _core._use_isa(name)
        try:
            assert csoftmax.get_config()["isa"] == name
        finally:
            assert _core._use_isa(prev) == name
    with pytest.raises(ValueError):
        _core._use_isa("sse9")


def test_set_get_num_threads():
    prev = csoftmax.get_num_threads()
    try:
        csoftmax.set_num_threads(1)
        assert csoftmax.get_num_threads() == 1
        assert csoftmax.get_config()["num_threads"] == 1
        csoftmax.set_num_threads(2)
        expected = 2 if csoftmax.get_config()["openmp"] else 1
        assert csoftmax.get_num_threads() == expected
        for bad in (0, -1, -100):
            with pytest.raises(ValueError, match="threads"):
                csoftmax.set_num_threads(bad)
            assert csoftmax.get_num_threads() == expected      # unchanged
        with pytest.raises((TypeError, ValueError)):
            csoftmax.set_num_threads("two")
    finally:
        csoftmax.set_num_threads(prev)


def test_env_isa_scalar_honoured():
    r = _probe(CSOFTMAX_ISA="scalar")
    assert r["config"]["isa"] == "scalar"
    assert not r["warnings"]
    assert [round(v, 4) for v in r["y"]] == [0.0321, 0.0871, 0.2369, 0.6439]


@pytest.mark.skipif("avx2" not in _core.available_isas(), reason="no AVX2 on this CPU")
def test_env_isa_avx2_honoured():
    assert _probe(CSOFTMAX_ISA="avx2")["config"]["isa"] == "avx2"


@pytest.mark.skipif("avx512" not in _core.available_isas(),
                    reason="no AVX-512 F/BW/DQ/VL (or no OS ZMM state) on this CPU")
def test_env_isa_avx512_honoured():
    r = _probe(CSOFTMAX_ISA="avx512")
    assert r["config"]["isa"] == "avx512"
    assert not r["warnings"]
    assert [round(v, 4) for v in r["y"]] == [0.0321, 0.0871, 0.2369, 0.6439]


def test_env_isa_avx512_unavailable_warns():
    if "avx512" in _core.available_isas():
        pytest.skip("this CPU has AVX-512: the request is honoured")
    r = _probe(CSOFTMAX_ISA="avx512")
    assert r["config"]["isa"] == _core.available_isas()[-1]
    assert any(cat == "RuntimeWarning" for cat, _ in r["warnings"]), r["warnings"]


def test_env_isa_unknown_warns_and_falls_back():
    best = _core.available_isas()[-1]
    r = _probe(CSOFTMAX_ISA="avx1024-please")
    assert r["config"]["isa"] == best
    assert any(cat == "RuntimeWarning" and "avx1024-please" in msg
               for cat, msg in r["warnings"]), r["warnings"]
    assert [round(v, 4) for v in r["y"]] == [0.0321, 0.0871, 0.2369, 0.6439]


def test_default_isa_is_best():
    r = _probe()
    assert r["config"]["isa"] == _core.available_isas()[-1]


@pytest.mark.skipif(not csoftmax.get_config()["openmp"], reason="built without OpenMP")
def test_omp_num_threads_default():
    assert _probe(OMP_NUM_THREADS="1")["config"]["num_threads"] == 1
    assert _probe(OMP_NUM_THREADS="2")["config"]["num_threads"] == 2
