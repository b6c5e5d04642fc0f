"""Call every public csoftmax function on small, odd-sized arrays.

A driver for the memory checkers (tools/valgrind.sh runs it under valgrind
memcheck, tools/sanitize.sh under ASan/UBSan), not a test suite: it walks
the code paths -- row and column layouts, every dtype, strided / reversed /
transposed inputs, out= and in place, 0-size and 1-length axes, special
values, the long-row split across threads (cross-entropy too), the
float32 column tiles (cross-entropy too), the weighted logsumexp; the
losses (cross_entropy with index and probability targets, weights,
ignore_index, label smoothing, grad_out; nll_loss; distillation_loss,
kl_div, margin_logits / margin_cross_entropy for normface / cosface /
arcface, softplus, soft_hinge), the backward functions and sample(), on
float32 and float64 with 1, 7, 9 and 33 classes -- and checks results
loosely against a float64 NumPy reference (so that reads of uninitialised
memory show up as wrong numbers too).  The ISA is the one csoftmax picked,
or CSOFTMAX_ISA.

    python tools/exercise.py [--quick]

Exits 1 on a wrong result; prints the public functions it does not know
how to call (new API that this driver should learn).
"""
import sys
import warnings

import numpy as np

import csoftmax

QUICK = "--quick" in sys.argv
CALLED = set()
failures = []


def ref_lse(x, axis):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, 0)
        return np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m


def close(name, got, want, rtol):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        failures.append(f"{name}: shape {got.shape} != {want.shape}")
        return
    finite = np.isfinite(want)
    # absolute part: the reference's own rounding of x - lse is ~ulp(max |x|)
    atol = rtol * max(1.0, float(np.max(np.abs(want[finite]), initial=0)))
    if not np.array_equal(np.isfinite(got), finite) or not np.allclose(
            got[finite], want[finite], rtol=rtol, atol=atol):
        err = np.max(np.abs(got[finite] - want[finite]), initial=0)
        failures.append(f"{name}: max abs error {err:.3g} (rtol {rtol})")


def call(fn, *args, **kw):
    CALLED.add(fn.__name__)
    return fn(*args, **kw)


def arrays(rng):
    """(name, array) pairs: odd shapes, dtypes, layouts."""
    base = {
        "1": rng.standard_normal(1),
        "7": rng.standard_normal(7),
        "3x5": rng.standard_normal((3, 5)),
        "1x9": rng.standard_normal((1, 9)),
        "5x1": rng.standard_normal((5, 1)),
        "5x3x7": rng.standard_normal((5, 3, 7)),
        "2x1x67": rng.standard_normal((2, 1, 67)),
        "3x67x5": rng.standard_normal((3, 67, 5)),   # > one 64-column block
        "2x21x70": rng.standard_normal((2, 21, 70)),  # axis 1: float32 column tiles
        "9x131": rng.standard_normal((9, 131)) * 30,
    }
    if not QUICK:
        base["4x33x17x3"] = rng.standard_normal((4, 33, 17, 3))
    for name, a in base.items():
        yield name, a
        yield name + ":f32", a.astype(np.float32)
    yield "9x131:f16", base["9x131"].astype(np.float16) / 8
    yield "3x5:int", (base["3x5"] * 10).astype(np.int64)
    yield "5x3x7:bool", base["5x3x7"] > 0
    big = base["9x131"]
    yield "strided[:, ::2]", big[:, ::2]
    yield "strided[::2, ::3]:f32", big.astype(np.float32)[::2, ::3]
    yield "reversed[::-1, ::-1]", big[::-1, ::-1]
    yield "transposed", big.T
    yield "fortran", np.asfortranarray(base["5x3x7"])
    yield "0", np.empty(0)
    yield "3x0", np.empty((3, 0))
    yield "0x4:f32", np.empty((0, 4), dtype=np.float32)
    special = np.array([[0.0, -40.0, 1e-310, -1e-310, 3.0],
                        [np.inf, 1.0, 2.0, -np.inf, 0.5],
                        [-np.inf] * 5,
                        [np.nan, 1.0, 2.0, 3.0, 4.0],
                        [1e308, -1e308, 1e300, 7.0, 7.0],
                        [3.0e38, -3.0e38, 1e-40, 0.0, 2.0]])
    yield "special", special
    with np.errstate(over="ignore"):
        yield "special:f32", special.astype(np.float32)


def axes_for(a):
    out = [-1, None]
    if a.ndim >= 2:
        out += [0]
    if a.ndim >= 3:
        out += [1, (0, 2), (1, 2)]
    return out


def exercise_softmax(name, a):
    for axis in axes_for(a):
        for T in (1.0, 0.37):
            tag = f"{name} axis={axis} T={T}"
            with np.errstate(all="ignore"):
                lse = ref_lse(np.asarray(a, dtype=np.float64) / T,
                              axis if axis is not None else tuple(range(a.ndim)))
                want_log = np.asarray(a, dtype=np.float64) / T - lse
                want = np.exp(want_log)
            y = call(csoftmax.softmax, a, axis=axis, temperature=T)
            ly = call(csoftmax.log_softmax, a, axis=axis, temperature=T)
            rtol = 2e-2 if y.dtype == np.float16 else (1e-5 if y.dtype == np.float32 else 1e-12)
            if name.startswith("special"):
                continue  # IEEE corner cases are the unit tests' business
            close("softmax " + tag, y, want, rtol)
            close("log_softmax " + tag, ly, want_log, rtol)
            if y.dtype in (np.float32, np.float64) and y.size:
                out = np.full(a.shape, np.nan, dtype=y.dtype)
                r = call(csoftmax.softmax, a, axis=axis, temperature=T, out=out)
                assert r is out
                close("softmax out= " + tag, out, want, rtol)
                if a.dtype == y.dtype:
                    z = np.array(a, copy=True)
                    call(csoftmax.log_softmax, z, axis=axis, temperature=T, out=z)
                    close("log_softmax in place " + tag, z, want_log, rtol)
    if a.dtype == np.float64 and a.ndim == 2 and a.size:
        y32 = call(csoftmax.softmax, a, dtype=np.float32)
        assert y32.dtype == np.float32


def exercise_reductions(name, a):
    for axis in axes_for(a):
        ax = axis if axis is not None else tuple(range(a.ndim))
        tag = f"{name} axis={axis}"
        for keepdims in (False, True):
            r = call(csoftmax.logsumexp, a, axis=axis, keepdims=keepdims)
            s = call(csoftmax.smooth_max, a, axis=axis, sharpness=2.5, keepdims=keepdims)
            if name.startswith("special") or a.size == 0:
                continue
            want = ref_lse(a, ax)
            want_s = ref_lse(np.asarray(a, dtype=np.float64) * 2.5, ax) / 2.5
            if not keepdims:
                want, want_s = np.squeeze(want, axis=ax), np.squeeze(want_s, axis=ax)
            rtol = 2e-2 if np.asarray(r).dtype == np.float16 else (
                1e-5 if np.asarray(r).dtype == np.float32 else 1e-12)
            close(f"logsumexp {tag} keepdims={keepdims}", r, want, rtol)
            close(f"smooth_max {tag} keepdims={keepdims}", s, want_s, rtol)
        if a.size and a.dtype.kind == "f":
            rng = np.random.default_rng(a.size)
            b = rng.uniform(-0.5, 2.0, a.shape)
            b.flat[:: 3] = 0.0
            lse, sgn = call(csoftmax.logsumexp, a, axis=axis, b=b, return_sign=True)
            plain = call(csoftmax.logsumexp, a, axis=axis, b=b[..., :1] if a.ndim else b)
            if not name.startswith("special"):
                with np.errstate(all="ignore"):
                    x64 = np.asarray(a, dtype=np.float64)
                    tot = np.sum(b * np.exp(x64), axis=ax)
                ok = np.isfinite(np.log(np.abs(tot))) & (np.abs(tot) > 1e-300)
                rtol = {np.float16: 2e-2, np.float32: 1e-5}.get(np.asarray(lse).dtype.type, 1e-9)
                close(f"logsumexp b= {tag}", np.where(ok, lse, 0),
                      np.where(ok, np.log(np.abs(tot)), 0), rtol)
                close(f"logsumexp sign {tag}", np.where(ok, sgn, 0),
                      np.where(ok, np.sign(tot), 0), 0)
            del plain


def exercise_threads(rng):
    """The parallel paths: row blocks, column blocks, one long split row."""
    prev = call(csoftmax.get_num_threads)
    for n in (2, 1):
        call(csoftmax.set_num_threads, n)
        for name, a in (("rows 129x257", rng.standard_normal((129, 257))),
                        ("cols 7x131x37", rng.standard_normal((7, 131, 37))),
                        ("long row 1x65539", rng.standard_normal((1, 65539))),
                        ("long rows f32 2x65541", rng.standard_normal((2, 65541)).astype(np.float32))):
            axis = 1 if name.startswith("cols") else -1
            rtol = 1e-5 if a.dtype == np.float32 else 1e-12
            want_log = np.asarray(a, dtype=np.float64) - ref_lse(a, axis)
            close(f"softmax {name} threads={n}",
                  call(csoftmax.softmax, a, axis=axis), np.exp(want_log), rtol)
            close(f"log_softmax {name} threads={n}",
                  call(csoftmax.log_softmax, a, axis=axis), want_log, rtol)
            close(f"logsumexp {name} threads={n}",
                  call(csoftmax.logsumexp, a, axis=axis), np.squeeze(ref_lse(a, axis), axis), rtol)
            if QUICK:
                break
    call(csoftmax.set_num_threads, prev)


# ---------------------------------------------------------------------------
# losses, backward functions, sampling

def _lsm(x, axis, T=1.0):
    """float64 log_softmax(x / T) along one axis."""
    z = np.asarray(x, dtype=np.float64) / T
    return z - ref_lse(z, axis)


def _rtol(dt):
    return 1e-4 if np.dtype(dt) == np.float32 else 1e-10


def _some(options, i):
    """All options; in quick mode only the i-th (cycling over the cases)."""
    return [options[i % len(options)]] if QUICK else options


def _loss_cases(rng):
    """(name, logits, class axis): classes 1, 7, 9, 33 on the last axis (row
    kernels), on axis 0 (column kernels), 3-D with the classes in the middle,
    and non-contiguous views; float64 and float32."""
    cases = [("1x1", (1, 1), -1, None), ("7x9", (7, 9), -1, None),
             ("33x7 axis 0", (33, 7), 0, None),
             ("strided 9x66[:, ::2]", (9, 66), -1, lambda a: a[:, ::2])]
    if not QUICK:
        cases += [("9x33", (9, 33), -1, None), ("7x1", (7, 1), -1, None),
                  ("5x9x7 axis 1", (5, 9, 7), 1, None),
                  ("3x33x67 axis 1", (3, 33, 67), 1, None),
                  ("reversed 7x9", (7, 9), -1, lambda a: a[::-1, ::-1]),
                  ("transposed 9x7", (7, 9), -1, lambda a: a.T)]
    for name, shape, ax, view in cases:
        base = rng.standard_normal(shape) * 3
        for dt in (np.float64, np.float32):
            a = base.astype(dt)
            yield f"{name}:{np.dtype(dt).name}", (view(a) if view else a), ax


def ce_ref(x, t, axis, w, eps, T, prob, reduction, ignore=-100):
    """float64 cross-entropy loss and gradient (torch semantics)."""
    lp = np.moveaxis(_lsm(x, axis, T), axis, -1)
    C = lp.shape[-1]
    wv = np.ones(C) if w is None else np.asarray(w, dtype=np.float64)
    if prob:
        q = np.moveaxis(np.asarray(t, dtype=np.float64), axis, -1)
        keep = np.ones(q.shape[:-1], bool)
    else:
        keep = t != ignore
        q = np.zeros(lp.shape)
        np.put_along_axis(q, np.where(keep, t, 0)[..., None], 1.0, -1)
        q *= keep[..., None]
    qs = (1 - eps) * q + eps / C * keep[..., None]
    per = -(wv * qs * lp).sum(-1)
    g = np.exp(lp) * (wv * qs).sum(-1, keepdims=True) - wv * qs
    if prob:
        denom = per.size
    elif w is None:
        denom = keep.sum()
    else:
        denom = (wv[np.where(keep, t, 0)] * keep).sum()
    if reduction == "none":
        loss, sc = per, 1.0
    elif reduction == "sum":
        loss, sc = per.sum(), 1.0
    else:
        loss, sc = per.sum() / denom, 1.0 / denom
    return loss, np.moveaxis(g * sc / T, -1, axis)


def exercise_cross_entropy(rng):
    variants = [dict(), dict(weight=True, label_smoothing=0.1, temperature=0.5),
                dict(ignore=True, reduction="sum"), dict(prob=True, reduction="none"),
                dict(prob=True, weight=True, label_smoothing=0.2),
                dict(ignore=True, weight=True, label_smoothing=1.0, reduction="none")]
    for ci, (name, x, ax) in enumerate(_loss_cases(rng)):
        C = x.shape[ax]
        tshape = x.shape[:ax % x.ndim] + x.shape[ax % x.ndim + 1:]
        for i, v in enumerate(variants):
            if QUICK and i != 0 and i != 1 + ci % (len(variants) - 1):
                continue               # quick: the plain call and one other variant
            prob = v.get("prob", False)
            if prob:
                q = rng.random(x.shape)
                t = (q / q.sum(axis=ax, keepdims=True)).astype(x.dtype)
            else:
                t = rng.integers(0, C, tshape)
                if v.get("ignore") and t.size > 1:
                    t.flat[1] = 7 if C == 1 else -100
            w = rng.uniform(0.5, 2.0, C) if v.get("weight") else None
            ignore = 7 if (C == 1 and v.get("ignore")) else -100
            eps = v.get("label_smoothing", 0.0)
            T = v.get("temperature", 1.0)
            red = v.get("reduction", "mean")
            tag = f"cross_entropy {name} axis={ax} {v}"
            kw = dict(axis=ax, weight=w, ignore_index=ignore, label_smoothing=eps,
                      temperature=T, reduction=red)
            want_l, want_g = ce_ref(x, t, ax, w, eps, T, prob, red, ignore)
            rt = _rtol(x.dtype)
            loss, g = call(csoftmax.cross_entropy, x, t, return_grad=True, **kw)
            close(tag + " loss", loss, want_l, rt)
            close(tag + " grad", g, want_g, rt)
            close(tag + " loss only", call(csoftmax.cross_entropy, x, t, **kw), want_l, rt)
            # grad_out: a separate C-order buffer, a strided one, the logits
            for form in _some(["C", "strided", "logits"], ci) if i == 0 else ():
                if form == "C":
                    go = np.full(x.shape, np.nan, dtype=x.dtype)
                elif form == "strided":
                    go = np.full(x.shape[:-1] + (2 * x.shape[-1],), np.nan,
                                 dtype=x.dtype)[..., ::2]
                else:
                    go = np.array(x, copy=True)
                _, r = call(csoftmax.cross_entropy, go if form == "logits" else x, t,
                            return_grad=True, grad_out=go, **kw)
                assert r is go
                close(f"{tag} grad_out {form}", go, want_g, rt)
            if not prob and i in (0, 2):
                lp = _lsm(x, ax).astype(x.dtype)
                lm = np.moveaxis(np.asarray(lp, np.float64), ax, -1)
                keep = t != ignore
                wv = np.ones(C) if w is None else w
                per = np.where(keep, -wv[np.where(keep, t, 0)] * np.take_along_axis(
                    lm, np.where(keep, t, 0)[..., None], -1)[..., 0], 0.0)
                den = (np.where(keep, wv[np.where(keep, t, 0)], 0.0)).sum()
                want = {"none": per, "sum": per.sum(), "mean": per.sum() / den}[red]
                close(f"nll_loss {name} axis={ax} {red}",
                      call(csoftmax.nll_loss, lp, t, axis=ax, weight=w, ignore_index=ignore,
                           reduction=red), want, rt)
    # float16 and integer logits (converted on the way in)
    x = rng.standard_normal((5, 9))
    t = rng.integers(0, 9, 5)
    close("cross_entropy f16", call(csoftmax.cross_entropy, x.astype(np.float16), t),
          ce_ref(x.astype(np.float16), t, -1, None, 0.0, 1.0, False, "mean")[0], 2e-3)
    xi = (x * 3).astype(np.int64)
    close("cross_entropy int", call(csoftmax.cross_entropy, xi, t),
          ce_ref(xi, t, -1, None, 0.0, 1.0, False, "mean")[0], 1e-10)


def exercise_backward(rng):
    for ci, (name, x, ax) in enumerate(_loss_cases(rng)):
        rt = _rtol(x.dtype)
        lp = _lsm(x, ax)
        y = np.exp(lp).astype(x.dtype)
        ly = lp.astype(x.dtype)
        dy = rng.uniform(-2, 2, x.shape).astype(x.dtype)
        yw, lyw, dw = (np.asarray(a, np.float64) for a in (y, ly, dy))
        want = yw * (dw - (yw * dw).sum(ax, keepdims=True))
        close(f"softmax_backward {name}", call(csoftmax.softmax_backward, y, dy, axis=ax),
              want, rt)
        want_l = dw - np.exp(lyw) * dw.sum(ax, keepdims=True)
        close(f"log_softmax_backward {name}",
              call(csoftmax.log_softmax_backward, ly, dy, axis=ax), want_l, rt)
        if not QUICK or ci % 2:
            o = np.array(dy, copy=True)
            call(csoftmax.log_softmax_backward, ly, o, axis=ax, out=o)
            close(f"log_softmax_backward out=dy {name}", o, want_l, rt)
        if not QUICK or not ci % 2:
            out = np.full(x.shape, np.nan, dtype=x.dtype)
            call(csoftmax.softmax_backward, y, dy, axis=ax, out=out)
            close(f"softmax_backward out= {name}", out, want, rt)
        d1 = rng.uniform(-2, 2, np.delete(x.shape, ax % x.ndim)).astype(x.dtype)
        want = np.exp(lp) * np.expand_dims(np.asarray(d1, np.float64), ax)
        close(f"logsumexp_backward {name}", call(csoftmax.logsumexp_backward, x, d1, axis=ax),
              want, rt)
        if not QUICK or ci % 2:
            close(f"logsumexp_backward keepdims {name}",
                  call(csoftmax.logsumexp_backward, x, np.expand_dims(d1, ax), axis=ax),
                  want, rt)
        if not QUICK or not ci % 2:
            z = np.array(x, copy=True)
            call(csoftmax.logsumexp_backward, z, d1, axis=ax, out=z)
            close(f"logsumexp_backward out=x {name}", z, want, rt)


def exercise_backward_short_rows(rng):
    """The backward ops' short-row kernels (SMALL) forced at lengths the
    planner leaves to the row kernels too (up to CSM_SMALL_MAX = 64; 32 and
    up, full groups are staged through scratch on AVX-512), partial groups,
    a row for the scalar kernel, in place."""
    from csoftmax import _core
    for dt in (np.float32, np.float64):
        for n in (1, 5, 16, 31, 32, 33, 64):
            for rows in (1, 7, 17, 35):
                x = rng.normal(size=(rows, n)).astype(dt) * 3
                dy = rng.uniform(-2, 2, x.shape).astype(dt)
                lp = _lsm(x, -1)
                y, ly = np.exp(lp).astype(dt), lp.astype(dt)
                ly[rows // 2, 0] = 0.25             # not a log-probability: scalar
                yw, lyw, dw = (np.asarray(a, np.float64) for a in (y, ly, dy))
                want = yw * (dw - (yw * dw).sum(-1, keepdims=True))
                want_l = dw - np.exp(lyw) * dw.sum(-1, keepdims=True)
                for op, f, a, w in (("softmax_backward", csoftmax.softmax_backward, y, want),
                                    ("log_softmax_backward", csoftmax.log_softmax_backward,
                                     ly, want_l)):
                    try:
                        with _core.forced(op, "SMALL"):
                            got = call(f, a, dy)
                            o = np.array(dy, copy=True)
                            call(f, a, o, out=o)
                    except ValueError:              # no short-row kernels here
                        continue
                    close(f"{op} SMALL {rows}x{n} {np.dtype(dt).name}", got, w, _rtol(dt))
                    close(f"{op} SMALL out=dy {rows}x{n} {np.dtype(dt).name}", o, w, _rtol(dt))


def exercise_distillation(rng):
    for ci, (name, s, ax) in enumerate(_loss_cases(rng)):
        t = (rng.standard_normal(s.shape) * 3).astype(s.dtype)
        rt = _rtol(s.dtype)
        n = s.shape[ax]
        rows = s.size // n
        for T, red in _some([(1.0, "batchmean"), (2.0, "none"), (0.5, "mean"), (4.0, "sum")],
                            ci):
            lps, lpt = _lsm(s, ax, T), _lsm(t, ax, T)
            per = T * T * (np.exp(lpt) * (lpt - lps)).sum(ax)
            count = {"batchmean": rows, "mean": rows * n}.get(red, 1)
            want = per if red == "none" else per.sum() / count
            loss, g = call(csoftmax.distillation_loss, s, t, temperature=T, axis=ax,
                           reduction=red, return_grad=True)
            tag = f"distillation_loss {name} T={T} {red}"
            close(tag, loss, want, rt)
            close(tag + " grad", g, T * (np.exp(lps) - np.exp(lpt)) / count, rt)
        lq = _lsm(s, ax).astype(s.dtype)
        p = np.exp(_lsm(t, ax)).astype(s.dtype)
        p.flat[0] = 0.0
        lqw, pw = np.asarray(lq, np.float64), np.asarray(p, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(pw == 0, 0.0, pw * np.log(pw)) - pw * lqw
        for red in _some(["none", "mean", "batchmean", "sum"], ci):
            want = {"none": terms, "mean": terms.mean(), "sum": terms.sum(),
                    "batchmean": terms.sum() / s.shape[0]}[red]
            close(f"kl_div {name} {red}", call(csoftmax.kl_div, lq, p, reduction=red), want, rt)
        lpt = _lsm(t, ax).astype(s.dtype)
        lpw = np.asarray(lpt, np.float64)
        close(f"kl_div log_target {name}",
              call(csoftmax.kl_div, lq, lpt, log_target=True, reduction="none"),
              np.exp(lpw) * (lpw - lqw), rt)


def margin_ref(c, ax, t, kind, m, s, easy):
    """float64 margin logits (class axis last) and df/dc at the target."""
    cm = np.moveaxis(np.asarray(c, dtype=np.float64), ax, -1)
    cy = np.take_along_axis(cm, t[..., None], -1)[..., 0]
    df = np.ones_like(cy)
    if kind == "normface":
        f = cy
    elif kind == "cosface":
        f = np.where(cy > 0, cy - m, cy) if easy else cy - m
    else:
        sin = np.sqrt(np.maximum(1 - cy * cy, 0))
        arc = cy * np.cos(m) - sin * np.sin(m)
        darc = np.cos(m) + np.sin(m) * cy / np.where(sin > 0, sin, 1)
        on = cy > 0 if easy else cy > np.cos(np.pi - m)
        f = np.where(on, arc, cy if easy else cy - m * np.sin(m))
        df = np.where(on, darc, 1.0)
    z = s * cm
    np.put_along_axis(z, t[..., None], (s * f)[..., None], -1)
    return z, df


def exercise_margin(rng):
    for ci, (name, x, ax) in enumerate(_loss_cases(rng)):
        c = np.tanh(np.asarray(x, np.float64) / 3).astype(x.dtype)   # in (-1, 1)
        C = c.shape[ax]
        tshape = c.shape[:ax % c.ndim] + c.shape[ax % c.ndim + 1:]
        t = rng.integers(0, C, tshape)
        rt = 1e-3 if c.dtype == np.float32 else 1e-9    # s = 16 amplifies the rounding
        kinds = [("normface", 0.0, False), ("cosface", 0.35, False), ("arcface", 0.5, False),
                 ("arcface", 0.5, True), ("cosface", 0.2, True)]
        for kind, m, easy in _some(kinds, ci):
            tag = f"{kind} m={m} easy={easy} {name}"
            z, df = margin_ref(c, ax, t, kind, m, 16.0, easy)
            got = call(csoftmax.margin_logits, c, t, scale=16.0, margin=m, kind=kind,
                       easy_margin=easy, axis=ax)
            close("margin_logits " + tag, np.moveaxis(got, ax, -1), z, rt)
            zy = np.take_along_axis(z, t[..., None], -1)[..., 0]
            per = np.squeeze(ref_lse(z, -1), -1) - zy
            p = np.exp(z - ref_lse(z, -1))
            g = 16.0 * p
            gy = 16.0 * (np.take_along_axis(p, t[..., None], -1)[..., 0] - 1) * df
            np.put_along_axis(g, t[..., None], gy[..., None], -1)
            for red in _some(["mean", "none"], ci):
                loss, gr = call(csoftmax.margin_cross_entropy, c, t, scale=16.0, margin=m,
                                kind=kind, easy_margin=easy, axis=ax, reduction=red,
                                return_grad=True)
                sc = 1.0 / per.size if red == "mean" else 1.0
                close(f"margin_cross_entropy {red} " + tag, loss,
                      per.mean() if red == "mean" else per, rt)
                close(f"margin_cross_entropy grad {red} " + tag, np.moveaxis(gr, ax, -1),
                      g * sc, rt)


def exercise_softplus_hinge(rng):
    for ci, (name, x, ax) in enumerate(_loss_cases(rng)):
        rt = _rtol(x.dtype)
        xw = np.asarray(x, np.float64)
        for beta, th in _some([(1.0, 20.0), (2.0, 1.0), (0.5, 1e9)], ci):
            bx = beta * xw
            want = np.where(bx > th, xw, np.logaddexp(0, bx) / beta)
            close(f"softplus {name} beta={beta} th={th}",
                  call(csoftmax.softplus, x, beta=beta, threshold=th), want, rt)
        C = x.shape[ax]
        tshape = x.shape[:ax % x.ndim] + x.shape[ax % x.ndim + 1:]
        t = rng.integers(0, C, tshape)
        xm = np.moveaxis(xw, ax, -1)
        for m in _some([0.0, 1.0], ci):
            other = xm.copy()
            np.put_along_axis(other, t[..., None], -np.inf, -1)
            with np.errstate(divide="ignore", invalid="ignore"):
                lse = np.squeeze(ref_lse(other, -1), -1) if C > 1 else np.full(t.shape, -np.inf)
                q = np.exp(other - lse[..., None]) if C > 1 else np.zeros(xm.shape)
            u = lse - np.take_along_axis(xm, t[..., None], -1)[..., 0] + m
            per = np.logaddexp(0, u)
            sig = np.exp(-np.logaddexp(0, -u))
            g = sig[..., None] * q
            np.put_along_axis(g, t[..., None], -sig[..., None] if C > 1 else 0 * sig[..., None],
                              -1)
            for red in _some(["none", "mean"], ci // 2):
                loss, gr = call(csoftmax.soft_hinge, x, t, margin=m, axis=ax, reduction=red,
                                return_grad=True)
                sc = 1.0 / per.size if red == "mean" else 1.0
                tag = f"soft_hinge {name} m={m} {red}"
                close(tag, loss, per.mean() if red == "mean" else per, rt)
                close(tag + " grad", np.moveaxis(gr, ax, -1), g * sc, rt)


def exercise_sample(rng):
    for ci, (name, x, ax) in enumerate(_loss_cases(rng)):
        xm = np.moveaxis(np.asarray(x, np.float64), ax, -1)
        n = xm.shape[-1]
        for T, k in _some([(1.0, None), (0.7, 3), (0.0, None), (2.0, 1)], ci):
            r = call(csoftmax.sample, x, temperature=T, top_k=k, axis=ax, seed=12345)
            r2 = call(csoftmax.sample, x, temperature=T, top_k=k, axis=ax, seed=12345)
            tag = f"sample {name} T={T} k={k}"
            r = np.asarray(r)
            if not np.array_equal(r, np.asarray(r2)):
                failures.append(f"{tag}: same seed, different draws")
            if r.shape != xm.shape[:-1] or np.any((r < 0) | (r >= n)):
                failures.append(f"{tag}: index out of range or wrong shape {r.shape}")
                continue
            if T == 0.0 or k == 1:
                if not np.array_equal(r, np.argmax(xm, -1)):
                    failures.append(f"{tag}: not the argmax")
            elif k is not None and k < n:
                kth = -np.sort(-xm, -1)[..., k - 1]
                if np.any(np.take_along_axis(xm, r[..., None], -1)[..., 0] < kth):
                    failures.append(f"{tag}: outside the top {k}")


def exercise_loss_threads(rng):
    """The parallel loops of the losses: > 32768 elements, 2 threads."""
    prev = call(csoftmax.get_num_threads)
    x = rng.standard_normal((129, 257))
    t = rng.integers(0, 257, 129)
    call(csoftmax.set_num_threads, 1)
    loss1, g1 = call(csoftmax.cross_entropy, x, t, label_smoothing=0.1, return_grad=True)
    call(csoftmax.set_num_threads, 2)
    try:
        # 2 threads agree with 1 (to rounding: the row blocks differ, and
        # with them the AVX2 kernels' grouping of rows)
        loss, g = call(csoftmax.cross_entropy, x, t, label_smoothing=0.1, return_grad=True)
        close("cross_entropy rows 129x257 threads=2 vs 1", loss, loss1, 1e-10)
        close("cross_entropy rows 129x257 threads=2 vs 1 grad", g, g1, 1e-10)
        # float32 columns through the tiles (>= 64 columns, <= 128 classes)
        xt = rng.standard_normal((2, 21, 130)).astype(np.float32)
        tt = rng.integers(0, 21, (2, 130))
        want_l, want_g = ce_ref(xt, tt, 1, None, 0.0, 1.0, False, "sum")
        lt, gt = call(csoftmax.cross_entropy, xt, tt, axis=1, reduction="sum",
                      return_grad=True)
        close("cross_entropy cols tiles 2x21x130 threads=2", lt, want_l, 1e-5)
        close("cross_entropy cols tiles 2x21x130 threads=2 grad", gt, want_g, 1e-5)
        # one long row split across the threads (float32: kept terms)
        for dt, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
            xl = rng.standard_normal((1, 65541)).astype(dt)
            tl = np.array([65540])
            want_l, want_g = ce_ref(xl, tl, -1, None, 0.0, 1.0, False, "sum")
            ll, gl = call(csoftmax.cross_entropy, xl, tl, reduction="sum",
                          return_grad=True)
            close(f"cross_entropy long row {np.dtype(dt).name} threads=2", ll, want_l, rtol)
            close(f"cross_entropy long row {np.dtype(dt).name} threads=2 grad", gl, want_g, rtol)
        if QUICK:
            return
        want_l, want_g = ce_ref(x, t, -1, None, 0.1, 1.0, False, "mean")
        close("cross_entropy rows 129x257 threads=2", loss, want_l, 1e-10)
        close("cross_entropy rows 129x257 threads=2 grad", g, want_g, 1e-10)
        xc = rng.standard_normal((7, 131, 37)).astype(np.float32)
        tc = rng.integers(0, 131, (7, 37))
        want_l, want_g = ce_ref(xc, tc, 1, None, 0.0, 1.0, False, "sum")
        loss, g = call(csoftmax.cross_entropy, xc, tc, axis=1, reduction="sum",
                       return_grad=True)
        close("cross_entropy cols 7x131x37 threads=2", loss, want_l, 1e-4)
        close("cross_entropy cols 7x131x37 threads=2 grad", g, want_g, 1e-4)
        d1 = rng.standard_normal((7, 37))
        close("logsumexp_backward cols threads=2",
              call(csoftmax.logsumexp_backward, xc, d1, axis=1),
              np.exp(_lsm(xc, 1)) * d1[:, None, :], 1e-4)
        y = np.exp(_lsm(x, -1))
        dy = rng.standard_normal(x.shape)
        close("softmax_backward threads=2", call(csoftmax.softmax_backward, y, dy),
              y * (dy - (y * dy).sum(-1, keepdims=True)), 1e-10)
        tt = rng.standard_normal(x.shape)
        lps, lpt = _lsm(x, -1), _lsm(tt, -1)
        close("distillation_loss threads=2", call(csoftmax.distillation_loss, x, tt),
              (np.exp(lpt) * (lpt - lps)).sum() / x.shape[0], 1e-10)
        c = np.tanh(x)
        z, _ = margin_ref(c, -1, t, "cosface", 0.35, 16.0, False)
        per = np.squeeze(ref_lse(z, -1), -1) - np.take_along_axis(z, t[:, None], -1)[:, 0]
        close("margin_cross_entropy threads=2",
              call(csoftmax.margin_cross_entropy, c, t, scale=16.0, margin=0.35,
                   kind="cosface"), per.mean(), 1e-9)
        call(csoftmax.soft_hinge, x, t, return_grad=True)
        r = np.asarray(call(csoftmax.sample, x, seed=7))
        call(csoftmax.set_num_threads, 1)
        if not np.array_equal(r, np.asarray(call(csoftmax.sample, x, seed=7))):
            failures.append("sample: 1 and 2 threads draw differently")
    finally:
        call(csoftmax.set_num_threads, prev)


def exercise_errors():
    """Validation paths (nothing may be written on error)."""
    x = np.ones((3, 4))
    out = np.full((3, 4), 7.0)
    for kw, exc in (({"axis": 2}, np.exceptions.AxisError),
                    ({"out": np.empty((4, 3))}, ValueError),
                    ({"out": np.empty((3, 4), dtype=np.float32)}, TypeError),
                    ({"temperature": 0.0}, ValueError),
                    ({"temperature": np.nan, "out": out}, ValueError)):
        try:
            csoftmax.softmax(x, **kw)
        except exc:
            pass
        else:
            failures.append(f"softmax{kw} did not raise {exc.__name__}")
    assert (out == 7.0).all()
    for bad in (np.ones(3, dtype=complex), np.array(["a"], dtype=object)):
        try:
            csoftmax.logsumexp(bad)
        except TypeError:
            pass
        else:
            failures.append(f"logsumexp({bad.dtype}) did not raise TypeError")


def exercise_linear_cross_entropy(rng):
    """Against cross_entropy of the explicit logits and their float64 GEMMs."""
    for dt, rtol in ((np.float32, 1e-4), (np.float64, 1e-11)):
        for B, D, V, chunk in ((9, 5, 13, 4), (1, 3, 2, None), (17, 8, 40, 1)):
            h = rng.standard_normal((B, D)).astype(dt)
            W = rng.standard_normal((V, D)).astype(dt)
            b = rng.standard_normal(V).astype(dt)
            y = rng.integers(0, V, B)
            y[0] = -100
            loss, (dh, dW, db) = call(csoftmax.linear_cross_entropy, h, W, y, bias=b,
                                      label_smoothing=0.1, return_grad=True,
                                      chunk_size=chunk)
            z = h.astype(np.float64) @ W.astype(np.float64).T + b
            want, g = csoftmax.cross_entropy(z, y, label_smoothing=0.1, return_grad=True)
            close(f"linear_cross_entropy {dt.__name__} {B}x{D}x{V}", loss, want, rtol)
            close("linear_cross_entropy dh", dh, g @ W.astype(np.float64), rtol)
            close("linear_cross_entropy dW", dW, g.T @ h.astype(np.float64), rtol)
            close("linear_cross_entropy db", db, g.sum(0), rtol)


def main():
    rng = np.random.default_rng(2024)
    cfg = call(csoftmax.get_config)
    call(csoftmax.get_include)
    warnings.simplefilter("ignore", RuntimeWarning)
    for name, a in arrays(rng):
        exercise_softmax(name, a)
        exercise_reductions(name, a)
    exercise_threads(rng)
    exercise_cross_entropy(rng)
    exercise_linear_cross_entropy(rng)
    exercise_backward(rng)
    exercise_backward_short_rows(rng)
    exercise_distillation(rng)
    exercise_margin(rng)
    exercise_softplus_hinge(rng)
    exercise_sample(rng)
    exercise_loss_threads(rng)
    exercise_errors()
    public = {n for n in csoftmax.__all__ if callable(getattr(csoftmax, n))}
    missing = sorted(public - CALLED)
    print(f"exercise: isa={cfg['isa']} openmp={cfg['openmp']}: called "
          f"{len(CALLED & public)}/{len(public)} public functions"
          + (f"; NOT exercised: {', '.join(missing)}" if missing else ""))
    if failures:
        print(f"exercise: {len(failures)} wrong results:", *failures[:20], sep="\n  ")
        return 1
    print("exercise: all results agree with the float64 reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
