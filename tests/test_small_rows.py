"""Short rows (n <= CSM_SMALL_MAX = 64): the kernels that put several rows in
the lanes of a vector (8 float32 / 4 float64 rows per group, transposed into
a scratch tile).

What is special about them, and tested here:
* groups and partial groups: every row count 1..17 and 1023 (not multiples
  of 8), every row length 1..65 (softmax takes them up to 64, log_softmax,
  reductions and cross-entropy up to 32; longer rows the row kernels);
* lanes are independent: special values (NaN, +-inf, all -inf rows, +-1e30,
  denormals, huge |x/T|) in any row / lane / column, and a row's result is
  bit for bit the same whatever rows surround it;
* results within the stated bounds of the float64 / longdouble reference,
  and in agreement with the scalar ISA and with the row kernels
  (the planner told to avoid SMALL and SMALL_TWO_PASS);
* strided, negative-stride, in-place and ``out=`` layouts; 1 vs 2 threads;
* cross-entropy (loss and gradient), whose rows also take these kernels.
"""
import contextlib

import numpy as np
import pytest

import csoftmax
from csoftmax import _core
from _helpers import OPS, assert_agree, check, run

FLOATS = [np.float32, np.float64]
SMALL = 64                 # CSM_SMALL_MAX: the fused softmax's longest row
SMALL_LOG = 32             # log_softmax / reductions / cross-entropy
ROW_COUNTS = list(range(1, 18)) + [1023]


def _longest(op):
    """Longest row the short-row kernels take for op."""
    return SMALL if op == "softmax" else SMALL_LOG


@contextlib.contextmanager
def small_rows(flag):
    if flag:
        yield
    else:
        with _core.forced(None, avoid=("SMALL", "SMALL_TWO_PASS")):
            yield


@contextlib.contextmanager
def isa_table(name):
    prev = _core._use_isa(name)
    try:
        yield
    finally:
        _core._use_isa(prev)


def _call(op, x, temperature=1.0, **kw):
    if op == "logsumexp":      # no temperature: smooth_max is the scaled LSE
        if temperature == 1.0:
            return csoftmax.logsumexp(x, axis=-1, **kw)
        return csoftmax.smooth_max(x, axis=-1, sharpness=1.0 / temperature, **kw)
    return OPS[op](x, axis=-1, temperature=temperature, **kw)


def _check_op(op, got, x, temperature=1.0, what=""):
    if op == "logsumexp" and temperature != 1.0:
        # smooth_max(x, s) = LSE(s*x) / s: compare with the reference LSE
        # of x / T (exact for the powers of two used) divided by 1/T
        t = x.dtype.type(temperature)
        check("logsumexp", np.asarray(got) / t, x / t, what=what)
        return
    check(op, got, x, temperature=temperature, what=what)


def _special_matrix(rows, n, dtype, rng):
    """(rows, n) with special values scattered over rows, lanes and columns."""
    x = rng.standard_normal((rows, n)) * 3
    tiny = np.finfo(dtype).smallest_subnormal
    kinds = [np.nan, np.inf, -np.inf, 1e30, -1e30, tiny, -tiny, 0.0]
    for r in range(rows):
        k = r % 11
        c = (r * 7) % n
        if k < len(kinds):
            x[r, c] = kinds[k]
        elif k == 8:
            x[r, :] = -np.inf                         # all -inf row
        elif k == 9:
            x[r, :] = 1e30                            # all equal, huge
        elif k == 10 and n > 1:
            x[r, :] = -np.inf
            x[r, c] = rng.standard_normal()           # one finite element
    return x.astype(dtype)


# -- reference accuracy over every group shape -------------------------------

@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_every_row_count_and_length(isa, dtype, op, rng):
    for n in list(range(1, SMALL + 2)):
        for rows in ROW_COUNTS if n in (1, 2, 3, 7, 8, 9, 10, 16, SMALL_LOG, SMALL_LOG + 1, SMALL, SMALL + 1) else [5, 9, 1023]:
            x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
            check(op, run(op, x), x, what=f"{rows}x{n}")


@pytest.mark.parametrize("temperature", [0.3, 2.0, 1e-7, 1e5])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_temperature(isa, dtype, op, temperature, rng):
    # 1e-7: |x / T| > 2^20, the float32 lanes leave the clamped fast path
    for n in (1, 2, 5, 10, 31, SMALL):
        x = (rng.standard_normal((37, n)) * 4).astype(dtype)
        if op == "logsumexp" and temperature not in (0.3,):
            t = 2.0 ** round(np.log2(temperature))     # exact division by T
        else:
            t = temperature
        _check_op(op, _call(op, x, t), x, t, what=f"n={n} T={t}")


def test_lse_cancellation_small_rows(isa, rng):
    """float32 LSE close to 0 (max < 0, log_sum ~ -max): redone in float64."""
    for n in (1, 2, 3, 10, 64):
        x = (rng.standard_normal((203, n)) * 0.5 - np.log(n)).astype(np.float32)
        check("logsumexp", csoftmax.logsumexp(x, axis=-1), x, what=f"n={n}")
    x = np.full((9, 2), -np.log(2.0), dtype=np.float32)    # LSE ~ 1e-8
    check("logsumexp", csoftmax.logsumexp(x, axis=-1), x)


# -- special values, lanes independent ---------------------------------------

@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values_in_every_lane(isa, dtype, op, rng):
    for n in (1, 2, 3, 8, 9, 10, 17, SMALL_LOG, SMALL_LOG + 1, SMALL, SMALL + 1):
        for rows in (1, 7, 9, 17, 33, 1023):
            x = _special_matrix(rows, n, dtype, rng)
            check(op, run(op, x), x, what=f"{rows}x{n}")


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_row_result_does_not_depend_on_neighbours(isa, dtype, op, rng):
    """Bit for bit: row r of a batch == the same row alone, for rows with and
    without special values and in every lane / partial group.  (The row
    kernels do not promise this: csm_finalize_avx2 works 4 rows at a time.)"""
    for n in (1, 3, 8, 10, 31, _longest(op)):
        x = _special_matrix(45, n, dtype, rng)
        x[5::7] = (rng.standard_normal((len(x[5::7]), n)) * 3e6).astype(dtype)  # huge |x|
        whole = np.asarray(run(op, x))
        for r in range(x.shape[0]):
            alone = np.asarray(run(op, x[r:r + 1]))[0]
            assert whole[r].tobytes() == alone.tobytes(), (n, r, whole[r], alone)
        for start in (1, 3, 8, 15):                   # other group alignments (groups
                                                      # of 8 rows, 16 for AVX-512's
                                                      # float32-lane kernels)
            part = np.asarray(run(op, x[start:]))
            assert part.tobytes() == whole[start:].tobytes(), (n, start)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_agrees_with_scalar_and_row_kernels(dtype, op, rng):
    if "avx2" not in _core.available_isas():
        pytest.skip("no short-row kernels on this CPU")
    for n in (1, 2, 4, 7, 10, 16, 31, SMALL):
        for rows in (3, 17, 1023):
            x = _special_matrix(rows, n, dtype, rng)
            x[::2] = (rng.standard_normal((len(x[::2]), n)) * 5).astype(dtype)
            with isa_table("avx2"):
                got = run(op, x)
                with small_rows(False):
                    rows_path = run(op, x)
            with isa_table("scalar"):
                scalar = run(op, x)
            assert_agree(scalar, got, op, x, what=f"scalar {rows}x{n}")
            assert_agree(rows_path, got, op, x, what=f"row kernels {rows}x{n}")


# -- layouts, out=, threads ---------------------------------------------------

@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_layouts_and_out(isa, dtype, op, rng):
    f = OPS[op]
    for n in (1, 3, 10, _longest(op)):
        base = _special_matrix(41, n + 9, dtype, rng)
        x = base[:, 4:4 + n]                       # row stride n + 9
        want = f(np.ascontiguousarray(x))
        check(op, want, x)
        np.testing.assert_array_equal(f(x), want)
        np.testing.assert_array_equal(f(x[::-1]), want[::-1])        # negative stride
        np.testing.assert_array_equal(f(x[::3]), want[::3])
        out = np.full((41, n + 5), 7.0, dtype=dtype)
        o = out[:, 2:2 + n]
        assert f(x, out=o) is o
        np.testing.assert_array_equal(o, want)
        assert (out[:, :2] == 7).all() and (out[:, 2 + n:] == 7).all()   # nothing outside
        y = np.ascontiguousarray(x)
        assert f(y, out=y) is y                                          # in place
        np.testing.assert_array_equal(y, want)
        yb = base.copy()
        f(yb[:, 4:4 + n], out=yb[:, 4:4 + n])                           # in place, strided
        np.testing.assert_array_equal(yb[:, 4:4 + n], want)
        np.testing.assert_array_equal(yb[:, :4], base[:, :4])
        np.testing.assert_array_equal(yb[:, 4 + n:], base[:, 4 + n:])


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_one_and_two_threads_bitwise(isa, dtype, op, rng):
    for n in (2, 10, 33, SMALL):
        x = _special_matrix(max(70000 // n, 1100), n, dtype, rng)
        prev = csoftmax.set_num_threads(1)
        try:
            one = np.asarray(run(op, x))
            csoftmax.set_num_threads(2)
            two = np.asarray(run(op, x))
        finally:
            csoftmax.set_num_threads(prev)
        assert one.tobytes() == two.tobytes(), n


# -- cross-entropy ------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("kw", [{}, {"temperature": 0.5}, {"label_smoothing": 0.1},
                                {"weight": "w"}, {"reduction": "sum"}])
def test_cross_entropy_small_rows(isa, dtype, kw, rng):
    tol = 1e-12 if dtype == np.float64 else 4e-6
    for C in (1, 2, 3, 10, 17, SMALL_LOG, SMALL_LOG + 1, SMALL):
        for N in (1, 9, 1023):
            x = (rng.standard_normal((N, C)) * 3).astype(dtype)
            t = rng.integers(0, C, N)
            t[::5] = -100                                   # ignored samples
            k = dict(kw)
            if k.get("weight") == "w":
                k["weight"] = rng.random(C) + 0.5
            loss, grad = csoftmax.cross_entropy(x, t, return_grad=True, **k)
            with small_rows(False):
                loss_r, grad_r = csoftmax.cross_entropy(x, t, return_grad=True, **k)
            x64 = x.astype(np.float64)
            loss_d, grad_d = csoftmax.cross_entropy(x64, t, return_grad=True, **k)
            scale = max(1.0, float(np.max(np.abs(grad_d))))
            for got in (grad, grad_r):
                np.testing.assert_allclose(got, grad_d, rtol=tol, atol=tol * scale * 1e-2,
                                           err_msg=f"C={C} N={N} {kw}")
            np.testing.assert_allclose(loss, loss_d, rtol=tol, err_msg=f"C={C} N={N}")
            np.testing.assert_allclose(loss_r, loss_d, rtol=tol, err_msg=f"C={C} N={N}")
            # in place gives the same gradient: bit for bit on the short-row
            # kernels; longer rows, when not in place, keep the reduction's
            # terms and rescale them (the same to rounding)
            xi = x.copy()
            csoftmax.cross_entropy(xi, t, return_grad=True, grad_out=xi, **k)
            if C <= SMALL_LOG:
                np.testing.assert_array_equal(xi, grad)
            else:
                np.testing.assert_allclose(xi, grad, rtol=tol, atol=tol * scale * 1e-2)


def test_cross_entropy_target_near_one(isa):
    """p_y -> 1: the target entry of the gradient is coef * expm1(log p_y),
    not a cancelling p_y - 1 (both sides of the exp(t) - 1 / Taylor switch)."""
    for gap in (40.0, 20.0, 5.0, 1.0, 0.35, 0.25, 0.0):
        for dt in FLOATS:
            x = np.zeros((3, 4), dtype=dt)
            x[:, 1] = gap
            t = np.array([1, 1, 0])
            _, g = csoftmax.cross_entropy(x, t, reduction="sum", return_grad=True)
            z = np.array([0.0, gap, 0.0, 0.0])
            lp = (z - gap) - np.log1p(3 * np.exp(-gap))
            want_y = np.expm1(lp[1])
            rtol = 1e-13 if dt == np.float64 else 2e-7
            np.testing.assert_allclose(g[0, 1], want_y, rtol=rtol)
            np.testing.assert_allclose(g[2, 0], np.expm1(lp[0]), rtol=rtol)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layout", ["rows", "cols", "where"])
@pytest.mark.parametrize("temperature", [1.0, 0.25, 3.0])
def test_log_softmax_exact_zero_is_plus_zero(isa, dtype, temperature, layout, rng):
    """Where every other element of a row is -inf (or there is none),
    log_softmax at the max is exactly 0 and comes out +0.0, as x - x does
    (and scipy, torch): the float32 kernels whose clamp terms (e^-90..-150,
    invisible anywhere else) are the whole rest of such a row gave -0.0
    there.  Short and long rows, every position of the max, rows, a
    non-last axis (27 columns: a block of 16 and a tail of 11, which the
    column kernels split 8 + 3) and where= masks."""
    R = 27
    for n in (1, 2, 3, 10, 17, 33, 64, 65, 1000):
        x = np.full((R, n), -np.inf)
        cols = np.arange(R) % n
        x[np.arange(R), cols] = rng.standard_normal(R) * 4
        x = x.astype(dtype)

        def call(a):
            if layout == "cols":
                return csoftmax.log_softmax(np.ascontiguousarray(a.T), axis=0,
                                            temperature=temperature).T
            if layout == "where":
                w = np.ones(a.shape, bool)
                w[:, -1:] = n == 1          # a masked-out element when n > 1
                b = a.copy()
                b[:, -1] = np.where(w[:, -1], b[:, -1], 7.0)
                return np.where(w, csoftmax.log_softmax(b, axis=-1, temperature=temperature,
                                                        where=w), a)
            return csoftmax.log_softmax(a, axis=-1, temperature=temperature)
        if layout == "where" and n > 1:
            x[np.arange(R), cols] = np.where(cols == n - 1, -np.inf, x[np.arange(R), cols])
            cols = np.where(cols == n - 1, 0, cols)
            x[np.arange(R), cols] = rng.standard_normal(R).astype(dtype)
        y = call(x)
        top = y[np.arange(R), cols]
        assert np.all(top == 0) and not np.any(np.signbit(top)), (n, top)
        # one element far below: the max is -log1p(e^(d / T)) there
        if n >= 2 and layout != "where":
            x2 = x.copy()
            nxt = (cols + 1) % n
            x2[np.arange(R), nxt] = x2[np.arange(R), cols] - 30
            y2 = call(x2)
            d = (x2[np.arange(R), nxt].astype(np.float64) - x2[np.arange(R), cols]) / temperature
            np.testing.assert_allclose(y2[np.arange(R), cols], -np.log1p(np.exp(d)),
                                       rtol=1e-5, atol=np.finfo(dtype).smallest_subnormal)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [31, 32, 33, 48, 63, 64])
def test_staged_rows_match_direct_loads(isa, dtype, n, rng):
    """Full groups of back-to-back float32 rows of >= 32 are copied to
    scratch before the transposing loads (SMALL_STAGE_MIN, avx512/small.h:
    the 16-row float32 lanes kernels); rows with another stride are read in
    place.  Both give the same bits, special values (lanes redone by the
    scalar kernels, which read the rows themselves), partial groups and
    in-place calls included; float64 and the other tables (no staging) too."""
    rows = 16 * 3 + 5
    x = _special_matrix(rows, n, dtype, rng)
    wide = np.full((rows, n + 3), 7.0, dtype)
    wide[:, :n] = x
    direct = wide[:, :n]                      # row stride n + 3: not staged
    t = rng.integers(0, n, rows)
    t[::7] = -100
    w = rng.random(n) + 0.5
    for op in ("softmax", "log_softmax", "ce"):
        if op == "ce":
            for kw in ({}, {"weight": w}, {"label_smoothing": 0.1}):
                a = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True, **kw)
                b = csoftmax.cross_entropy(direct, t, reduction="none", return_grad=True, **kw)
                loss = csoftmax.cross_entropy(x, t, reduction="none", **kw)
                for u, v in zip(a, b):
                    np.testing.assert_array_equal(u, v, err_msg=f"ce n={n} {kw}")
                np.testing.assert_array_equal(loss, a[0], err_msg=f"ce loss n={n} {kw}")
                if _core.plan("cross_entropy", x.shape, dtype)["path"] == "SMALL":
                    # (the row kernels recompute the terms in place: to rounding)
                    xi = x.copy()
                    csoftmax.cross_entropy(xi, t, reduction="none", return_grad=True,
                                           grad_out=xi, **kw)
                    np.testing.assert_array_equal(xi, a[1], err_msg=f"ce in place n={n} {kw}")
            continue
        for T in (1.0, 0.5):
            a = OPS[op](x, axis=-1, temperature=T)
            b = OPS[op](direct, axis=-1, temperature=T)
            np.testing.assert_array_equal(a, b, err_msg=f"{op} n={n} T={T}")
            check(op, a, x, temperature=T, what=f"staged n={n}")
            xi = x.copy()
            OPS[op](xi, axis=-1, temperature=T, out=xi)
            np.testing.assert_array_equal(xi, a, err_msg=f"{op} in place n={n} T={T}")
    assert np.all(wide[:, n:] == 7.0)
