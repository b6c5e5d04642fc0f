"""Tests that kill mutants of tools/mutants.toml which the rest of the suite
let through (tools/mutation_test.py).  Each test checks the documented
behaviour against an independent reference, not the particular mutation;
the mutant it was written for is named in its docstring."""
import platform
import re

import numpy as np
import pytest

import csoftmax
from csoftmax import _core


# ---------------------------------------------------------------------------
# nll_loss: only label == ignore_index is skipped

@pytest.mark.parametrize("ignore_index", [2, 0, -100, -1])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_ignores_exactly_ignore_index(ignore_index, reduction, weighted, rng):
    """Mutant cy_nll_negative_ignored_survivor: every negative label taken
    as ignored.  Non-negative ignore_index values must be skipped (and a
    negative label that is not ignore_index is an error, below)."""
    N, C = 37, 5
    lp = np.log(rng.dirichlet(np.ones(C), size=N))
    t = rng.integers(0, C, size=N)
    t[::4] = ignore_index                      # a quarter of the samples ignored
    w = rng.uniform(0.5, 2.0, size=C) if weighted else None
    got = csoftmax.nll_loss(lp, t, ignore_index=ignore_index, reduction=reduction,
                            weight=w)

    keep = t != ignore_index
    wy = np.ones(N) if w is None else np.where(keep, w[np.where(keep, t, 0)], 0.0)
    per = np.where(keep, -wy * lp[np.arange(N), np.where(keep, t, 0)], 0.0)
    if reduction == "none":
        want = per
    elif reduction == "sum":
        want = per.sum()
    else:
        want = per.sum() / wy[keep].sum()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_nll_loss_negative_label_that_is_not_ignore_index_is_an_error(ignore_index):
    """Mutant cy_nll_negative_ignored_survivor: a label of -1 is not a class
    index; it is only skipped when it equals ignore_index."""
    lp = np.log(np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"target\[2\] = -1"):
        csoftmax.nll_loss(lp, np.array([0, 1, -1, 2]), ignore_index=ignore_index)


# ---------------------------------------------------------------------------
# backward: the result dtype is the wider of y's and dy's

_PAIRS = [(a, b) for a in ("float16", "float32", "float64")
          for b in ("float16", "float32", "float64")]


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("ydt,dydt", _PAIRS)
def test_backward_result_dtype_is_the_wider_of_y_and_dy(ydt, dydt, log, rng):
    """Mutant loss_bwd_dtype_survivor: the result took y's dtype, so float16
    y with float32 dy came back float16 (and out= had to be float16)."""
    x = rng.normal(size=(3, 7))
    y64 = csoftmax.log_softmax(x) if log else csoftmax.softmax(x)
    y = y64.astype(ydt)
    dy = rng.normal(size=x.shape).astype(dydt)
    f = csoftmax.log_softmax_backward if log else csoftmax.softmax_backward
    want_dtype = np.result_type(np.dtype(ydt), np.dtype(dydt))
    got = f(y, dy)
    assert got.dtype == want_dtype

    yr, gr = y.astype(np.float64), dy.astype(np.float64)
    if log:
        ref = gr - np.exp(yr) * gr.sum(axis=-1, keepdims=True)
    else:
        ref = yr * (gr - (yr * gr).sum(axis=-1, keepdims=True))
    tol = {np.dtype("float16"): 2e-3, np.dtype("float32"): 1e-6,
           np.dtype("float64"): 1e-14}[want_dtype]
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=0, atol=tol * 8)

    out = np.empty(x.shape, dtype=want_dtype)
    assert f(y, dy, out=out) is out
    np.testing.assert_array_equal(out, got)


# ---------------------------------------------------------------------------
# float32 exp: no systematic error at the edges of the reduced range

def _targeted_rows(n, rows, rng):
    """Rows [0, x_1, ...] whose softmax outputs are exp(x_j) to ~1e-7
    relative (the other terms add < 2e-7 to the sum): x_j = -k ln2 + r with
    |r| in [0.30, 0.345], the edge of the range |r| <= ln2/2 that the
    float32 exp polynomials are fitted on -- where an error in one of their
    coefficients shows most."""
    k = rng.integers(16, 60, size=(rows, n - 1))
    r = rng.uniform(0.30, 0.345, size=(rows, n - 1)) * rng.choice([-1.0, 1.0], size=(rows, n - 1))
    x = np.concatenate([np.zeros((rows, 1)), -k * np.log(2.0) + r], axis=1)
    return x.astype(np.float32)


@pytest.mark.parametrize("n", [12, 100, 3000])
def test_float32_softmax_unbiased_at_reduction_edges(isa, fused, n, rng):
    """Mutant avx2_exp_ps_coef_survivor: the r^2 coefficient of the
    all-float32 exp polynomial off by -7e-7 (relative) biases every result
    near the edges low (mean signed error -0.22 ULP on these rows, worst
    1.6 ULP) -- inside the suite's 4-ULP bounds.  Checked here: no
    systematic bias (|mean signed error| < 0.1 ULP; measured <= 0.015 on
    AVX2, rounding alone is unbiased) and every result within 1.5 ULP of
    the float64 reference (measured: 0.5 scalar, 1.29 AVX2)."""
    x = _targeted_rows(n, max(4, 24000 // n), rng)
    y = csoftmax.softmax(x)       # the `fused` fixture: one-exp paths on / off
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    err = (y.astype(np.float64) - ref) / ulp
    tail = err[:, 1:]                     # the targeted elements
    assert abs(np.mean(tail)) < 0.1, np.mean(tail)
    assert np.max(np.abs(err)) <= 1.5, np.max(np.abs(err))


# ---------------------------------------------------------------------------
# float32 logsumexp: rows whose LSE cancels are recomputed in float64

@pytest.mark.parametrize("n", [40, 200])
@pytest.mark.parametrize("spread", [0.1, 1.0, 3.0])
@pytest.mark.parametrize("lse_range", [(0.25, 0.5), (0.5, 1.0), (1.0, 1.2)])
def test_float32_logsumexp_cancelling_rows_within_one_ulp(isa, n, spread, lse_range, rng):
    """Mutant avx2_cancel_threshold: rows with 0.3 <= |LSE| < 1.3 no longer
    recomputed, leaving the float32 terms' error in the small result (up to
    2 ULP measured -- inside the suite's 4 ULP).  max < 0 and log_sum > 0
    cancel to an LSE in `lse_range`; such rows are redone with libm, so the
    result is the float64 one rounded (measured 0.5 ULP on every ISA)."""
    z = rng.standard_normal((max(50, 20000 // n), n)) * spread
    zm = z.max(axis=1, keepdims=True)
    lz = zm + np.log(np.exp(z - zm).sum(axis=1, keepdims=True))
    x = (z - lz + rng.uniform(*lse_range, size=(z.shape[0], 1))).astype(np.float32)
    got = csoftmax.logsumexp(x, axis=-1)
    x64 = x.astype(np.float64)
    m = x64.max(axis=1)
    ref = m + np.log(np.exp(x64 - m[:, None]).sum(axis=1))
    err = np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32))
    assert err.max() <= 1.0, f"{err.max():.2f} ULP"


# ---------------------------------------------------------------------------
# dispatch: the AVX2 table is offered where the CPU has AVX2 and FMA

def test_avx2_offered_on_a_cpu_that_has_avx2_and_fma():
    """Mutant dispatch_no_avx2: CPU detection asking for the wrong feature
    left every AVX2 machine on the scalar kernels; the suite (which runs on
    whatever tables are offered) still passed.  The reference here is the
    kernel's own report of the CPU (Linux /proc/cpuinfo, which lists avx2
    only when the OS saves YMM state)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86-64 only")
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^flags\s*:(.*)$", f.read(), re.M)
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if m is None or not {"avx2", "fma"} <= set(m.group(1).split()):
        pytest.skip("this CPU has no AVX2 + FMA")
    assert "avx2" in _core.available_isas()   # (CSOFTMAX_ISA may pick another)


# ---------------------------------------------------------------------------
# cross_entropy: grad_out overlapping the probability target

@pytest.mark.parametrize("shift", [1, -1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_grad_out_overlapping_target(dtype, shift, rng):
    """Mutant api_grad_overlap_check: grad_out sharing memory with the
    probability target was written by the kernel while it still read the
    target.  An overlapping grad_out must give the gradient of the target
    as it was passed (numpy reference: softmax(x) * sum(q) - q, / N)."""
    N, C = 9, 13
    x = rng.normal(size=(N, C)).astype(dtype)
    q = rng.dirichlet(np.ones(C), size=N).astype(dtype)
    buf = np.zeros((N, C + 1), dtype=dtype)
    lo = max(0, -shift)
    t = buf[:, lo:lo + C]
    t[...] = q
    g_out = buf[:, lo + shift:lo + shift + C]
    loss, g = csoftmax.cross_entropy(x, t, return_grad=True, grad_out=g_out)
    assert g is g_out

    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    lp = x64 - x64.max(1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    want_loss = -(q64 * lp).sum() / N
    want_g = (np.exp(lp) * q64.sum(1, keepdims=True) - q64) / N
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(float(loss), want_loss, rtol=tol)
    np.testing.assert_allclose(g.astype(np.float64), want_g, rtol=0, atol=tol)
