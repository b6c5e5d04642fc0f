"""Rows of 32 to 1000 elements, float32, one thread on one core: csoftmax
(softmax / log_softmax with out=, logsumexp and cross_entropy fwd+grad as
usually called) against torch and jax; ns/element, the best of 9 calls per
library, the libraries alternated within each shape.  BENCHMARKS.md,
"Session 14".  torch and jax are required.

    python tools/bench_midrows.py [V,V,...]
"""
import os, sys, time
if hasattr(os, "sched_setaffinity"):      # every library on the same one core
    _cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_cpu})
    print(f"pinned to CPU {_cpu}", file=sys.stderr)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
import numpy as np, csoftmax as cs, torch, jax, jax.numpy as jnp
import torch.nn.functional as F
torch.set_num_threads(1); cs.set_num_threads(1)
def best(f, k=9):
    b = 1e9
    for _ in range(k):
        t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
    return b
jsm = jax.jit(lambda v: jax.nn.softmax(v, axis=-1)); jlsm = jax.jit(lambda v: jax.nn.log_softmax(v, axis=-1))
jlse = jax.jit(lambda v: jax.scipy.special.logsumexp(v, axis=-1))
def jce(v, t):
    return -jnp.take_along_axis(jax.nn.log_softmax(v, -1), t[:, None], -1).sum()
jceg = jax.jit(jax.value_and_grad(jce))
ns = [int(v) for v in sys.argv[1].split(",")] if len(sys.argv) > 1 else [32, 48, 64, 100, 128, 256, 512, 1000]
print("| V | op | csoftmax | torch | jax | best peer / csoftmax |")
print("|---|---|---|---|---|---|")
for n in ns:
    R = 2621440 // n
    x = np.random.default_rng(0).standard_normal((R, n)).astype(np.float32)
    tg = np.random.default_rng(1).integers(0, n, R)
    xt, tt = torch.from_numpy(x), torch.from_numpy(tg)
    xj, tj = jnp.asarray(x), jnp.asarray(tg)
    o = np.empty_like(x)
    def tce():
        xr = xt.clone().requires_grad_(); F.cross_entropy(xr, tt, reduction="sum").backward()
    cases = {
        "softmax": (lambda: cs.softmax(x, out=o), lambda: torch.softmax(xt, -1), lambda: jsm(xj).block_until_ready()),
        "log_softmax": (lambda: cs.log_softmax(x, out=o), lambda: torch.log_softmax(xt, -1), lambda: jlsm(xj).block_until_ready()),
        "logsumexp": (lambda: cs.logsumexp(x, axis=-1), lambda: torch.logsumexp(xt, -1), lambda: jlse(xj).block_until_ready()),
        "cross_entropy": (lambda: cs.cross_entropy(x, tg, reduction="sum", return_grad=True), tce,
                          lambda: jax.block_until_ready(jceg(xj, tj))),
    }
    for op, fs in cases.items():
        for f in fs: f()
        t = [1e9] * 3
        for _ in range(3):
            for k, f in enumerate(fs):
                t[k] = min(t[k], best(f, 3))
        c, pt, pj = (v / x.size * 1e9 for v in t)
        print(f"| {n} | {op} | {c:.3f} | {pt:.3f} | {pj:.3f} | {min(pt, pj) / c:.2f}x |", flush=True)
