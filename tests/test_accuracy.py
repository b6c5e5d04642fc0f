"""Accuracy against a wider-precision NumPy reference (tests/_helpers.py).

Bounds (stated in _helpers.py):
* float32 softmax / log_softmax / logsumexp: <= 4 ULP of float32 against the
  float64 reference (issue #3 acceptance; the kernels measure ~0.5 ULP).
* float64: <= 8 ULP of float64 against a longdouble reference, plus the
  unavoidable float64 roundings of the exp argument and of an uncompensated
  float64 sum (f64_slack).
"""
import numpy as np
import pytest

import csoftmax
from _helpers import BOUND, OPS, assert_agree, assert_ulp, check, ref, run, ulp_err

FLOATS = [np.float32, np.float64]
LENGTHS = [1, 2, 7, 8, 9, 15, 16, 17, 1000, 32000, 256000]


def _rows_for(n):
    return 37 if n <= 1000 else (3 if n <= 32000 else 1)


def _call(op, x, axis=-1, temperature=1.0, **kw):
    """op(x) with a temperature; logsumexp has none, so it gets x / T (exact
    for the powers of two used with it) -- smooth_max covers the scaled LSE."""
    if op == "logsumexp":
        return csoftmax.logsumexp(x / x.dtype.type(temperature) if temperature != 1 else x,
                                  axis=axis, **kw)
    return OPS[op](x, axis=axis, temperature=temperature, **kw)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", LENGTHS)
def test_row_lengths(isa, dtype, op, n, rng):
    x = (rng.standard_normal((_rows_for(n), n)) * 4).astype(dtype)
    x0 = x.copy()
    got = run(op, x)
    assert got.dtype == dtype
    check(op, got, x, what=f"{op} n={n}")
    np.testing.assert_array_equal(x, x0)          # input untouched


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("temperature", [1e-3, 0.1, 0.5, 2.0, 10.0, 1e4])
def test_temperature(isa, dtype, op, temperature, rng):
    x = (rng.standard_normal((20, 33)) * 3).astype(dtype)
    if op == "logsumexp":
        # LSE(x / T): compare against the reference of the rounded x / T
        xs = x / dtype(temperature)
        check(op, csoftmax.logsumexp(xs, axis=-1), xs)
        # and the sharpness form: smooth_max(x, k) = LSE(k x) / k
        k = 1.0 / temperature
        got = csoftmax.smooth_max(x, sharpness=k)
        want = ref("logsumexp", x, -1, temperature) / np.longdouble(k)
        assert_ulp(got, want, what="smooth_max")
    else:
        check(op, OPS[op](x, temperature=temperature), x, temperature=temperature)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [
    ((1, 65536), -1),      # one long row: split across threads
    ((1, 100003), -1),     # odd length, split unevenly
    ((3, 40000), -1),      # few long rows: one block each
    ((2100, 17), -1),      # many short rows (35700 elements)
    ((300, 200), 0),       # column path, 4 column blocks
    ((4, 100, 130), 1),    # column path with outer > 1 and a ragged block
])
def test_threads(isa, threads, dtype, op, shape, axis, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    check(op, run(op, x, axis=axis), x, axis=axis, what=f"{threads} threads")


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [((1, 70001), -1), ((5, 30011), -1),
                                        ((700, 64), 0), ((3, 20, 800), 1)])
def test_one_and_two_threads_agree(isa, dtype, op, shape, axis, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    prev = csoftmax.set_num_threads(1)
    try:
        y1 = run(op, x, axis=axis)
        csoftmax.set_num_threads(2)
        y2 = run(op, x, axis=axis)
    finally:
        csoftmax.set_num_threads(prev)
    assert_agree(y1, y2, op, x, axis, what="2 threads vs 1")


# ---------------------------------------------------------------------------
# special values

def _special_rows(n, dtype, rng):
    """Rows of length n (>= 8) with special values at random positions."""
    big = 1e30
    inf, nan = np.inf, np.nan
    specials = [
        [],                                   # plain random row
        [big, -big, 0.0],
        [-big] * n,                           # all -1e30: LSE = -1e30 + log n
        [big] * n,
        [inf],
        [inf, inf],
        [-inf] * n,                           # all -inf
        [-inf, -inf, -inf],                   # mixed -inf row
        [-inf] * (n - 1),                     # one finite element left
        [nan],
        [nan, inf, -inf],
        [inf, -inf],
        [big, big, -inf],
        [-big, -inf],
    ]
    rows = []
    for sp in specials:
        r = rng.standard_normal(n) * 3
        pos = rng.permutation(n)[:len(sp)]
        r[pos] = sp
        rows.append(r)
    return np.array(rows).astype(dtype)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [8, 17, 1000])
def test_special_values(isa, dtype, op, n, rng):
    x = _special_rows(n, dtype, rng)
    with np.errstate(all="raise"):      # no floating-point warnings escape
        got_rows = run(op, x, axis=-1)
        got_cols = run(op, np.ascontiguousarray(x.T), axis=0)   # column kernels
    check(op, got_rows, x, axis=-1, what="rows")
    check(op, got_cols, x.T, axis=0, what="cols")


def test_special_values_documented(isa):
    """Spot-check the documented semantics of the non-finite cases."""
    inf, nan = np.inf, np.nan
    sm, lsm, lse = csoftmax.softmax, csoftmax.log_softmax, csoftmax.logsumexp
    np.testing.assert_array_equal(sm([1.0, inf, 2.0]), [0.0, nan, 0.0])
    np.testing.assert_array_equal(lsm([1.0, inf, 2.0]), [-inf, nan, -inf])
    assert lse([1.0, inf, 2.0]) == inf
    np.testing.assert_array_equal(sm([-inf, -inf]), [nan, nan])
    assert lse([-inf, -inf]) == -inf
    np.testing.assert_array_equal(sm([-inf, 0.0, -inf]), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(lsm([-inf, 0.0, -inf]), [-inf, 0.0, -inf])
    np.testing.assert_array_equal(sm([1.0, nan]), [nan, nan])
    assert np.isnan(lse([1.0, nan, inf]))
    assert lse([1e308, 1e308]) == 1e308 + np.log(2)   # no overflow in the sum


@pytest.mark.parametrize("dtype,xs", [
    # float32: e^-88 .. e^-110 are denormal or underflow (min normal 1.2e-38)
    (np.float32, [0, -87, -88, -90, -95, -100, -103, -103.25, -103.5, -104, -110, -200]),
    # float64: min normal 2.2e-308 = e^-708.4
    (np.float64, [0, -705, -709, -710, -720, -730, -740, -744, -744.5, -745.25, -746, -800]),
])
def test_denormal_outputs(isa, dtype, xs):
    # x - max is exact (small integers / quarters), so the plain ULP bound
    # applies to every output, denormals included (spacing = smallest denormal)
    x = np.array(xs, dtype=dtype)
    x2 = np.stack([x, x[::-1], x + dtype(3)])
    for op in OPS:
        got = run(op, x2)
        assert_ulp(got, ref(op, x2), what=op)
    y = csoftmax.softmax(x)
    assert np.any((y > 0) & (y < np.finfo(dtype).smallest_normal))   # really denormal
    # log_softmax at the max is -sum(e^d) -- itself tiny/denormal, relative accurate
    lsm0 = csoftmax.log_softmax(x)[0]
    assert lsm0 < 0 and ulp_err(lsm0, ref("log_softmax", x)[0], dtype) <= BOUND[np.dtype(dtype)]


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_denormal_inputs(isa, dtype, op):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([[tiny, -tiny, 0.0, 3 * tiny], [tiny] * 4], dtype=dtype)
    check(op, run(op, x), x)


# ---------------------------------------------------------------------------
# adversarial rows

@pytest.mark.parametrize("op", list(OPS))
def test_x_minus_max_not_exact_in_float32(isa, op, rng):
    """x - max needs more than 24 bits: a kernel subtracting in float32 is off
    by up to 0.5 ulp(|x - max|) in the exponent argument, i.e. ~16 ULP here."""
    x = np.array([1.2345678, -28.3], dtype=np.float32)
    check(op, run(op, x), x)
    rows = rng.uniform(-80, -10, size=(64, 37)).astype(np.float32)
    rows[np.arange(64), rng.integers(0, 37, 64)] = np.float32(1.2345678)
    check(op, run(op, rows), rows)
    check(op, run(op, np.ascontiguousarray(rows.T), axis=0), rows.T, axis=0)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("base,top", [(-15.3, 5.1), (-9.7, 0.3), (90.1, 100.3),
                                      (-1000.7, -990.1)])
@pytest.mark.parametrize("temperature", [1.0, 0.37])
def test_mass_far_below_one_outlier(isa, op, base, top, temperature, rng):
    """The mass of a long row sits ~10 below a single outlier, so S is made of
    256000 terms of nearly the same d = x - max.  Any rounding of d (x - max
    in float32: up to 2^-21 here) has the same sign in every term, does not
    average out, and moves S -- hence every softmax output -- by up to ~8 ULP.
    Also covers the float32 reduction's own exp error on such rows."""
    n = 256000
    x = np.full((2, n), base, np.float32)
    x[0] += rng.uniform(0, 1e-3, n).astype(np.float32)      # one spread row, one constant
    x[:, 7] = top
    t = temperature if op != "logsumexp" else 1.0
    check(op, _call(op, x, temperature=t), x, temperature=t)


@pytest.mark.parametrize("dtype", FLOATS)
def test_dominant_max_zero_minus_40(isa, dtype):
    """scipy gh-18295: LSE([0, -40]) = log1p(e^-40) = 4.248e-18, not 0, and
    log_softmax([0, -40])[0] = -4.248354255291589e-18 relative-accurate."""
    x = np.array([0.0, -40.0], dtype=dtype)
    want = -np.log1p(np.exp(np.longdouble(-40)))
    assert abs(float(want) - (-4.248354255291589e-18)) < 1e-32
    lsm = csoftmax.log_softmax(x)
    assert ulp_err(lsm[0], want, dtype) <= BOUND[np.dtype(dtype)]
    assert ulp_err(lsm[1], np.longdouble(-40) + want, dtype) <= BOUND[np.dtype(dtype)]
    lse = csoftmax.logsumexp(x)
    assert lse != 0 and ulp_err(lse, -want, dtype) <= BOUND[np.dtype(dtype)]
    # also through the column kernels and a longer row with a repeated max
    lsm_c = csoftmax.log_softmax(x[:, None], axis=0)
    assert ulp_err(lsm_c[0, 0], want, dtype) <= BOUND[np.dtype(dtype)]
    x3 = np.array([0.0, -40.0, 0.0] + [-45.0] * 20, dtype=dtype)
    check("log_softmax", csoftmax.log_softmax(x3), x3)
    check("logsumexp", csoftmax.logsumexp(x3), x3, axis=None)


@pytest.mark.parametrize("top", [0.0, 1.5, 100.25, -3e3, 1e4, 3e7])
def test_log_softmax_dominant_max_far_from_zero(isa, top, rng):
    """log_softmax at T = 1 writes x - (max + log_sum) in float32 lanes from a
    three-part split of max + log_sum: the max entry is -log_sum, far below
    ulp(max) when the max dominates (log_sum ~ e^-gap), and entries near the
    max cancel against it.  Rows of 33..1000 with gaps 5..60 below a max
    of each magnitude; also rows whose entries sit near max + log_sum."""
    for n in (33, 40, 1000):
        x = (top - rng.uniform(5, 60, size=(16, n))).astype(np.float32)
        x[np.arange(16), rng.integers(0, n, 16)] = np.float32(top)
        check("log_softmax", csoftmax.log_softmax(x), x)
        y = (top + rng.uniform(-2, 0.5, size=(16, n))).astype(np.float32)
        check("log_softmax", csoftmax.log_softmax(y), y)
        # the same rows as columns (16 lanes of the column kernel)
        for z in (x, y):
            zt = np.ascontiguousarray(z.T)
            check("log_softmax", csoftmax.log_softmax(zt, axis=0), zt, axis=0)


def test_float16_within_one_ulp(isa, rng):
    x = (rng.standard_normal((10, 50)) * 3).astype(np.float16)
    for op in OPS:
        got = run(op, x)
        assert got.dtype == np.float16
        # computed in float32 then rounded once more: <= 1 ULP of float16
        assert_ulp(got, ref(op, x), bound=1.0, what=op)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values_in_split_rows(isa, threads, dtype, op, rng):
    """One long row is cut into per-thread segments whose (max, count, rest)
    states are merged: special values in one segment only must survive it."""
    n = 70001
    half = n // 2
    cases = {
        "first_half_neg_inf": lambda r: r.__setitem__(slice(0, half), -np.inf),
        "second_half_neg_inf": lambda r: r.__setitem__(slice(half, None), -np.inf),
        "pos_inf_late": lambda r: r.__setitem__(n - 3, np.inf),
        "two_pos_inf_split": lambda r: (r.__setitem__(5, np.inf), r.__setitem__(n - 5, np.inf)),
        "nan_late": lambda r: r.__setitem__(n - 7, np.nan),
        "all_neg_inf": lambda r: r.__setitem__(slice(None), -np.inf),
        "max_repeated_in_both": lambda r: (r.__setitem__(10, 30.0), r.__setitem__(n - 10, 30.0)),
        "big_late": lambda r: (r.__setitem__(n - 2, 1e30), r.__setitem__(3, -1e30)),
        "dominant_max_late": lambda r: (r.__setitem__(slice(None), -40.0), r.__setitem__(n - 1, 0.0)),
    }
    for name, make in cases.items():
        r = rng.standard_normal(n) * 3
        make(r)
        x = r.astype(dtype)[None, :]
        with np.errstate(all="raise"):
            got = run(op, x)
        check(op, got, x, what=f"{name}, {threads} threads")


def test_float64_one_sided_sums(isa):
    """Many small terms onto a sum near 1 round it the same way each time:
    the short-row / fused softmax must count the max's term apart, the
    column reductions must not keep a column's n terms in one accumulator
    (an mpmath audit: 63 ULP at n = 64 on the short rows, 514 at 4099 on the
    AVX2 fused rows, 715 ULP for log_softmax along 4099 rows; bounds 40 /
    264 / 520).  References: float64 with the sum formed exactly enough
    (the rest is ~1e-13 of the total, its own rounding is invisible)."""
    import math
    for n in (33, 63, 64, 65, 1000, 4099):
        x = np.full(n, -33.125882657032875)
        x[0] = 0.0
        rest = (n - 1) * math.exp(-33.125882657032875)
        want = 1.0 / (1.0 + rest)                  # two roundings
        for got in (csoftmax.softmax(x)[0], csoftmax.softmax(np.tile(x, (17, 1)))[5, 0]):
            assert abs(got - want) <= 2 * np.spacing(want), (n, got, want)
    X = np.full((4099, 3), -30.0)
    X[0] = 0.0
    X[1] = -0.5
    tail = math.fsum([math.exp(-0.5)] + [math.exp(-30.0)] * 4097)
    ls = math.log1p(tail)                          # log S, S = 1 + tail
    u_ls = np.spacing(ls)
    assert abs(csoftmax.logsumexp(X, axis=0)[0] - ls) <= 40 * u_ls
    assert abs(csoftmax.log_softmax(X, axis=0)[0, 0] + ls) <= 40 * u_ls
    p = 1.0 / (1.0 + tail)
    assert abs(csoftmax.softmax(X, axis=0)[0, 0] - p) <= 16 * np.spacing(p)


# ---------------------------------------------------------------------------
# logsumexp cancelling near 0 (log-probabilities): the float32 kernels' terms
# are accurate to 2^-28.5, so an LSE close to 0 is redone in float64.  Three
# ways that redo was missed or too weak, each found by an audit:
# the column kernels' fallbacks (tail columns, a group with a NaN lane) had
# no redo (7.5e6 ULP); the redo summed a row in one accumulator per lane
# (5.2 ULP at 200 000 classes); a row split over threads (LONG_ROW_SPLIT) or
# over dask chunks tested each part, not the merged LSE (3e6 / 1e7 ULP).

def _lse_exact(x):
    """LSE of float32 data to ~0.05 ULP where it cancels: float64 terms
    summed exactly (fsum), count of the max apart, log1p."""
    import math
    v = np.asarray(x, dtype=np.float64).ravel()
    m = v.max()
    if not np.isfinite(m):
        return m
    d = v - m                      # exact for float32 data
    rest = math.fsum(np.exp(d[d != 0]).tolist())
    return m + math.log1p((np.count_nonzero(d == 0) - 1) + rest)


def _log_probs(rng, n, top, where=0, equal=False):
    """float32 log-probabilities: mass `top` on one class, the rest spread
    (equal: all the same -- their rounding errors then add up one-sided)."""
    q = np.ones(n - 1) if equal else rng.random(n - 1) + 0.05
    q = q / q.sum() * (1 - top)
    p = np.insert(q, where, top)
    return np.log(p).astype(np.float32)


def _assert_lse_cancel(got, cols, what):
    """Within 4 ULP plus the float64 redo's own cancellation: max + log S
    rounded in float64 is off by up to ~2 u (|max| + log S), which is
    several float32 ULP where the LSE falls below ~1e-9 (|max| ~ 0.1);
    the defects this guards against were off by 1e6-1e7 ULP."""
    want = np.array([_lse_exact(c) for c in cols])
    assert np.all(np.abs(want) < 1e-5), "the inputs must cancel"
    got = np.asarray(got, dtype=np.float32).astype(np.float64)
    m = np.array([np.max(np.asarray(c, np.float64)) for c in cols])
    slack = 16 * 2.0 ** -53 * 2 * np.abs(m)          # |max| + log S = 2 |max| + LSE
    err = np.maximum(np.abs(got - want) - slack, 0)
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    e = err / ulp
    i = int(np.argmax(e))
    assert e[i] <= 4, (f"{what}: {e[i]:.3g} ULP beyond the slack at {i}: got "
                       f"{got[i]!r}, want {want[i]!r}, slack {slack[i]:.3g}")


@pytest.mark.parametrize("n_cols", [1, 2, 5, 8, 15, 16, 17, 31, 33, 40])
@pytest.mark.parametrize("n_rows", [2, 7, 300])
def test_lse_cancel_columns(isa, n_cols, n_rows, rng):
    """Along axis 0, every column a log-probability vector: the fast groups,
    the groups' leftover columns and the generic kernel all redo."""
    cols = [_log_probs(rng, n_rows, 0.9 if n_rows > 2 else 0.55, j % n_rows)
            for j in range(n_cols)]
    x = np.stack(cols, axis=1)
    _assert_lse_cancel(csoftmax.logsumexp(x, axis=0), cols, f"{n_rows}x{n_cols}")
    _assert_lse_cancel(csoftmax.smooth_max(x, axis=0), cols, "smooth_max")
    # a NaN in another column sends the whole group to the generic kernel
    xn = x.copy()
    xn[0, -1] = np.nan
    got = csoftmax.logsumexp(xn, axis=0)
    assert np.isnan(got[-1])
    if n_cols > 1:
        _assert_lse_cancel(got[:-1], cols[:-1], "NaN in the group")


@pytest.mark.parametrize("n", [4099, 65536, 200000])
@pytest.mark.parametrize("path", ["TWO_PASS", "LONG_ROW_SPLIT"])
@pytest.mark.parametrize("top,equal", [(0.9, False), (0.99, True)])
def test_lse_cancel_long_rows(isa, threads, n, path, top, equal, rng):
    """One long row of log-probabilities, mass 0.9 in the first half and 0.1
    spread over the rest (the second segment's own LSE, log 0.1, does not
    cancel; the row's does); or 0.99 and the rest equal (one accumulator
    per lane in the redo: 5.2 ULP at 200 000)."""
    from csoftmax import _core
    x = _log_probs(rng, n, top, n // 4, equal)
    try:
        with _core.forced("logsumexp", path):
            got = csoftmax.logsumexp(x)
            used = _core._last_plan()[1]
    except ValueError as e:
        pytest.skip(str(e))
    assert used == path
    _assert_lse_cancel(np.atleast_1d(got), [x], f"{path} n={n}")
    # the same rows as a batch of two (TWO_PASS / rows over threads)
    _assert_lse_cancel(csoftmax.logsumexp(np.stack([x, x[::-1]]), axis=1),
                       [x, x[::-1]], "two rows")
