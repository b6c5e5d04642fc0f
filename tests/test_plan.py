"""The planner (csoftmax/_plan.pxi): which path and kernels serve a call.

* a table of (op, shape, axis, options, threads) -> expected path on each
  ISA, asserted through ``_core.plan`` for both dtypes -- and, for the
  cases small enough to run, the path the call actually ran
  (``_core._last_plan``);
* every path of every op forced in turn (``_core.forced``): the result is
  within the accuracy contract (tests/_helpers.py CONTRACT) of the
  reference, as the unforced one is, and TWO_PASS_PREFETCH / ROWS_PREFETCH
  give the bits of TWO_PASS / ROWS (the prefetch is a hint); a path the ISA or the call cannot
  take is refused with ValueError, by ``plan`` and by the call;
* coverage: every kernel of ``_core.kernel_list()`` that the current table
  has is named by the plan of at least one case here, so a kernel that no
  path reaches fails this test.
"""
import sys

import numpy as np
import pytest

import csoftmax
from csoftmax import _core
from _helpers import (assert_within, check, ref_ce, ref_log_softmax_bwd,
                      ref_logsumexp_bwd, ref_softmax_bwd)

FLOATS = [np.float32, np.float64]
SIMD = {"avx2", "avx512"}  # tables with the short-row / fused / tiled kernels

# (op, shape, axis, plan options, threads, expected path) -- expected: one
# name, or {"avx2": ..., "other": ...} (other: scalar and neon), or
# {(isa-group, dtype name): ...} where the two dtypes differ.
T = "TWO_PASS"
# FUSED / LONG_ROW_STORE keep a row's terms while they fit FUSED_MAX_BYTES,
# which the planner sets from this machine's L2 (L2 / 8; float64:
# FUSED_MAX_F64, L2 / 4 on the AVX-512 table; on AMD Zen4 and later L3 / 4,
# float64 unlimited: FUSED_BEYOND_L2); longer rows have their
# destination prefetched up to PREFETCH_MAX_BYTES (L2 / 4; log_softmax
# PREFETCH_MAX_LOG_BYTES, L2 / 2).
_TH = _core.thresholds()


def _lanes(simd):
    """Expected path of a float32 use needing log_sum at 33..63 elements
    (logsumexp: 33..47, SMALL_LSE_MAX_LANES; cross-entropy): SMALL on the
    AVX-512 table (its float32-lane short rows, up to SMALL_LOG_MAX_LANES),
    `simd` on AVX2 and for float64, TWO_PASS off the SIMD tables."""
    def want(group, dn):
        if group != "avx2":
            return T
        return "SMALL" if _core.isa() == "avx512" and dn == "float32" else simd
    return want


def _cols_conflict(n, inner):
    """Expected path of float32 log_softmax / class cross-entropy along a
    non-last axis of n classes, inner columns, where the Xeon rules take the
    blocks: the tiles where more than COLS_TILE_MIN_ROWS rows (32 on the
    Xeon, 8 on AMD Zen3+) are a multiple of 4 KiB apart (AVX2 group)."""
    def want(group, dn):
        if (group == "avx2" and dn == "float32" and
                n > _TH["COLS_TILE_MIN_ROWS"] and inner * 4 % 4096 == 0):
            return "COLS_TILED"
        return "COLS_BLOCKS"
    return want


def _long_row(n, seg=None):
    """Expected path of a softmax row of n elements (seg: CE segments of a
    split row): a function of (isa group, dtype name)."""
    def want(group, dn):
        size = 8 if dn == "float64" else 4
        if seg is not None:
            if group == "avx2" and dn == "float32" and seg * size <= _TH["FUSED_MAX_BYTES"]:
                return "LONG_ROW_STORE"
            return "LONG_ROW_SPLIT"
        if group != "avx2":
            return T
        th = _core.thresholds()         # FUSED_MAX_F64 depends on the table in use
        fmax = th["FUSED_MAX_F64"] if size == 8 else th["FUSED_MAX_BYTES"]
        if n * size <= fmax:
            return "FUSED"
        return "TWO_PASS_PREFETCH" if n * size <= th["PREFETCH_MAX_BYTES"] else T
    return want


def _bwd_rows(op, n=1000):
    """Expected path of a backward op's rows of n: short rows on the SIMD
    tables SMALL -- softmax_backward up to BWD_SMALL_MAX (float64
    BWD_SMALL_MAX_F64) but at multiples of the row kernel's vector (16
    floats on AVX-512, else 8 elements), log_softmax_backward up to
    BWD_SMALL_LOG_MAX (_F64) but at multiples of 16; else ROWS_PREFETCH on
    the SIMD tables (their kernels that fetch the next row), except
    softmax_backward where SOFTMAX_BWD_PREFETCH is off (AMD Zen4 and
    later); ROWS elsewhere."""
    def want(group, dn):
        if group != "avx2":
            return "ROWS"
        f = "_F64" if dn == "float64" else ""
        if op == "log_softmax_backward":
            lim, vec = _TH["BWD_SMALL_LOG_MAX" + f], 16
        else:
            lim = _TH["BWD_SMALL_MAX" + f]
            vec = 16 if (_core.isa() == "avx512" and dn == "float32") else 8
        if n <= lim and n % vec != 0:
            return "SMALL"
        if op == "softmax_backward" and not _TH["SOFTMAX_BWD_PREFETCH"]:
            return "ROWS"
        return "ROWS_PREFETCH"
    return want


def _masked_long(n):
    """Expected path of a masked float32 softmax row of n elements: the
    fused masked kernel while the row fits FUSED_MAX_BYTES (AVX2 group)."""
    def want(group, dn):
        if group == "avx2" and dn == "float32" and 4 * n <= _TH["FUSED_MAX_BYTES"]:
            return "MASKED_FUSED"
        return "MASKED_ROWS"
    return want


CASES = [
    # softmax: short rows up to SMALL_SOFTMAX_MAX_F32 = 31 (float64: up to
    # CSM_SMALL_MAX = 64), fused rows (grouped up to 256) while the row fits
    # FUSED_MAX_BYTES (else prefetched two-pass), long rows split when fewer rows than threads
    ("softmax", (8192, 1000), -1, {}, 1, {"avx2": "FUSED", "other": T}),
    ("softmax", (262144, 10), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    ("softmax", (100, 31), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    ("softmax", (100, 32), -1, {}, 1, {("avx2", "float32"): "FUSED",
                                       ("avx2", "float64"): "SMALL", "other": T}),
    ("softmax", (100, 64), -1, {}, 1, {("avx2", "float32"): "FUSED",
                                       ("avx2", "float64"): "SMALL", "other": T}),
    ("softmax", (100, 65), -1, {}, 1, {"avx2": "FUSED", "other": T}),
    ("softmax", (4, 600_000), -1, {}, 1, _long_row(600_000)),
    ("softmax", (4, 2_000_000), -1, {}, 1, _long_row(2_000_000)),   # FUSED on AMD
    ("softmax", (3, 70000), -1, {}, 2, _long_row(70000)),
    ("softmax", (1, 70000), -1, {}, 2, "LONG_ROW_SPLIT"),
    ("softmax", (1, 70000), -1, {}, 1, _long_row(70000)),
    ("softmax", (1, 10_000_000), -1, {}, 2, "LONG_ROW_SPLIT"),
    ("softmax", (32, 21, 128, 128), 1, {}, 2,
     {("avx2", "float32"): "COLS_TILED", "other": "COLS_BLOCKS",
      ("avx2", "float64"): "COLS_BLOCKS"}),
    # log_softmax: short rows up to SMALL_LOG_MAX = 32 (float32, both tables:
    # SMALL_LOG_SOFTMAX_MAX_F32 = 31), then the two-pass reduction that
    # prefetches the destination (rows of up to 512 a group at a time)
    ("log_softmax", (8192, 1000), -1, {}, 1, {"avx2": "TWO_PASS_PREFETCH", "other": T}),
    ("log_softmax", (262144, 10), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    ("log_softmax", (100, 31), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    ("log_softmax", (100, 32), -1, {}, 1, {("avx2", "float32"): "TWO_PASS_PREFETCH",
                                           ("avx2", "float64"): "SMALL", "other": T}),
    ("log_softmax", (100, 33), -1, {}, 1, {"avx2": "TWO_PASS_PREFETCH", "other": T}),
    ("log_softmax", (100, 63), -1, {}, 1, {"avx2": "TWO_PASS_PREFETCH", "other": T}),
    ("log_softmax", (100, 64), -1, {}, 1, {"avx2": "TWO_PASS_PREFETCH", "other": T}),
    ("log_softmax", (4, 2_000_000), -1, {}, 1, T),
    ("log_softmax", (1, 10_000_000), -1, {}, 2, "LONG_ROW_SPLIT"),
    # non-last axis: the tiles only for many rows a multiple of 4 KiB apart
    ("log_softmax", (32, 21, 128, 128), 1, {}, 2, _cols_conflict(21, 16384)),
    ("log_softmax", (4, 100, 256), 1, {}, 2, "COLS_BLOCKS"),
    ("log_softmax", (4, 64, 4096), 1, {}, 2,
     {("avx2", "float32"): "COLS_TILED", "other": "COLS_BLOCKS",
      ("avx2", "float64"): "COLS_BLOCKS"}),
    # logsumexp (and smooth_max): reductions only
    ("logsumexp", (8192, 1000), -1, {}, 1, T),
    ("logsumexp", (100, 32), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    ("logsumexp", (100, 33), -1, {}, 1, _lanes(T)),
    ("logsumexp", (100, 47), -1, {}, 1, _lanes(T)),
    ("logsumexp", (100, 48), -1, {}, 1, T),
    ("logsumexp", (100, 63), -1, {}, 1, T),
    ("logsumexp", (100, 64), -1, {}, 1, T),
    ("logsumexp", (8, 1000), None, {}, 1, T),
    ("logsumexp", (1, 10_000_000), -1, {}, 2, "LONG_ROW_SPLIT"),
    ("logsumexp", (32, 21, 128, 128), 1, {}, 2, "COLS_BLOCKS"),
    ("smooth_max", (262144, 10), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    # cross-entropy, class targets
    ("cross_entropy", (8192, 1000), -1, {}, 1, {"avx2": "FUSED", "other": T}),
    ("cross_entropy", (8192, 1000), -1, {"grad": False}, 1, T),
    ("cross_entropy", (8192, 1000), -1, {"inplace": True}, 1,
     {"avx2": "TWO_PASS_PREFETCH", "other": T}),
    ("cross_entropy", (262144, 10), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    ("cross_entropy", (1000, 48), -1, {}, 1, _lanes("FUSED")),
    ("cross_entropy", (262144, 10), -1, {"smoothing": True}, 1,
     {"avx2": "SMALL_TWO_PASS", "other": T}),
    ("cross_entropy", (262144, 10), -1, {"grad": False}, 1,
     {"avx2": "SMALL_TWO_PASS", "other": T}),
    ("cross_entropy", (1, 1_000_000), -1, {}, 2, _long_row(1_000_000, seg=500_000)),
    ("cross_entropy", (1, 1_000_000), -1, {"inplace": True}, 2, "LONG_ROW_SPLIT"),
    ("cross_entropy", (1, 10_000_000), -1, {}, 2, "LONG_ROW_SPLIT"),
    ("cross_entropy", (64, 100, 256), 1, {}, 2,
     {("avx2", "float32"): "COLS_TILED", "other": "COLS_BLOCKS",
      ("avx2", "float64"): "COLS_BLOCKS"}),
    ("cross_entropy", (64, 200, 256), 1, {}, 2, "COLS_BLOCKS"),
    ("cross_entropy", (64, 10, 32), 1, {}, 2, "COLS_BLOCKS"),
    # up to 32 classes the blocks, but for more than COLS_TILE_MIN_ROWS rows
    # a multiple of 4 KiB apart (AMD Zen3+: 8)
    ("cross_entropy", (32, 21, 128, 128), 1, {}, 2, _cols_conflict(21, 16384)),
    ("cross_entropy", (4, 32, 4096), 1, {}, 2, _cols_conflict(32, 4096)),
    ("cross_entropy", (4, 33, 4096), 1, {}, 2,
     {("avx2", "float32"): "COLS_TILED", "other": "COLS_BLOCKS",
      ("avx2", "float64"): "COLS_BLOCKS"}),
    # probability targets, logsumexp_backward (the same machinery)
    ("cross_entropy_soft", (262144, 10), -1, {}, 1, {"avx2": "SMALL_TWO_PASS", "other": T}),
    # float32 soft targets never keep float32 terms (FUSED): their gradient is
    # formed in float64 by the ce_soft kernels after the reduction
    ("cross_entropy_soft", (8192, 1000), -1, {}, 1,
     {("avx2", "float32"): "TWO_PASS_PREFETCH", ("avx2", "float64"): "FUSED", "other": T}),
    ("cross_entropy", (8192, 1000), -1, {"smoothing": True}, 1,
     {("avx2", "float32"): "TWO_PASS_PREFETCH", ("avx2", "float64"): "FUSED", "other": T}),
    ("cross_entropy_soft", (1, 1_000_000), -1, {}, 2, "LONG_ROW_SPLIT"),
    ("logsumexp_backward", (262144, 10), -1, {}, 1, {"avx2": "SMALL", "other": T}),
    ("logsumexp_backward", (8192, 1000), -1, {}, 1, {"avx2": "FUSED", "other": T}),
    ("logsumexp_backward", (32, 21, 128, 128), 1, {}, 2,
     {("avx2", "float32"): "COLS_TILED", "other": "COLS_BLOCKS",
      ("avx2", "float64"): "COLS_BLOCKS"}),
    # backward
    ("softmax_backward", (8192, 1000), -1, {}, 2, _bwd_rows("softmax_backward")),
    ("softmax_backward", (262144, 10), -1, {}, 1, _bwd_rows("softmax_backward", 10)),
    ("softmax_backward", (4099, 8), -1, {}, 2, _bwd_rows("softmax_backward", 8)),
    ("softmax_backward", (4099, 16), -1, {}, 2, _bwd_rows("softmax_backward", 16)),
    ("softmax_backward", (4099, 28), -1, {}, 2, _bwd_rows("softmax_backward", 28)),
    ("softmax_backward", (4099, 30), -1, {}, 2, _bwd_rows("softmax_backward", 30)),
    ("softmax_backward", (4099, 2), -1, {}, 2, _bwd_rows("softmax_backward", 2)),
    ("log_softmax_backward", (4099, 16), -1, {}, 2, _bwd_rows("log_softmax_backward", 16)),
    ("log_softmax_backward", (4099, 24), -1, {}, 2, _bwd_rows("log_softmax_backward", 24)),
    ("log_softmax_backward", (4099, 25), -1, {}, 2, _bwd_rows("log_softmax_backward", 25)),
    ("softmax_backward", (64, 100, 256), 1, {}, 2, {"avx2": "COLS_TILED", "other": "COLS_LOOP"}),
    ("softmax_backward", (64, 200, 256), 1, {}, 2, {"avx2": "COLS_BLOCKS", "other": "COLS_LOOP"}),
    ("softmax_backward", (64, 100, 32), 1, {}, 2, {"avx2": "COLS_BLOCKS", "other": "COLS_LOOP"}),
    ("log_softmax_backward", (262144, 10), -1, {}, 1, _bwd_rows("log_softmax_backward", 10)),
    ("log_softmax_backward", (8192, 1000), -1, {}, 2, _bwd_rows("log_softmax_backward")),
    ("log_softmax_backward", (64, 100, 256), 1, {}, 2,
     {"avx2": "COLS_TILED", "other": "COLS_LOOP"}),
    ("log_softmax_backward", (64, 200, 256), 1, {}, 2,
     {"avx2": "COLS_BLOCKS", "other": "COLS_LOOP"}),
]


def _expected(want, isa, dtype):
    if isinstance(want, str):
        return want
    group = "avx2" if isa in SIMD else "other"
    dn = np.dtype(dtype).name
    if callable(want):
        return want(group, dn)
    return want.get((group, dn), want.get(group))


def _id(c):
    op, shape, axis, kw, th, _ = c
    extra = ",".join(k for k, v in kw.items() if v)
    return f"{op}-{'x'.join(map(str, shape))}-ax{axis}-t{th}" + (f"-{extra}" if extra else "")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_expected_path(case, dtype, isa):
    op, shape, axis, kw, threads, want = case
    p = _core.plan(op, shape, dtype, axis, threads=threads, **kw)
    assert p["path"] == _expected(want, isa, dtype), p
    assert p["threads"] in (1, threads)
    assert p["block"] >= 1
    present = {name for name, on in _core.kernel_list() if on[isa]}
    assert set(p["kernels"]) <= present, p


def test_threads_and_blocks():
    p = _core.plan("log_softmax", (8192, 1000), np.float32, threads=1)
    assert (p["threads"], p["block"]) == (1, 32768 // 4000)
    assert _core.plan("log_softmax", (8192, 1000), np.float32, threads=2)["threads"] == 2
    # below PAR_MIN_ELEMENTS no threads are started
    assert _core.plan("softmax", (100, 10), np.float32, threads=4)["threads"] == 1
    # a long row: one segment per thread
    p = _core.plan("logsumexp", (1, 10_000_000), np.float64, threads=4)
    assert (p["path"], p["threads"], p["block"]) == ("LONG_ROW_SPLIT", 4, 2_500_000)
    assert p["layout"] == "rows"
    assert _core.plan("softmax", (32, 21, 128, 128), np.float32, 1)["layout"] == "cols"
    th = _core.thresholds()
    assert th["ROW_BLOCK"] == 64 and th["CSM_SMALL_MAX"] == 64 and th["SMALL_LOG_MAX"] == 32
    assert th["SMALL_LOG_MAX_LANES"] == 63
    assert th["SMALL_LOG_SOFTMAX_MAX_F32"] == 31 and th["SMALL_LSE_MAX_LANES"] == 47


# ---------------------------------------------------------------------------
# running a call: the path the planner reports is the path the call takes

def _inputs(op, shape, axis, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = -1 if axis is None else axis
    C = shape[ax]
    tshape = shape[:ax % len(shape)] + shape[ax % len(shape) + 1:]
    return x, rng, C, tshape


def _call(op, x, axis, kw, rng, C, tshape):
    """Run op on x; returns (results, reference check function)."""
    dt = x.dtype
    if op in ("softmax", "log_softmax", "logsumexp"):
        f = getattr(csoftmax, op)
        r = f(x, axis=axis)

        def verify(got):
            check(op, got, x, axis)
        return r, verify
    if op == "smooth_max":
        r = csoftmax.smooth_max(x, axis=axis)

        def verify(got):
            check("logsumexp", got, x, axis)
        return r, verify
    if op in ("cross_entropy", "cross_entropy_soft"):
        eps = 0.1 if kw.get("smoothing") else 0.0
        if op == "cross_entropy":
            t = rng.integers(0, C, tshape)
        else:
            t = csoftmax.softmax(rng.standard_normal(x.shape).astype(dt), axis=axis)
        grad = kw.get("grad", True)
        xin = x.copy() if kw.get("inplace") else x
        r = csoftmax.cross_entropy(xin, t, axis=axis, reduction="none",
                                   label_smoothing=eps, return_grad=grad,
                                   grad_out=xin if kw.get("inplace") else None)

        def verify(got):
            loss, g = ref_ce(x, t, axis=axis, reduction="none", label_smoothing=eps)
            lo = got[0] if grad else got
            assert_within(np.asarray(lo), loss, "cross_entropy", what="loss")
            if grad:
                assert_within(got[1], g, "cross_entropy_grad", what="grad")
        return r, verify
    if op == "logsumexp_backward":
        g = rng.standard_normal(tshape)
        r = csoftmax.logsumexp_backward(x, g, axis=axis)

        def verify(got):
            assert_within(got, ref_logsumexp_bwd(x, g, axis), "logsumexp_backward")
        return r, verify
    log = op == "log_softmax_backward"
    y = (csoftmax.log_softmax if log else csoftmax.softmax)(x, axis=axis)
    dy = rng.standard_normal(x.shape).astype(dt)
    f = csoftmax.log_softmax_backward if log else csoftmax.softmax_backward
    r = f(y, dy, axis=axis)

    def verify(got):
        want = (ref_log_softmax_bwd if log else ref_softmax_bwd)(y, dy, axis)
        assert_within(got, want, op)
    return r, verify


PLAN_OP = {"smooth_max": "logsumexp"}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", [c for c in CASES if np.prod(c[1]) <= 2_100_000], ids=_id)
def test_call_takes_planned_path(case, dtype, isa):
    op, shape, axis, kw, threads, want = case
    prev = csoftmax.set_num_threads(threads)
    try:
        x, rng, C, tshape = _inputs(op, shape, axis, dtype)
        p = _core.plan(op, shape, dtype, axis, threads=threads, **kw)
        _call(op, x, axis, kw, rng, C, tshape)
        assert _core._last_plan() == (PLAN_OP.get(op, op), p["path"])
        assert p["path"] == _expected(want, isa, dtype)
    finally:
        csoftmax.set_num_threads(prev)


# ---------------------------------------------------------------------------
# forcing every path of every op

ROWS_SHAPES = {"SMALL": (37, 20), "SMALL_TWO_PASS": (37, 50), "FUSED": (9, 1000),
               "TWO_PASS": (9, 1000), "TWO_PASS_PREFETCH": (9, 1000),
               "LONG_ROW_SPLIT": (2, 70001), "LONG_ROW_STORE": (2, 70001),
               "ROWS": (9, 1000), "ROWS_PREFETCH": (9, 1000)}
COLS = ((2, 33, 130), 1)
PATHS = {
    "softmax": ["SMALL", "SMALL_TWO_PASS", "FUSED", "TWO_PASS", "TWO_PASS_PREFETCH",
                "LONG_ROW_SPLIT", "COLS_TILED", "COLS_BLOCKS"],
    "log_softmax": ["SMALL", "SMALL_TWO_PASS", "TWO_PASS", "TWO_PASS_PREFETCH",
                    "LONG_ROW_SPLIT", "COLS_TILED", "COLS_BLOCKS"],
    "logsumexp": ["SMALL", "TWO_PASS", "LONG_ROW_SPLIT", "COLS_BLOCKS"],
    "cross_entropy": ["SMALL", "SMALL_TWO_PASS", "FUSED", "TWO_PASS", "TWO_PASS_PREFETCH",
                      "LONG_ROW_SPLIT", "LONG_ROW_STORE", "COLS_TILED", "COLS_BLOCKS"],
    "cross_entropy_soft": ["SMALL_TWO_PASS", "FUSED", "TWO_PASS", "TWO_PASS_PREFETCH",
                           "LONG_ROW_SPLIT", "LONG_ROW_STORE", "COLS_TILED", "COLS_BLOCKS"],
    "logsumexp_backward": ["SMALL", "SMALL_TWO_PASS", "FUSED", "TWO_PASS",
                           "TWO_PASS_PREFETCH", "LONG_ROW_SPLIT", "LONG_ROW_STORE",
                           "COLS_TILED", "COLS_BLOCKS"],
    "softmax_backward": ["SMALL", "ROWS", "ROWS_PREFETCH", "COLS_TILED", "COLS_BLOCKS",
                         "COLS_LOOP"],
    "log_softmax_backward": ["SMALL", "ROWS", "ROWS_PREFETCH", "COLS_TILED", "COLS_BLOCKS",
                             "COLS_LOOP"],
}
FORCED = [(op, path) for op, paths in PATHS.items() for path in paths]


def _forced_case(op, path):
    if path.startswith("COLS"):
        return COLS
    shape = ROWS_SHAPES[path]
    if op == "log_softmax" and path == "SMALL":
        shape = (37, 50)      # past SMALL_LOG_MAX: the kernels take up to 64
    return shape, -1


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op,path", FORCED, ids=[f"{o}-{p}" for o, p in FORCED])
def test_forced_path(op, path, dtype, isa):
    shape, axis = _forced_case(op, path)
    prev = csoftmax.set_num_threads(2)
    try:
        x, rng, C, tshape = _inputs(op, shape, axis, dtype, seed=len(path))
        natural = _core.plan(op, shape, dtype, axis)["path"]
        try:
            with _core.forced(op, path):
                p = _core.plan(op, shape, dtype, axis)
        except ValueError:
            # refused for this ISA (at forcing time) or this call (by plan):
            # then the call is refused too, and nothing else is affected
            with pytest.raises(ValueError):
                with _core.forced(op, path):
                    _call(op, x, axis, {}, np.random.default_rng(0), C, tshape)
            return
        assert p["path"] == path
        r0, verify = _call(op, x, axis, {}, np.random.default_rng(1), C, tshape)
        assert _core._last_plan()[1] == natural
        verify(r0)
        other = "logsumexp" if op != "logsumexp" else "softmax"
        other_plan = _core.plan(other, shape, dtype, axis)
        with _core.forced(op, path):
            r1, _ = _call(op, x, axis, {}, np.random.default_rng(1), C, tshape)
            assert _core._last_plan() == (op, path)
            # only op is forced: the others keep their plans
            assert _core.plan(other, shape, dtype, axis) == other_plan
        verify(r1)
        if path in ("TWO_PASS_PREFETCH", "ROWS_PREFETCH"):
            # a prefetch hint: the bits of the path without it
            with _core.forced(op, path[:-len("_PREFETCH")]):
                r2, _ = _call(op, x, axis, {}, np.random.default_rng(1), C, tshape)
            for a, b in zip(r1 if isinstance(r1, tuple) else (r1,),
                            r2 if isinstance(r2, tuple) else (r2,)):
                np.testing.assert_array_equal(a, b)
    finally:
        csoftmax.set_num_threads(prev)


def test_forcing_is_per_op_and_restored():
    before = {op: _core._override(op) for op in _core.OP_NAMES}
    with _core.forced("log_softmax", "TWO_PASS"):
        assert _core.plan("log_softmax", (9, 1000), np.float32)["path"] == "TWO_PASS"
        assert _core._override("softmax") == before["softmax"]
        with _core.forced("log_softmax", avoid="SMALL"):
            assert _core._override("log_softmax") == ("TWO_PASS", ("SMALL",))
        assert _core._override("log_softmax") == ("TWO_PASS", ())
    assert {op: _core._override(op) for op in _core.OP_NAMES} == before


def test_forcing_refusals():
    with pytest.raises(ValueError):
        with _core.forced("softmax", "NO_SUCH_PATH"):
            pass
    with pytest.raises(ValueError):
        with _core.forced("no_such_op", "TWO_PASS"):
            pass
    with pytest.raises(ValueError):          # not a path of the op
        with _core.forced("logsumexp", "FUSED"):
            pass
    with _core.forced("softmax", "TWO_PASS"):
        with pytest.raises(ValueError):      # a rows path for a column call
            csoftmax.softmax(np.zeros((2, 3, 4), np.float32), axis=1)
    if _core.isa() in SIMD:
        with _core.forced("softmax", "SMALL"):
            with pytest.raises(ValueError, match="longer"):
                csoftmax.softmax(np.zeros((2, 65), np.float32))
        with _core.forced("log_softmax", "COLS_TILED"):
            with pytest.raises(ValueError, match="float32"):
                csoftmax.log_softmax(np.zeros((2, 3, 4)), axis=1)
    prev = _core._use_isa("scalar")
    try:
        for op, path in [("softmax", "SMALL"), ("softmax", "FUSED"),
                         ("cross_entropy", "LONG_ROW_STORE")]:
            with pytest.raises(ValueError, match="lacks"):
                with _core.forced(op, path):
                    pass
    finally:
        _core._use_isa(prev)


def test_avoid_takes_the_next_path(isa):
    if isa not in SIMD:
        pytest.skip("the fused / short-row paths are AVX2 only")
    with _core.forced("softmax", avoid=["FUSED"]):
        assert _core.plan("softmax", (9, 1000), np.float32)["path"] == "TWO_PASS_PREFETCH"
        with _core.forced("softmax", avoid=["TWO_PASS_PREFETCH"]):
            assert _core.plan("softmax", (9, 1000), np.float32)["path"] == "TWO_PASS"
    with _core.unfused():
        assert _core.plan("cross_entropy", (37, 20), np.float32)["path"] == "SMALL_TWO_PASS"
        assert _core.plan("softmax_backward", (4, 100, 256), np.float32, 1)["path"] == "COLS_LOOP"


# ---------------------------------------------------------------------------
# every kernel the table has is reached by some case

# where= masks: one path per layout (float32 softmax rows: the fused masked
# kernel where the table has it); the call reaches it
MASKED_CASES = [
    ("softmax", (8192, 1000), -1, {("avx2", "float32"): "MASKED_FUSED",
                                   ("avx2", "float64"): "MASKED_ROWS",
                                   "other": "MASKED_ROWS"}),
    ("softmax", (262144, 10), -1, {("avx2", "float32"): "MASKED_FUSED",
                                   ("avx2", "float64"): "MASKED_ROWS",
                                   "other": "MASKED_ROWS"}),
    ("softmax", (4, 2_000_000), -1, _masked_long(2_000_000)),
    ("log_softmax", (8192, 1000), -1, "MASKED_ROWS"),
    ("logsumexp", (8192, 1000), -1, "MASKED_ROWS"),
    ("softmax", (32, 21, 128), 1, "MASKED_COLS"),
    ("log_softmax", (32, 21, 128), 0, "MASKED_COLS"),
    ("logsumexp", (32, 21, 128), 1, "MASKED_COLS"),
    ("softmax_backward", (512, 100), -1, "MASKED_ROWS"),
    ("log_softmax_backward", (512, 100), -1, "MASKED_ROWS"),
    ("softmax_backward", (32, 21, 128), 1, "MASKED_COLS"),
    ("log_softmax_backward", (64, 100, 32), 1, "MASKED_COLS"),
    ("cross_entropy", (8192, 1000), -1, {("avx2", "float32"): "MASKED_FUSED",
                                         ("avx2", "float64"): "MASKED_ROWS",
                                         "other": "MASKED_ROWS"}),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", MASKED_CASES, ids=lambda c: f"{c[0]}-{'x'.join(map(str, c[1]))}-ax{c[2]}")
def test_masked_path(case, dtype, isa):
    op, shape, axis, want = case
    p = _core.plan(op, shape, dtype, axis, where=True)
    assert p["path"] == _expected(want, isa, dtype), p
    present = {name for name, on in _core.kernel_list() if on[isa]}
    assert set(p["kernels"]) <= present, p
    if np.prod(shape) > 3_000_000:
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.random(shape) < 0.5
    fn = getattr(csoftmax, op)
    if op == "cross_entropy":
        t = np.argmax(np.where(w, 1.0, 0.0), axis=axis)
        fn(x, t, axis=axis, where=w, return_grad=True)
    elif op.endswith("_backward"):
        fn(x, x, axis=axis, where=w)
    else:
        fn(x, axis=axis, where=w)
    assert _core._last_plan() == (op, p["path"])


def test_every_kernel_is_planned(isa):
    named = set()
    for dtype in FLOATS:
        for op, shape, axis, kw, threads, _ in CASES:
            named.update(_core.plan(op, shape, dtype, axis, threads=threads, **kw)["kernels"])
        for op, shape, axis, _ in MASKED_CASES:
            named.update(_core.plan(op, shape, dtype, axis, where=True)["kernels"])
            if op == "softmax" and axis == -1:
                with _core.forced(op, "MASKED_ROWS"):
                    named.update(_core.plan(op, shape, dtype, axis, where=True)["kernels"])
        for op, path in FORCED:
            shape, axis = _forced_case(op, path)
            try:
                with _core.forced(op, path):
                    named.update(_core.plan(op, shape, dtype, axis, threads=2)["kernels"])
            except ValueError:
                pass
    # the conversions of the half-precision path (HALF_BLOCKS)
    half = [np.float16]
    try:
        import ml_dtypes
        half.append(ml_dtypes.bfloat16)
    except ImportError:
        named.update(["cvt_bf16_to_f32", "cvt_f32_to_bf16"])
    for dtype in half:
        named.update(_core.plan("softmax", (64, 100), dtype)["kernels"])
    present = [name for name, on in _core.kernel_list() if on[isa]]
    missing = [k for k in present if k not in named]
    assert not missing, f"kernels of the {isa} table that no planned path calls: {missing}"


def test_fused_beyond_l2_on_zen4_and_later():
    """By default the AMD rule is on exactly on AMD Zen4 and later (with an
    L3 in sysfs)."""
    from csoftmax._cpu import amd_zen, cpuinfo_fields
    zen = amd_zen(cpuinfo_fields())
    want = zen is not None and zen >= 4 and _core._cache_bytes(3) > 0
    assert _core.thresholds()["FUSED_BEYOND_L2"] == want


def test_softmax_bwd_prefetch_off_on_zen4_and_later():
    """By default softmax_backward's rows fetch the next row except on AMD
    Zen4 and later (SOFTMAX_BWD_PREFETCH)."""
    from csoftmax._cpu import amd_zen, cpuinfo_fields
    zen = amd_zen(cpuinfo_fields())
    assert _core.thresholds()["SOFTMAX_BWD_PREFETCH"] == (zen is None or zen < 4)


@pytest.mark.parametrize("on", [False, True])
@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_bwd_prefetch_switch(on, dtype, isa):
    """SOFTMAX_BWD_PREFETCH picks ROWS_PREFETCH or ROWS for softmax_backward
    (log_softmax_backward keeps ROWS_PREFETCH), where the table has the
    prefetching kernels; the bits do not depend on it."""
    rng = np.random.default_rng(5)
    y = csoftmax.softmax(rng.standard_normal((37, 1000)).astype(dtype), axis=-1)
    g = rng.standard_normal(y.shape).astype(dtype)
    base = csoftmax.softmax_backward(y, g, axis=-1)
    _core._init_l2_limits(softmax_bwd_prefetch=on)
    try:
        assert _core.thresholds()["SOFTMAX_BWD_PREFETCH"] == on
        has = isa in SIMD
        for op in ("softmax_backward", "log_softmax_backward"):
            pf = has and (on or op == "log_softmax_backward")
            want = "ROWS_PREFETCH" if pf else "ROWS"
            for threads in (1, 2):
                assert _core.plan(op, y.shape, dtype, threads=threads)["path"] == want
        prev = csoftmax.set_num_threads(2)
        try:
            r = csoftmax.softmax_backward(y, g, axis=-1)
        finally:
            csoftmax.set_num_threads(prev)
        assert _core._last_plan() == ("softmax_backward",
                                      "ROWS_PREFETCH" if has and on else "ROWS")
        np.testing.assert_array_equal(r, base)
    finally:
        _core._init_l2_limits()


def test_cols_tile_min_rows_default():
    """COLS_TILE_MIN_ROWS is 8 on AMD Zen3 and later, 32 elsewhere."""
    from csoftmax._cpu import amd_zen, cpuinfo_fields
    zen = amd_zen(cpuinfo_fields())
    want = 8 if zen is not None and zen >= 3 else 32
    assert _core.thresholds()["COLS_TILE_MIN_ROWS"] == want


@pytest.mark.parametrize("min_rows", [8, 32])
def test_cols_tile_min_rows_switch(min_rows, isa):
    """COLS_TILE_MIN_ROWS moves float32 log_softmax and class cross-entropy
    along a non-last axis between the blocks and the tiles where the class
    rows are a multiple of 4 KiB apart (not elsewhere, not float64); the
    call takes the planned path and both agree with the float64 reference."""
    rng = np.random.default_rng(3)
    shape = (3, 21, 1024, 2)                    # rows 8 KiB apart, 21 of them
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    t = rng.integers(0, 21, size=(3, 1024, 2))
    _core._init_l2_limits(cols_tile_min_rows=min_rows)
    try:
        assert _core.thresholds()["COLS_TILE_MIN_ROWS"] == min_rows
        tiled = isa in SIMD and min_rows < 21
        want = "COLS_TILED" if tiled else "COLS_BLOCKS"
        for op in ("log_softmax", "cross_entropy"):
            assert _core.plan(op, shape, np.float32, axis=1)["path"] == want
            assert _core.plan(op, shape, np.float64, axis=1)["path"] == "COLS_BLOCKS"
            # 1000 columns: rows 4000 bytes apart, no conflict
            assert _core.plan(op, (3, 21, 1000), np.float32, axis=1)["path"] == "COLS_BLOCKS"
        got = csoftmax.log_softmax(x, axis=1)
        assert _core._last_plan() == ("log_softmax", want)
        check("log_softmax", got, x, axis=1)
        lo, g = csoftmax.cross_entropy(x, t, axis=1, reduction="none",
                                       return_grad=True)
        assert _core._last_plan() == ("cross_entropy", want)
        loss, grad = ref_ce(x, t, axis=1, reduction="none")
        assert_within(np.asarray(lo), loss, "cross_entropy", what="loss")
        assert_within(np.asarray(g), grad, "cross_entropy_grad", what="grad")
    finally:
        _core._init_l2_limits()


@pytest.mark.parametrize("fused_beyond_l2", [False, True])
def test_fused_max_bytes_from_l2(fused_beyond_l2):
    """FUSED_MAX_BYTES = L2 / 8 of this machine, clamped to [64 KiB, 4 MiB]
    (4 MiB where sysfs does not say); with the AMD rule max(L3 / 4, 4 MiB),
    and float64 rows of any length."""
    l2 = _core._l2_bytes()
    _core._init_l2_limits(l2, fused_beyond_l2)
    try:
        _check_l2_limits(l2, fused_beyond_l2)
    finally:
        _core._init_l2_limits()


def _check_l2_limits(l2, fused_beyond_l2):
    def part(d):
        return 4194304 if l2 <= 0 else min(max(l2 // d, 65536), 4194304)

    th = _core.thresholds()
    fm = th["FUSED_MAX_BYTES"]
    assert th["FUSED_BEYOND_L2"] == fused_beyond_l2
    l3 = _core._cache_bytes(3)
    assert fm == (max(l3 // 4, 4194304) if fused_beyond_l2 else part(8))
    assert th["PREFETCH_MAX_BYTES"] == part(4)
    assert th["PREFETCH_MAX_LOG_BYTES"] == part(2)
    assert th["FUSED_MAX_F64"] == (sys.maxsize // 8 if fused_beyond_l2 else
                                   part(4) if _core.isa() == "avx512" else 4194304)
    # the path of a row on each side of every limit (one thread: no split
    # rows; where L2 is unknown the limits coincide)
    if _core.isa() in SIMD:
        def path(op, n, dt=np.float32):
            return _core.plan(op, (4, n), dt, threads=1)["path"]

        pf, pfl = th["PREFETCH_MAX_BYTES"], th["PREFETCH_MAX_LOG_BYTES"]

        def want(op, n):
            if op == "log_softmax":
                return "TWO_PASS_PREFETCH" if 4 * n <= pfl else "TWO_PASS"
            return ("FUSED" if 4 * n <= fm else
                    "TWO_PASS_PREFETCH" if 4 * n <= pf else "TWO_PASS")
        for op in ("softmax", "cross_entropy", "log_softmax"):
            for lim in (fm, pf, pfl):
                for n in (lim // 4, lim // 4 + 1):
                    assert path(op, n) == want(op, n), (op, n)
        nd = th["FUSED_MAX_F64"] // 8
        assert path("softmax", nd, np.float64) == "FUSED"
        if not fused_beyond_l2:
            assert path("softmax", nd + 1, np.float64) == "TWO_PASS"
        assert path("softmax", nd + 1, np.float64) != "FUSED"
