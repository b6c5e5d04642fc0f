"""Golden outputs: every public function x float32/float64 x ISA x path
(and the half-precision ops x float16/bfloat16).

The kernel restructure (issue 17) must keep every result bit-identical, or
explain each difference.  This tool records, from the build it imports, the
outputs of a fixed list of calls -- each public numeric function, both
dtypes, every kernel table this CPU offers, row shapes that reach each path
(short rows n <= 64 through the lanes, fused rows, the two-pass reduction +
write, one long row split across two threads) and non-last axes (column
kernels and tiles), strided and reversed inputs -- as SHA-256 digests of the
result bytes plus a float64 checksum, in tests/golden/outputs.json.
tests/test_golden.py recomputes them and asserts equality.

    python tools/golden.py --write            # record (before a restructure)
    python tools/golden.py --check            # compare, list differing cases
    python tools/golden.py --dump KEY out.npz # one case's inputs and output

Inputs come from fixed seeds, so the cases are the same on every machine;
the digests are those of the kernel table named in the key (an ISA this CPU
lacks is skipped by the test).  Losses use reduction='none', so no NumPy
reduction (whose summation order may depend on NumPy's own SIMD dispatch)
enters a digest.
"""
import argparse
import contextlib
import hashlib
import json
import os
import sys

import numpy as np

import csoftmax as cs
from csoftmax import _core

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "tests", "golden", "outputs.json")

# The planner's L2-derived limits (csoftmax/_plan.pxi) as on the machine the
# digests were recorded on (2 MiB L2 per core): with this CPU's own L2 a long
# row may take another path (TWO_PASS instead of TWO_PASS_PREFETCH on a
# 1 MiB L2, FUSED on AMD Zen4) and round differently, which is not a
# change of the kernels.
RECORDED_L2_BYTES = 2 * 1024 * 1024

# (rows, n) shapes reaching each row path: n <= 64 short rows (several rows
# per vector), n > 64 fused / two-pass rows, 70000 = one long row split
# across threads (with 2 threads); odd sizes exercise the SIMD tails.
ROW_SHAPES = [(37, 1), (37, 7), (19, 33), (11, 64), (9, 65), (5, 1000), (3, 4099),
              (1, 70001)]
# (outer, n, inner) for a non-last axis: column kernels, tiles, odd inner
COL_SHAPES = [(3, 5, 7), (2, 33, 70), (2, 9, 1030), (1, 300, 129)]


def _x(seed, shape, dt, kind="normal"):
    r = np.random.default_rng(seed)
    x = r.standard_normal(shape) * 3
    if kind == "wide":
        x = x * 10 + 1e4
    return x.astype(dt)


def _labels(seed, rows, n):
    return np.random.default_rng(seed + 1).integers(0, n, rows)


def cases():
    """Yield (key, thunk) for every golden case."""
    for dt in (np.float32, np.float64):
        dn = np.dtype(dt).name
        for shape in ROW_SHAPES:
            rows, n = shape
            s = rows * 1000 + n
            tag = f"{dn}|rows{rows}x{n}"
            x = _x(s, shape, dt)
            w = _x(s + 7, shape, dt, "wide")
            t = _labels(s, rows, n)
            dy = _x(s + 3, shape, dt)
            y = cs.softmax(x)
            ly = cs.log_softmax(x)
            wt = (np.random.default_rng(s + 5).random(n) + 0.5)
            q = cs.softmax(_x(s + 9, shape, dt) / 2)
            yield f"softmax|{tag}", lambda x=x: cs.softmax(x)
            yield f"softmax T=0.37|{tag}", lambda x=x: cs.softmax(x, temperature=0.37)
            yield f"softmax wide|{tag}", lambda w=w: cs.softmax(w)
            yield f"log_softmax|{tag}", lambda x=x: cs.log_softmax(x)
            yield f"log_softmax T=0.37|{tag}", lambda x=x: cs.log_softmax(x, temperature=0.37)
            yield f"log_softmax wide|{tag}", lambda w=w: cs.log_softmax(w)
            yield f"softmax reversed|{tag}", lambda x=x: cs.softmax(x[::-1, ::-1])
            yield f"log_softmax strided|{tag}", lambda x=x: cs.log_softmax(
                np.repeat(x, 2, axis=0)[::2])
            yield f"logsumexp|{tag}", lambda x=x: cs.logsumexp(x, axis=-1)
            yield f"logsumexp wide|{tag}", lambda w=w: cs.logsumexp(w, axis=-1)
            yield f"logsumexp b|{tag}", lambda x=x, dy=dy: cs.logsumexp(
                x, axis=-1, b=dy, return_sign=True)
            yield f"smooth_max k=7|{tag}", lambda x=x: cs.smooth_max(x, sharpness=7.0)
            yield f"cross_entropy|{tag}", lambda x=x, t=t: cs.cross_entropy(
                x, t, reduction="none", return_grad=True)
            yield f"cross_entropy opts|{tag}", lambda x=x, t=t, wt=wt: cs.cross_entropy(
                x, np.where(t == 0, -100, t), weight=wt, label_smoothing=0.1,
                temperature=1.7, reduction="none", return_grad=True)
            yield f"cross_entropy wide|{tag}", lambda w=w, t=t: cs.cross_entropy(
                w, t, reduction="none", return_grad=True)
            yield f"cross_entropy prob|{tag}", lambda x=x, q=q: cs.cross_entropy(
                x, q, reduction="none", return_grad=True)
            yield f"nll_loss|{tag}", lambda ly=ly, t=t: cs.nll_loss(ly, t, reduction="none")
            yield f"softmax_backward|{tag}", lambda y=y, dy=dy: cs.softmax_backward(y, dy)
            yield f"log_softmax_backward|{tag}", lambda ly=ly, dy=dy: cs.log_softmax_backward(
                ly, dy)
            yield f"logsumexp_backward|{tag}", lambda x=x, dy=dy: cs.logsumexp_backward(
                x, dy[:, 0])
            if n > 1:
                yield f"distillation_loss|{tag}", lambda x=x, w=w: cs.distillation_loss(
                    x, x[::-1].copy(), temperature=2.0, reduction="none")
                yield f"kl_div|{tag}", lambda ly=ly, y=y: cs.kl_div(
                    ly, y[::-1].copy(), reduction="none")
                cosv = np.tanh(x / 4)
                yield f"margin_cross_entropy arcface|{tag}", lambda c=cosv, t=t: \
                    cs.margin_cross_entropy(c, t, scale=30.0, margin=0.3, kind="arcface",
                                            return_grad=True)
                yield f"margin_logits cosface|{tag}", lambda c=cosv, t=t: cs.margin_logits(
                    c, t, scale=30.0, margin=0.2, kind="cosface")
                yield f"soft_hinge|{tag}", lambda x=x, t=t: cs.soft_hinge(
                    x, t, margin=1.0, reduction="none", return_grad=True)
            yield f"softplus|{tag}", lambda x=x: cs.softplus(x, beta=1.5)
            yield f"sample|{tag}", lambda x=x: cs.sample(x, temperature=0.8, seed=5)
        for shape in COL_SHAPES:
            o, n, inner = shape
            s = o * 100000 + n * 100 + inner
            tag = f"{dn}|cols{o}x{n}x{inner}"
            x = _x(s, shape, dt)
            t = np.random.default_rng(s).integers(0, n, (o, inner))
            dy = _x(s + 3, shape, dt)
            y = cs.softmax(x, axis=1)
            ly = cs.log_softmax(x, axis=1)
            yield f"softmax|{tag}", lambda x=x: cs.softmax(x, axis=1)
            yield f"log_softmax T=0.37|{tag}", lambda x=x: cs.log_softmax(
                x, axis=1, temperature=0.37)
            yield f"logsumexp|{tag}", lambda x=x: cs.logsumexp(x, axis=1)
            yield f"cross_entropy|{tag}", lambda x=x, t=t: cs.cross_entropy(
                x, t, axis=1, reduction="none", return_grad=True)
            yield f"softmax_backward|{tag}", lambda y=y, dy=dy: cs.softmax_backward(
                y, dy, axis=1)
            yield f"log_softmax_backward|{tag}", lambda ly=ly, dy=dy: cs.log_softmax_backward(
                ly, dy, axis=1)
            yield f"logsumexp_backward|{tag}", lambda x=x, dy=dy: cs.logsumexp_backward(
                x, dy[:, 0], axis=1)


def half_cases():
    """float16 and bfloat16 (ml_dtypes, when installed): the ops with a
    half-precision path (HALF_BLOCKS, issue #20), row and column shapes."""
    dts = [np.float16]
    try:
        import ml_dtypes
        dts.append(ml_dtypes.bfloat16)
    except ImportError:
        pass
    for dt in dts:
        dn = np.dtype(dt).name
        for shape in ROW_SHAPES:
            rows, n = shape
            s = rows * 1000 + n
            tag = f"{dn}|rows{rows}x{n}"
            x = _x(s, shape, dt)
            t = _labels(s, rows, n)
            dy = _x(s + 3, shape, dt)
            q = cs.softmax(_x(s + 9, shape, dt) / 2)
            wt = (np.random.default_rng(s + 5).random(n) + 0.5)
            y = cs.softmax(x)
            ly = cs.log_softmax(x)
            yield f"softmax|{tag}", lambda x=x: cs.softmax(x)
            yield f"log_softmax T=0.37|{tag}", lambda x=x: cs.log_softmax(x, temperature=0.37)
            yield f"softmax reversed|{tag}", lambda x=x: cs.softmax(x[::-1, ::-1])
            yield f"logsumexp|{tag}", lambda x=x: cs.logsumexp(x, axis=-1)
            yield f"cross_entropy|{tag}", lambda x=x, t=t: cs.cross_entropy(
                x, t, reduction="none", return_grad=True)
            yield f"cross_entropy opts|{tag}", lambda x=x, t=t, wt=wt: cs.cross_entropy(
                x, np.where(t == 0, -100, t), weight=wt, label_smoothing=0.1,
                temperature=1.7, reduction="none", return_grad=True)
            yield f"cross_entropy prob|{tag}", lambda x=x, q=q: cs.cross_entropy(
                x, q, reduction="none", return_grad=True)
            yield f"softmax_backward|{tag}", lambda y=y, dy=dy: cs.softmax_backward(y, dy)
            yield f"log_softmax_backward|{tag}", lambda ly=ly, dy=dy: cs.log_softmax_backward(
                ly, dy)
            yield f"logsumexp_backward|{tag}", lambda x=x, dy=dy: cs.logsumexp_backward(
                x, dy[:, 0].astype(np.float64))
        for shape in COL_SHAPES:
            o, n, inner = shape
            s = o * 100000 + n * 100 + inner
            tag = f"{dn}|cols{o}x{n}x{inner}"
            x = _x(s, shape, dt)
            t = np.random.default_rng(s).integers(0, n, (o, inner))
            dy = _x(s + 3, shape, dt)
            y = cs.softmax(x, axis=1)
            yield f"softmax|{tag}", lambda x=x: cs.softmax(x, axis=1)
            yield f"log_softmax|{tag}", lambda x=x: cs.log_softmax(x, axis=1)
            yield f"logsumexp|{tag}", lambda x=x: cs.logsumexp(x, axis=1)
            yield f"cross_entropy|{tag}", lambda x=x, t=t: cs.cross_entropy(
                x, t, axis=1, reduction="none", return_grad=True)
            yield f"softmax_backward|{tag}", lambda y=y, dy=dy: cs.softmax_backward(
                y, dy, axis=1)


def _flat(res):
    if isinstance(res, tuple):
        return [np.asarray(r) for r in res]
    return [np.asarray(res)]


def digest(res):
    h = hashlib.sha256()
    total = 0.0
    for a in _flat(res):
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
        with np.errstate(all="ignore"):
            f = a.astype(np.float64)
            total += float(np.sum(np.abs(f[np.isfinite(f)])))
    return h.hexdigest()[:32], total


@contextlib.contextmanager
def _as_recorded():
    """The planner as on the recording machine: 2 threads, its cache limits
    (RECORDED_L2_BYTES, no AMD rules); this CPU's restored after."""
    prev_isa = _core.isa()
    prev_thr = cs.set_num_threads(2)
    _core._init_l2_limits(RECORDED_L2_BYTES, fused_beyond_l2=False,
                          cols_tile_min_rows=32)
    try:
        yield
    finally:
        _core._use_isa(prev_isa)
        cs.set_num_threads(prev_thr)
        _core._init_l2_limits()


def compute(isas=None):
    out = {}
    with _as_recorded():
        for isa in isas or _core.available_isas():
            _core._use_isa(isa)
            for key, thunk in list(cases()) + list(half_cases()):
                d, total = digest(thunk())
                out[f"{isa}|{key}"] = [d, total]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    g.add_argument("--dump", nargs=2, metavar=("KEY", "NPZ"))
    a = ap.parse_args(argv)
    if a.dump:
        key, path = a.dump
        isa, rest = key.split("|", 1)
        with _as_recorded():
            _core._use_isa(isa)
            for k, thunk in list(cases()) + list(half_cases()):
                if k == rest:
                    res = _flat(thunk())
                    np.savez(path, *res)
                    print(f"wrote {len(res)} arrays of {key} to {path}")
                    return 0
        print(f"no case {key!r}")
        return 1
    got = compute()
    if a.write:
        # the digests of ISAs this CPU cannot run are kept as recorded (an
        # AVX2-only machine re-recording its table must not drop AVX-512's)
        kept = {}
        if os.path.exists(PATH):
            with open(PATH) as f:
                kept = {k: v for k, v in json.load(f)["cases"].items()
                        if k.split("|")[0] not in _core.available_isas()}
        with open(PATH, "w") as f:
            json.dump({"csoftmax": cs.__version__, "build": _core.build_info(),
                       "cases": {**kept, **got}}, f, indent=0, sort_keys=True)
        print(f"wrote {len(got)} golden cases to {os.path.relpath(PATH)}"
              + (f", kept {len(kept)} of ISAs this CPU lacks" if kept else ""))
        return 0
    with open(PATH) as f:
        want = json.load(f)["cases"]
    diff = [k for k in got if k in want and got[k][0] != want[k][0]]
    missing = [k for k in want if k.split("|")[0] in _core.available_isas() and k not in got]
    for k in diff:
        print(f"DIFFERS {k}: checksum {want[k][1]!r} -> {got[k][1]!r}")
    for k in missing:
        print(f"MISSING {k}")
    print(f"golden: {len(got) - len(diff)} of {len(got)} cases identical")
    return 1 if diff or missing else 0


if __name__ == "__main__":
    sys.exit(main())
