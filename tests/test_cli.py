"""Command line (`python -m csoftmax ...`) and benchmark plumbing.

Checks structure only, never timings (speed belongs in benchmarks)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import csoftmax
from csoftmax import _bench

ROOT = Path(__file__).resolve().parents[1]
PKG_PARENT = str(Path(csoftmax.__file__).resolve().parents[1])


def run_cli(*args, timeout=180):
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "csoftmax", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=PKG_PARENT)


def test_info_prints_config():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    cfg = csoftmax.get_config()
    assert f"csoftmax {cfg['version']}" in r.stdout
    for key in ("isa", "available isas", "openmp", "threads", "cpu"):
        assert key in r.stdout
    assert cfg["isa"] in r.stdout


def test_info_json_matches_get_config():
    r = run_cli("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    cfg = csoftmax.get_config()
    for key in ("version", "isa", "available_isas", "openmp"):
        assert info[key] == cfg[key]
    assert isinstance(info["num_threads"], int) and info["num_threads"] >= 1


@pytest.mark.parametrize("args", [(), ("frobnicate",)])
def test_no_or_unknown_command_prints_usage_and_exits_2(args):
    r = run_cli(*args)
    assert r.returncode == 2
    assert "usage:" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args", [
    ("--dtype", "float8"), ("--ops", "softmax,nope"), ("--shapes", "64xabc"),
    ("--shapes", "0x10"), ("--shapes", "8x8:2"), ("--threads", "0"), ("--repeat", "0"),
])
def test_bench_bad_option_exits_2(args):
    r = run_cli("bench", "--quick", *args)
    assert r.returncode == 2
    assert "error" in r.stderr


def test_bench_quick_json_structure():
    r = run_cli("bench", "--quick", "--shapes", "64x100", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["unit"] == "ns/element"
    assert doc["threads"] == 1
    assert "csoftmax" in doc["peers"] and "numpy" in doc["peers"]
    assert doc["env"]["config"]["version"] == csoftmax.__version__
    expected_ops = [o for o in _bench.DEFAULT_OPS if _bench.OPS[o].available(csoftmax)]
    assert [r["op"] for r in doc["results"]] == expected_ops
    for row in doc["results"]:
        assert row["shape"] == [64, 100] and row["axis"] == 1 and row["dtype"] == "float32"
        assert row["n_elements"] == 6400
        assert set(row["times"]) == set(_bench.PEERS)
        for p in doc["peers"]:
            if p in _bench.OPS[row["op"]].builders:
                assert row["times"][p] > 0
        for p in doc["missing_peers"]:
            assert row["times"][p] is None
        assert row["floor_copy"] > 0
        if row["floor_kind"] == "sum":
            assert row["floor_sum"] > 0
        floor = row["floor_sum"] if row["floor_kind"] == "sum" else row["floor_copy"]
        assert row["ratio_to_floor"] == pytest.approx(row["times"]["csoftmax"] / floor)
        best = row["best_peer"]
        assert best in _bench.RIVALS
        rivals = [row["times"][p] for p in _bench.RIVALS if row["times"][p] is not None]
        assert row["times"][best] == min(rivals)
        assert row["speedup"] == pytest.approx(row["times"][best] / row["times"]["csoftmax"])
    assert "bench" in r.stderr          # progress goes to stderr
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cpus > 1 and hasattr(os, "sched_setaffinity"):
        # a 1-thread run pins the whole process (XLA ignores its thread flags)
        assert doc["pinned_cpus"] is not None and len(doc["pinned_cpus"]) == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity call here")
def test_pin_process_moves_every_thread_and_restores():
    import threading
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("one CPU: nothing to pin")
    seen = {}
    ev, go = threading.Event(), threading.Event()

    def worker():
        ev.set()
        go.wait(10)
        seen["worker"] = os.sched_getaffinity(0)

    t = threading.Thread(target=worker)
    t.start()
    ev.wait(10)
    pinned = _bench.pin_process(1)
    try:
        go.set()
        t.join(10)
        assert pinned is not None and len(pinned[1]) == 1
        assert seen["worker"] == pinned[1] == os.sched_getaffinity(0)
    finally:
        _bench._set_affinity(pinned[0])
    assert os.sched_getaffinity(0) == before


def test_bench_table_options():
    r = run_cli("bench", "--quick", "--shapes", "4x3x5:1,16x8", "--dtype", "float32,float64",
                "--ops", "log_softmax,smooth_max", "--peers", "numpy", "--repeat", "2",
                "--threads", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert "threads=2" in out
    header = next(line for line in out.splitlines() if line.startswith("op "))
    for col in ("floor", "numpy formula", "csoftmax", "cs/floor", "speed-up"):
        assert col in header
    assert "scipy.special" not in header and "torch" not in header
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("log_softmax ", "smooth_max "))]
    assert len(rows) == 2 * 2 * 2
    assert {(r[0], r[1], r[2]) for r in rows} == {
        (op, shp, dt) for op in ("log_softmax", "smooth_max") for shp in ("4x3x5:1", "16x8")
        for dt in ("float32", "float64")}
    assert all(r[4] == "sum" for r in rows if r[0] == "smooth_max")


def test_parse_shapes():
    assert _bench.parse_shapes("8192x1000, 32x21x128x128:1,1x1e7") == [
        ((8192, 1000), -1), ((32, 21, 128, 128), 1), ((1, 10_000_000), -1)]
    for bad in ("", "x", "8x-1", "8x8:5", "8;8"):
        with pytest.raises(ValueError):
            _bench.parse_shapes(bad)


@pytest.mark.parametrize("op", sorted(_bench.OPS))
@pytest.mark.parametrize("shape,axis", [((5, 7), -1), ((3, 4, 6), 1)])
def test_registry_peers_agree(op, shape, axis):
    """Every peer in the registry computes the same thing as csoftmax, so the
    table compares like with like (peers only, when csoftmax lacks the op)."""
    pe = _bench.Peers()
    case = _bench.Case(shape, axis, "float64", pe)
    ref = None
    for peer, build in _bench.OPS[op].builders.items():
        mod = pe.get(peer)
        if mod is None or (peer == "csoftmax" and not _bench.OPS[op].available(csoftmax)):
            continue
        fn = build(case, mod)
        got = fn()
        if op == "cross_entropy" and peer == "torch":
            got = case.cached("t_leaf", None).grad.numpy()
        elif op == "cross_entropy":
            got = np.asarray(got[1])          # (loss, grad): compare gradients
        got = np.asarray(got.detach().numpy() if hasattr(got, "detach") else got)
        if ref is None:
            ref = got
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=peer)


def test_measure_returns_positive_times_for_each_callable():
    calls = {"a": 0, "b": 0}

    def f(k):
        def g():
            calls[k] += 1
        return g
    out = _bench.measure({"a": f("a"), "b": f("b")}, repeat=3, budget=0.0)
    assert set(out) == {"a", "b"} and all(v > 0 for v in out.values())
    assert calls["a"] >= 4 and calls["b"] >= 4        # warm-up, calibration, >= 2 samples


# ---------------------------------------------------------------------------
# asv suite: run every benchmark body once on a tiny input (no asv needed)

def _load_asv_module():
    import importlib.util
    path = ROOT / "asv_bench" / "benchmarks" / "bench_softmax.py"
    if not path.exists():
        pytest.skip("asv_bench not in this tree")
    spec = importlib.util.spec_from_file_location("bench_softmax", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_asv_config_is_valid_json_with_repo():
    text = (ROOT / "asv_bench" / "asv.conf.json").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    conf = json.loads(body)
    assert conf["repo"] == ".." and conf["benchmark_dir"] == "benchmarks"


@pytest.mark.parametrize("shape", ["16x8", "3x4x5:1"])
def test_asv_benchmarks_run_once(shape):
    mod = _load_asv_module()
    prev = csoftmax.get_num_threads()
    ran = 0
    for cls in (mod.Softmax, mod.Backward, mod.Floor, mod.CrossEntropy,
                mod.CrossEntropyMemory, mod.RatioToFloor):
        names = [n for n in dir(cls) if n.startswith(("time_", "track_", "peakmem_"))]
        first = [p[0] for p in cls.params]
        args = [shape if name == "shape" else v for name, v in zip(cls.param_names, first)]
        bench = cls()
        try:
            bench.setup(*args)
        except NotImplementedError:          # op not in this commit: asv skips it too
            getattr(bench, "teardown", lambda *a: None)(*args)
            continue
        for n in names:
            r = getattr(bench, n)(*args)
            if n.startswith("track_"):
                assert r > 0
            ran += 1
        getattr(bench, "teardown", lambda *a: None)(*args)
    assert ran >= 10
    assert csoftmax.get_num_threads() == prev


# ---------------------------------------------------------------------------
# peers: "not selected" is not "not installed"; missing peers get a command

def _installed(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


def test_bench_peers_not_selected_is_not_not_installed():
    r = run_cli("bench", "--quick", "--shapes", "8x16", "--ops", "softmax",
                "--peers", "numpy", "--repeat", "1", "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["not_selected_peers"] == ["scipy", "torch", "jax"]
    assert doc["missing_peers"] == []          # numpy is selected and always installed
    assert doc["peers"] == ["numpy", "csoftmax"]
    r = run_cli("bench", "--quick", "--shapes", "8x16", "--ops", "softmax",
                "--peers", "numpy", "--repeat", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "not selected (--peers): scipy, torch, jax" in r.stdout
    assert "not installed" not in r.stdout


@pytest.mark.skipif(not _installed("scipy"), reason="scipy not installed")
def test_bench_peers_scipy_only():
    r = run_cli("bench", "--quick", "--shapes", "8x16", "--ops", "softmax",
                "--peers", "scipy", "--repeat", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "not installed" not in r.stdout
    assert "not selected (--peers): numpy, torch, jax" in r.stdout
    header = next(line for line in r.stdout.splitlines() if line.startswith("op "))
    assert "scipy.special" in header and "numpy formula" not in header


def _small_doc(peers=_bench.PEERS):
    return _bench.run(ops=["softmax", "logsumexp"], shapes="4x8", quick=True, repeat=1,
                      budget=0.0, peers=peers, progress=None)


def test_bench_missing_peers_print_the_command_that_adds_them():
    doc = _small_doc(peers=("numpy", "csoftmax"))
    doc["missing_peers"] = ["scipy", "torch", "jax"]      # as on a bare install
    doc["not_selected_peers"] = []
    out = _bench.format_table(doc)
    assert "not installed: scipy, torch, jax" in out
    assert "pip install scipy" in out
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in out
    assert "pip install jax" in out
    assert "not selected" not in out


def test_bench_every_column_is_defined():
    doc = _small_doc()
    out = _bench.format_table(doc)
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("op "))
    legend = lines[lines.index("columns (ns per input element, lower is faster):"):]
    defined = {line[2:15].strip() for line in legend if line.startswith("  ") and line[2] != " "}
    shown = ["floor", "cs/floor", "speed-up"] + [_bench.PEER_TITLES[p] for p in doc["peers"]]
    for col in shown:
        assert col in header and col in defined, col
    # the numpy column's formula is spelled out for each op in the table
    i = lines.index("numpy formula, per op (max and sums along the axis):")
    assert lines[i + 1].split()[0] == "softmax" and "exp(x - max)" in lines[i + 1]
    assert lines[i + 2].split()[0] == "logsumexp"


def test_bench_half_dtypes_judged_against_their_copy():
    pytest.importorskip("ml_dtypes")
    r = run_cli("bench", "--quick", "--shapes", "64x100", "--ops", "softmax,logsumexp",
                "--dtype", "float16,bfloat16", "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = doc["results"]
    assert {row["dtype"] for row in rows} == {"float16", "bfloat16"}
    for row in rows:
        assert row["floor_kind"] == "copy" and row["floor_copy"] > 0
        assert row["times"]["csoftmax"] > 0


_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: other
"""


@pytest.mark.parametrize("text, want", [
    (_ZEN4, "AMD EPYC (Zen4)"),                                   # Genoa, first CPU only
    (_ZEN4.replace("model\t\t: 17", "model\t\t: 1"), "AMD EPYC (Zen3)"),      # Milan
    (_ZEN4.replace("model\t\t: 17", "model\t\t: 160"), "AMD EPYC (Zen4)"),    # Bergamo
    (_ZEN4.replace("cpu family\t: 25", "cpu family\t: 26"), "AMD EPYC (Zen5)"),  # Turin
    (_ZEN4.replace("cpu family\t: 25", "cpu family\t: 26").replace(
        "model\t\t: 17", "model\t\t: 80"), "AMD EPYC (Zen6)"),
    (_ZEN4.replace("cpu family\t: 25", "cpu family\t: 23").replace(
        "model\t\t: 17", "model\t\t: 49"), "AMD EPYC (Zen2)"),                # Rome
    (_ZEN4.replace("cpu family\t: 25", "cpu family\t: 23").replace(
        "model\t\t: 17", "model\t\t: 1"), "AMD EPYC (Zen1)"),                 # Naples
    (_ZEN4.replace("cpu family\t: 25", "cpu family\t: 21"), "AMD EPYC"),      # pre-Zen
    (_ZEN4.replace("AMD EPYC", "AMD Ryzen 9 7950X 16-Core Processor"),
     "AMD Ryzen 9 7950X 16-Core Processor (Zen4)"),
    (_ZEN4.replace("AMD EPYC", "AMD EPYC Zen 4 part"), "AMD EPYC Zen 4 part"),
    (_ZEN4.replace("AuthenticAMD", "GenuineIntel").replace("AMD EPYC", "Intel(R) Xeon(R)"),
     "Intel(R) Xeon(R)"),
    (_ZEN4.replace("model\t\t: 17", "model\t\t: x"), "AMD EPYC"),
])
def test_cpu_model_names_the_zen_generation(text, want):
    # the bench report keys its BENCHMARKS.md block by this name: Zen3 and
    # Zen4 VMs both say "AMD EPYC" and must not overwrite each other's table
    assert _bench.cpu_model(text) == want
