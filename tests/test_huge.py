"""More than 2^31 elements: no int32 overflow in counts, strides or offsets.
Marked slow (x + out = 17 GB of float32); run with ``pytest -m slow``."""
import numpy as np
import pytest

import csoftmax

N = 2 ** 31 + 7


@pytest.mark.slow
def test_more_than_2_31_elements():
    x = np.empty(N, dtype=np.float32)
    # cheap deterministic values in [-4, 4): a sawtooth, so every region differs
    x[:] = 0
    step = 1 << 24
    base = (np.arange(step, dtype=np.float32) % 1021) / np.float32(128) - np.float32(4)
    for s in range(0, N, step):
        e = min(s + step, N)
        x[s:e] = base[:e - s]
    x[N - 1] = 9.0                                   # the max lives beyond 2^31
    lse = float(csoftmax.logsumexp(x))
    m = 9.0
    S = 0.0
    for s in range(0, N, step):
        S += float(np.exp(x[s:s + step].astype(np.float64) - m).sum())
    want = m + np.log(S)
    assert abs(lse - want) <= 4 * np.spacing(np.float32(want))
    y = csoftmax.softmax(x)
    tot = sum(float(y[s:s + step].astype(np.float64).sum()) for s in range(0, N, step))
    assert abs(tot - 1) <= 1e-5
    for i in (0, 12345, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 3, N - 1):
        assert abs(float(y[i]) - np.exp(float(x[i]) - want)) <= 4 * np.spacing(y[i]) + 1e-45
    del y
    ly = csoftmax.log_softmax(x)
    for i in (0, 2 ** 31, N - 1):
        assert abs(float(ly[i]) - (float(x[i]) - want)) <= 4 * np.spacing(abs(ly[i]))
    del ly
    # 2-D: 5 rows of 429496731 -- 2^31 + 7 = 5 * 429496731
    x2 = x.reshape(5, -1)
    l2 = csoftmax.logsumexp(x2, axis=1)
    for r in (0, 4):
        row = x2[r].astype(np.float64)
        mr = row.max()
        wr = mr + np.log(np.exp(row - mr).sum())
        assert abs(float(l2[r]) - wr) <= 4 * np.spacing(np.float32(wr))
    y2 = csoftmax.softmax(x2, axis=0)               # column layout, 2^31 elements
    c = y2[:, [0, 429496730]].astype(np.float64).sum(axis=0)
    assert np.all(np.abs(c - 1) <= 1e-6)
