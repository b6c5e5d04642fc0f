"""The cost of where= masks against the unmasked call (BENCHMARKS.md, "Masks").

    taskset -c 1 python tools/bench_masks.py [ce]

float32 8192x1000, 1 thread; a random bool mask of x's shape and a (1000,)
mask broadcast along rows; best of 40 round-robin rounds of the calling
thread's CPU time (time.thread_time: robust on a loaded machine, where wall
time moves by 2x).  "ce" adds cross_entropy with return_grad=True.
"""
import sys
import time

import numpy as np

import csoftmax as cs

cs.set_num_threads(1)
rng = np.random.default_rng(0)
B, V = 8192, 1000
x = rng.standard_normal((B, V)).astype(np.float32)
full = rng.random((B, V)) < 0.8
bc = rng.random(V) < 0.8
t = rng.integers(0, V, B)
t[~bc[t]] = np.flatnonzero(bc)[0]   # targets on kept classes
out = np.empty_like(x)
src = np.empty_like(x)
dst = np.empty_like(x)


def run(fs, rounds=40):
    best = [1e9] * len(fs)
    for _ in range(rounds):
        for k, f in enumerate(fs):
            t0 = time.thread_time()
            f()
            best[k] = min(best[k], time.thread_time() - t0)
    return best


mc, = run([lambda: np.copyto(dst, src)])
print(f"isa {cs.get_config()['isa']}  memcpy {mc*1e3:.2f} ms ({mc/x.size*1e9:.3f} ns/el)")
ops = [("softmax", lambda w: cs.softmax(x, out=out, where=w)),
       ("log_softmax", lambda w: cs.log_softmax(x, out=out, where=w)),
       ("logsumexp", lambda w: cs.logsumexp(x, axis=-1, where=w))]
if "ce" in sys.argv:
    ops.append(("cross_entropy", lambda w: cs.cross_entropy(x, t, where=w, return_grad=True)))
for name, f in ops:
    u, a, b = run([lambda: f(None), lambda: f(full), lambda: f(bc)])
    print(f"{name:14s} unmasked {u*1e3:6.2f} ms ({u/x.size*1e9:.3f} ns/el, {u/mc:.2f}x memcpy)  "
          f"full mask {a*1e3:6.2f} ms ({a/u:.2f}x)  (V,) mask {b*1e3:6.2f} ms ({b/u:.2f}x)")
