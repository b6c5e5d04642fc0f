"""Call every public csoftmax function on small, odd-sized arrays.

A driver for the memory checkers (tools/valgrind.sh runs it under valgrind
memcheck, tools/sanitize.sh under ASan/UBSan), not a test suite: it walks
the code paths -- row and column layouts, every dtype, strided / reversed /
transposed inputs, out= and in place, 0-size and 1-length axes, special
values, the long-row split across threads, the weighted logsumexp -- and
checks results loosely against a float64 NumPy reference (so that reads of
uninitialised memory show up as wrong numbers too).  The ISA is the one
csoftmax picked, or CSOFTMAX_ISA.

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


def main():
    rng = np.random.default_rng(2024)
    cfg = call(csoftmax.get_config)
    call(csoftmax.get_include)
    warnings.simplefilter("ignore", RuntimeWarning)
    for name, a in arrays(rng):
        exercise_softmax(name, a)
        exercise_reductions(name, a)
    exercise_threads(rng)
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
