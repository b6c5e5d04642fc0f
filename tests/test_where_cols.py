"""where= along a non-last axis (the masked column kernels).

The SIMD tables copy a block of columns into a tile (masked elements ->
-inf for the reduction, -> the column max for the write pass), run the
unmasked column kernels on it and set every masked output to its fill
(src/simd/masked_cols_f32_body.h); columns with kept NaN / inf or nothing
kept rely on the unmasked kernels' special values being the masked ones.  Checked against the masked
reference of test_where (the float64 reference on the kept subset; 4 ULP
float32, 8 ULP + slack float64) on every table, with:
  - poisoned masked entries (NaN, +-inf, +-1e30) and kept extremes (+-1e30,
    +-inf, NaN, every kept element -inf, nothing kept) in columns among
    ordinary ones, so a vector group holds both kinds;
  - widths around the vector length and the 64-column tile, many rows (the
    tile then comes from malloc), temperature, 2 threads;
  - out= x, and a mask broadcast over the columns (scalar kernels).
"""
import numpy as np
import pytest

import csoftmax as cs
from csoftmax import _core

from test_where import FILL, OPS, _poison, check_masked

OPS_W = ["softmax", "log_softmax", "logsumexp"]


def _extreme_columns(x, w):
    """Kept extremes in columns 1..6 of the middle axis' slices."""
    x[:, 0, 1] = 1e30
    x[:, 1, 2] = -1e30
    x[:, 2, 3] = np.inf
    x[:, 3, 4] = np.nan
    x[:, :, 5] = -np.inf
    w[:, :, 6] = False                 # nothing kept
    w[:, :4, 1:5] = True
    w[:, 0, 5] = True


@pytest.mark.parametrize("op", OPS_W)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inner", [15, 16, 17, 40, 64, 65, 130])
def test_columns_reference(isa, op, dtype, inner, rng):
    x = (rng.standard_normal((3, 21, inner)) * 4).astype(dtype)
    w = rng.random(x.shape) < 0.7
    _extreme_columns(x, w)
    xp = np.where(w, x, _poison(x, w, rng))
    got = OPS[op](xp, axis=1, where=w)
    check_masked(op, got, x, w, axis=1, what=f"{op} inner={inner}")


@pytest.mark.parametrize("op", OPS_W)
def test_many_rows_temperature_threads(isa, threads, op, rng):
    """400 rows: a tile of 400 x 64 floats is larger than the stack buffer."""
    x = (rng.standard_normal((2, 400, 100)) * 3).astype(np.float32)
    w = rng.random(x.shape) < 0.5
    w[0, :, 7] = False
    xp = _poison(x, w, rng)
    if op == "logsumexp":
        check_masked(op, OPS[op](xp, axis=1, where=w), x, w, axis=1)
    else:
        got = OPS[op](xp, axis=1, where=w, temperature=0.7)
        check_masked(op, got, x, w, axis=1, temperature=0.7)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_in_place_with_redone_columns(isa, op, rng):
    """out=x with the extreme columns: the same bits as into a new array."""
    x = (rng.standard_normal((2, 9, 70)) * 3).astype(np.float32)
    w = rng.random(x.shape) < 0.6
    _extreme_columns(x, w)
    want = OPS[op](x, axis=1, where=w)
    y = x.copy()
    assert OPS[op](y, axis=1, where=w, out=y) is y
    np.testing.assert_array_equal(y, want)
    check_masked(op, y, x, w, axis=1)


@pytest.mark.parametrize("op", OPS_W)
def test_mask_broadcast_over_columns(isa, op, rng):
    x = (rng.standard_normal((2, 11, 48)) * 3).astype(np.float32)
    w = rng.random((2, 11, 1)) < 0.6
    w[1, :, 0] = False
    wb = np.broadcast_to(w, x.shape)
    got = OPS[op](_poison(x, wb, rng), axis=1, where=w)
    check_masked(op, got, x, wb, axis=1)


def test_simd_tables_serve_masked_columns():
    """The float32 masked column kernels are listed as the AVX2 and AVX-512
    tables' own (csoftmax_kernels.def: Y, not the scalar S), and the plan
    names them."""
    from test_kernel_list import _def_list
    cols = {f: c for f, _, c in _def_list()}
    for k in ("lse_cols_masked_f32", "softmax_cols_masked_f32",
              "log_softmax_cols_masked_f32"):
        for isa in ("avx2", "avx512"):
            assert cols[k][isa] == "Y", (k, isa, cols[k])
    p = _core.plan("softmax", (4, 21, 128), "float32", 1, where=True)
    assert p["path"] == "MASKED_COLS"
    assert "softmax_cols_masked_f32" in p["kernels"]
