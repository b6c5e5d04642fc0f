"""Write BENCHMARKS.md (and its plot) from one run on this machine.

    python tools/bench_report.py                    # full run, ~10-15 min
    python tools/bench_report.py --quick            # a smoke run, ~1 min

Three measurements, each in this one process (ratios are what count on a
shared machine, so every ratio is taken within one measurement):

1. ``python -m csoftmax bench`` (every op and shape, float32 and float64,
   1 thread): the side-by-side table;
2. thread scaling: csoftmax with 1 and 2 threads, alternated round-robin on
   the same array (inputs >= 8 MB plus a tiny one, to show the threshold);
3. a sweep of the row length V = 2 ... 2^20 at ~4M elements per shape
   (float32 softmax, 1 thread): ns/element for csoftmax, torch, scipy,
   numpy, jax and the copy floor -> ``docs/bench_rowlength_<isa>-<cpu>.png``
   (matplotlib: ``pip install ".[plot]"``);
4. softmax / log_softmax into a new array (csoftmax's output cache), the
   same with the cache off (fresh pages), and into ``out=``, each beside the
   copy floor timed in the same measurement.

The generated part of BENCHMARKS.md sits between ``generated`` markers, one
block per kernel table and CPU (``CSOFTMAX_ISA=avx2 python
tools/bench_report.py`` on an AVX-512 machine writes the AVX2 block of that
CPU beside its AVX-512 block); a run replaces the block of its own table and
CPU and keeps the others, and the text outside the blocks (the analysis of
limits) as it is.  The plot goes to ``docs/bench_rowlength_<isa>-<cpu>.png``.
"""
import argparse
import json
import pathlib
import re
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
try:                                    # installed, or an in-place build here
    import csoftmax  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))
START = "<!-- generated:start (tools/bench_report.py) {key} -->"
END = "<!-- generated:end {key} -->"
ISA_TITLES = {"avx512": "AVX-512", "avx2": "AVX2", "neon": "NEON", "scalar": "scalar"}


def block_key(isa, cpu):
    """'avx512-intel-xeon-processor': the kernel table and the CPU."""
    slug = re.sub(r"[^a-z0-9]+", "-", (cpu or "unknown").lower())
    slug = re.sub(r"\b(r|tm)\b", "", slug)
    return f"{isa}-" + re.sub(r"-+", "-", slug).strip("-")


def replace_block(text, key, gen):
    """text with the block `key` replaced by gen (or gen appended after the
    last block, or at the end)."""
    start, end = START.format(key=key), END.format(key=key)
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + gen + rest.split(end, 1)[1]
    ends = [m.end() for m in re.finditer(r"<!-- generated:end[^>]*-->", text)]
    if ends:
        return text[:ends[-1]] + "\n\n" + gen + text[ends[-1]:]
    return text.rstrip() + "\n\n" + gen + "\n"


def scaling(shapes, dtype, repeat, budget):
    import csoftmax
    from csoftmax import _bench
    rows = []
    for (shape, axis) in shapes:
        x = (np.random.default_rng(0).standard_normal(shape) * 3).astype(dtype)
        tgt = np.random.default_rng(1).integers(0, shape[axis], size=np.sum(x, axis=axis).shape)
        ops = {
            "softmax": lambda: csoftmax.softmax(x, axis=axis),
            "log_softmax": lambda: csoftmax.log_softmax(x, axis=axis),
            "logsumexp": lambda: csoftmax.logsumexp(x, axis=axis),
            "cross_entropy": lambda: csoftmax.cross_entropy(x, tgt, axis=axis,
                                                            return_grad=True),
        }
        for name, f in ops.items():
            def with_threads(k, f=f):
                def run():
                    csoftmax.set_num_threads(k)
                    f()
                return run
            prev = csoftmax.set_num_threads(None)
            try:
                t = _bench.measure({1: with_threads(1), 2: with_threads(2)}, repeat, budget)
            finally:
                csoftmax.set_num_threads(prev)
            label = "x".join(map(str, shape)) + (f":{axis}" if axis not in (-1, len(shape) - 1)
                                                 else "")
            rows.append({"op": name, "shape": label, "dtype": np.dtype(dtype).name,
                         "mbytes": x.nbytes / 2**20,
                         "ns1": t[1] / x.size, "ns2": t[2] / x.size,
                         "speedup": t[1] / t[2]})
        del x
    return rows


def preallocated(shapes, repeat, budget):
    """softmax / log_softmax into a new array (what the bench times: the
    output cache's blocks), the same with the cache off, and into out=
    (preallocated, as the np.copyto floor is), same process."""
    import csoftmax
    from csoftmax import _bench
    prev = csoftmax.set_num_threads(1)
    rows = []
    try:
        for dt in ("float32", "float64"):
            for shape in shapes:
                x = (np.random.default_rng(0).standard_normal(shape) * 3).astype(dt)
                out = np.empty_like(x)
                fns = {"floor": _bench.floor_copy(x)}
                for name in ("softmax", "log_softmax"):
                    f = getattr(csoftmax, name)
                    fns[name] = lambda f=f: f(x)
                    fns[name + " out="] = lambda f=f: f(x, out=out)
                t = _bench.measure(fns, repeat, budget)
                limit = csoftmax.set_output_cache(0)        # every result in fresh memory
                try:
                    t0 = _bench.measure({n: fns[n] for n in ("floor", "softmax",
                                                             "log_softmax")},
                                        repeat, budget)
                finally:
                    csoftmax.set_output_cache(limit)
                for name in ("softmax", "log_softmax"):
                    rows.append({"op": name, "shape": "x".join(map(str, shape)), "dtype": dt,
                                 "floor": t["floor"] / x.size, "new": t[name] / x.size,
                                 "fresh": t0[name] / x.size,
                                 "fresh_floor": t0["floor"] / x.size,
                                 "out": t[name + " out="] / x.size})
                del x, out
    finally:
        csoftmax.set_num_threads(prev)
    return rows


def sweep(total, vs, repeat, budget, peers):
    from csoftmax import _bench
    pe = _bench.Peers(peers + ("csoftmax",), 1)
    import csoftmax
    prev = csoftmax.set_num_threads(1)
    out = []
    try:
        for v in vs:
            b = max(1, total // v)
            case = _bench.Case((b, v), -1, "float32", pe)
            fns = {"floor": _bench.floor_copy(case.x)}
            for p in peers + ("csoftmax",):
                m = pe.get(p)
                if m is None:
                    continue
                fn = _bench.OPS["softmax"].builders[p](case, m)
                if fn is not None:
                    fns[p] = fn
            t = _bench.measure(fns, repeat, budget)
            out.append({"V": v, "B": b, **{k: t[k] / case.size for k in t}})
            case.release()
            print(f"sweep V={v}: " + ", ".join(f"{k} {t[k] / (b * v):.3f}" for k in t),
                  file=sys.stderr)
    finally:
        csoftmax.set_num_threads(prev)
    return out


def plot(points, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    style = {"floor": ("k", "--", "memcpy floor (np.copyto)"), "csoftmax": ("C3", "-", "csoftmax"),
             "torch": ("C0", "-", "torch"), "scipy": ("C2", "-", "scipy.special"),
             "jax": ("C1", "-", "jax (jit)"), "numpy": ("C7", ":", "numpy formula")}
    vs = [p["V"] for p in points]
    for key, (c, ls, lab) in style.items():
        ys = [p.get(key) for p in points]
        if all(y is None for y in ys):
            continue
        ax.plot(vs, ys, color=c, linestyle=ls, marker="o", ms=3, label=lab)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("row length V (batch = 4M / V rows)")
    ax.set_ylabel("ns per element (lower is better)")
    ax.set_title("float32 softmax along the last axis, 1 thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def f3(v):
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def render(doc, scal, points, png_rel, wall, pre=(), key=""):
    from csoftmax import _bench
    env = doc[0]["env"]
    cfg = env["config"]
    out = [START.format(key=key), "",
           f"## Measured: {ISA_TITLES.get(cfg['isa'], cfg['isa'])} kernel table on "
           f"{env['cpu'] or 'an unknown CPU'}", "",
           f"Generated by `python tools/bench_report.py` on {time.strftime('%Y-%m-%d')} "
           f"in {wall / 60:.1f} min.",
           "",
           f"- CPU: {env['cpu'] or 'unknown'}, {env['cpu_count']} logical CPUs "
           "(a shared VM: absolute times move by 2x between runs; ratios measured in "
           "one run are the figures that count)",
           f"- csoftmax {cfg['version']}, kernel `{cfg['isa']}`, OpenMP {cfg['openmp']}",
           "- " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
           + f", python {env['python']}",
           f"- timing: {doc[0]['timing']['method']}; K = {doc[0]['timing']['repeat']}",
           ""]
    for d in doc:
        peers = [p for p in _bench.PEERS if p in d["peers"]]
        dt = d["results"][0]["dtype"] if d["results"] else "?"
        out += [f"### {dt}, {d['threads']} thread(s): ns per element", "",
                "floor = `np.copyto` of the same array (reductions: `np.sum` over the "
                "axis, marked *sum*); **×floor** = csoftmax / floor; **vs best** = fastest "
                "peer's time / csoftmax's (> 1: csoftmax faster).", ""]
        head = ["op", "shape", "floor"] + [_bench.PEER_TITLES[p] for p in peers] + \
               ["**×floor**", "vs best"]
        rows = []
        for r in d["results"]:
            fl = r["floor_sum"] if r["floor_kind"] == "sum" else r["floor_copy"]
            rows.append([r["op"], r["label"], f3(fl) + (" *sum*" if r["floor_kind"] == "sum"
                                                        else "")]
                        + [f3(r["times"][p]) for p in peers]
                        + [f"**{r['ratio_to_floor']:.2f}×**" if r["ratio_to_floor"] else "-",
                           f"{r['speedup']:.2f}× {r['best_peer']}" if r["speedup"] else "-"])
        out += [md_table(head, rows), ""]
    if scal:
        out += ["### Threads: csoftmax with 2 threads vs 1 (same array, alternated)", "",
                md_table(["op", "shape", "dtype", "MB", "1 thread ns/el", "2 threads ns/el",
                          "speed-up"],
                         [[r["op"], r["shape"], r["dtype"], f"{r['mbytes']:.1f}", f3(r["ns1"]),
                           f3(r["ns2"]), f"{r['speedup']:.2f}×"] for r in scal]), ""]
    if pre:
        out += ["### Fresh output vs `out=` (1 thread)", "",
                "The table above times each library's usual call, which returns a new "
                "array; the floor copies into a preallocated one.  A fresh multi-MB array "
                "costs the kernel's page zeroing (an extra write pass) on first touch; "
                "csoftmax's new arrays come from its output cache (blocks of earlier results, "
                "`csoftmax.set_output_cache`), and *fresh* is the same call with the cache "
                "off; with `out=` csoftmax pays only its own traffic:", "",
                md_table(["op", "shape", "dtype", "floor", "new array", "×floor",
                          "fresh (cache off)", "×floor", "`out=`", "×floor"],
                         [[r["op"], r["shape"], r["dtype"], f3(r["floor"]), f3(r["new"]),
                           f"**{r['new'] / r['floor']:.2f}×**", f3(r.get("fresh")),
                           f"{r['fresh'] / r.get('fresh_floor', r['floor']):.2f}×"
                           if r.get("fresh") else "-",
                           f3(r["out"]),
                           f"**{r['out'] / r['floor']:.2f}×**"] for r in pre]), ""]
    if points:
        keys = [k for k in ("floor", "csoftmax", "torch", "scipy", "jax", "numpy")
                if any(k in p for p in points)]
        out += ["### Row length sweep (float32 softmax, 1 thread)", "",
                f"![ns/element vs row length]({png_rel})", "",
                md_table(["V", "rows"] + keys + ["csoftmax ×floor"],
                         [[p["V"], p["B"]] + [f3(p.get(k)) for k in keys]
                          + [f"{p['csoftmax'] / p['floor']:.2f}×"] for p in points]), ""]
    out += [END.format(key=key)]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--png", default=None,
                    help="the plot (default docs/bench_rowlength_<isa>-<cpu>.png)")
    ap.add_argument("--json", default=None, help="also dump the raw results here")
    a = ap.parse_args(argv)
    from csoftmax import _bench
    t0 = time.perf_counter()
    docs = []
    for dt in ("float32", "float64"):
        docs.append(_bench.run(dtypes=(dt,), threads=1, quick=a.quick))
    big = [((8192, 1000), -1), ((512, 32000), -1), ((1, 10_000_000), -1),
           ((32, 21, 128, 128), 1), ((64, 100), -1)]
    if a.quick:
        big = [((1024, 1000), -1), ((64, 100), -1)]
    pre = preallocated([(8192, 1000), (512, 32000), (64, 256000)] if not a.quick
                       else [(1024, 1000)], 3 if a.quick else 7, 0.1 if a.quick else 0.4)
    scal = scaling(big, "float32", 3 if a.quick else 7, 0.1 if a.quick else 0.4)
    vs = [2 ** k for k in range(1, 21)]
    if a.quick:
        vs = [2, 64, 4096]
    points = sweep(2 ** 18 if a.quick else 2 ** 22, vs, 3 if a.quick else 5,
                   0.05 if a.quick else 0.25, ("numpy", "scipy", "torch", "jax"))
    cfg = docs[0]["env"]["config"]
    key = block_key(cfg["isa"], docs[0]["env"]["cpu"])
    png = pathlib.Path(a.png or ROOT / "docs" / f"bench_rowlength_{key}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        plot(points, png)
    except ImportError:
        print("matplotlib not installed (pip install '.[plot]'): no plot", file=sys.stderr)
    wall = time.perf_counter() - t0
    out = pathlib.Path(a.out)
    try:
        png_rel = png.resolve().relative_to(out.resolve().parent).as_posix()
    except ValueError:
        png_rel = str(png)
    gen = render(docs, scal, points, png_rel, wall, pre, key)
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    out.write_text(replace_block(text, key, gen))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(
            {"bench": docs, "threads": scal, "sweep": points, "out": pre}, indent=1))
    print(f"wrote {out} and {png} in {wall:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
