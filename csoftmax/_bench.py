"""Side-by-side benchmark behind ``python -m csoftmax bench``.

Every competitor runs in this process on the same array.  Times are
best-of-K (the minimum over repeats, after one warm-up call that is not
timed), stopped early once a per-measurement time budget is spent, and
reported in nanoseconds per input element.

Floors, measured in the same run on the same array:

* ``copy`` -- ``np.copyto(out, x)`` into a preallocated array: the memory
  traffic any op that writes an array of the input's size must pay;
* ``sum``  -- ``np.sum(x, axis)``: the floor of a reduction (LogSumExp).

The ops are a registry (:data:`OPS`): a name, the floor it is judged
against, optional per-case inputs, and for each peer a *builder* that takes
the :class:`Case` and returns a zero-argument callable (or ``None`` when that
peer has no such op).  Adding an op is one :func:`register` call.
"""
import gc
import math
import os
import platform
import re
import sys
import time

import numpy as np

PEERS = ("numpy", "scipy", "torch", "jax", "csoftmax")
RIVALS = ("numpy", "scipy", "torch", "jax")       # peers csoftmax is compared to
PEER_TITLES = {"numpy": "numpy formula", "scipy": "scipy.special",
               "torch": "torch", "jax": "jax", "csoftmax": "csoftmax"}
# what each column times (the legend printed under the table)
PEER_LEGEND = {
    "numpy": "the textbook max-shifted formula written with NumPy ufuncs, per op below "
             "(what one writes without a library)",
    "scipy": "scipy.special.softmax / log_softmax / logsumexp (no cross-entropy or backward)",
    "torch": "torch.softmax / log_softmax / logsumexp, F.cross_entropy forward+backward, "
             "torch._softmax_backward_data, on torch.from_numpy(x) (no copy), torch threads "
             "= --threads",
    "jax": "jax.nn.softmax / log_softmax, jax.scipy.special.logsumexp, value_and_grad for "
           "cross-entropy, each under jax.jit, on a jax CPU array",
    "csoftmax": "this package (csoftmax.softmax, ...), threads = --threads; results of 1 MiB "
                "or more reuse the memory of earlier ones (its output cache, "
                "csoftmax.set_output_cache; CSOFTMAX_OUTPUT_CACHE=0 gives every call fresh "
                "pages)",
}
# how to add a peer that is not installed: CPU builds (the default torch
# wheel on Linux pulls the CUDA build and ~20 nvidia wheels)
PEER_INSTALL = {
    "scipy": "pip install scipy",
    "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu",
    "jax": "pip install jax",
}

DEFAULT_SHAPES = "8192x1000,512x32000,64x256000,262144x10"
# full run only: one long row (split across threads) and a non-last axis
FULL_EXTRA_SHAPES = "1x10000000,32x21x128x128:1"
SMOOTH_MAX_SHARPNESS = 2.0

# timing settings: (repeats K, seconds of budget per measurement)
FULL_TIMING = (7, 0.35)
QUICK_TIMING = (3, 0.08)


# ---------------------------------------------------------------------------
# optional peers

class Peers:
    """Lazily imported optional competitors; ``None`` when not installed."""

    def __init__(self, use=PEERS, threads=None):
        self.use = set(use)
        self.threads = threads
        self._mods = {}

    def get(self, name):
        if name not in self._mods:
            self._mods[name] = self._import(name) if name in self.use else None
        return self._mods[name]

    def _import(self, name):
        try:
            if name == "numpy":
                return np
            if name == "scipy":
                import scipy.special
                return scipy.special
            if name == "torch":
                import torch
                import torch.nn.functional  # noqa: F401
                return torch
            if name == "jax":
                if self.threads == 1 and "jax" not in sys.modules:
                    # XLA's CPU pool cannot be resized later; ask for one thread
                    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + (
                        " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"))
                import jax
                import jax.nn  # noqa: F401
                import jax.numpy  # noqa: F401
                import jax.scipy.special  # noqa: F401
                # float64 inputs must stay float64 (jax narrows them by default)
                jax.config.update("jax_enable_x64", True)
                return jax
            if name == "csoftmax":
                import csoftmax
                return csoftmax
        except Exception:        # not installed, or broken install: leave it out
            return None
        raise KeyError(name)

    def versions(self):
        out = {}
        for name in PEERS:
            m = self.get(name)
            if m is None:
                continue
            if name == "scipy":
                import scipy
                m = scipy
            out[name] = getattr(m, "__version__", "?")
        return out


# ---------------------------------------------------------------------------
# one input array and the views/extra inputs the peers need

DTYPES = ("float32", "float64", "float16", "bfloat16")


def bfloat16():
    """ml_dtypes.bfloat16's dtype, or None without ml_dtypes."""
    from ._validate import bfloat16_dtype
    return bfloat16_dtype()


class Case:
    """An input of `shape` and `dtype` with the op running along `axis`.

    ``x`` is a NumPy array; ``t`` (torch view via ``torch.from_numpy``),
    ``j`` (jax copy) and per-op extras are created on first use and cached.
    """

    def __init__(self, shape, axis, dtype, peers, seed=0):
        self.shape = tuple(shape)
        self.axis = axis % len(shape)
        self.dtype = bfloat16() if dtype == "bfloat16" else np.dtype(dtype)
        self.peers = peers
        self.rng = np.random.default_rng(seed)
        self.x = self.rng.standard_normal(self.shape, dtype=np.float64).__imul__(3.0)
        self.x = self.x.astype(self.dtype)
        self.n_classes = self.shape[self.axis]
        self._cache = {}

    @property
    def size(self):
        return self.x.size

    @property
    def label(self):
        s = "x".join(str(d) for d in self.shape)
        return s if self.axis == len(self.shape) - 1 else f"{s}:{self.axis}"

    def cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def t(self):
        torch = self.peers.get("torch")
        if self.dtype.name == "bfloat16":
            return self.cached("t", lambda: torch.from_numpy(self.x.view(np.int16))
                               .view(torch.bfloat16))
        return self.cached("t", lambda: torch.from_numpy(self.x))

    @property
    def j(self):
        jnp = self.peers.get("jax").numpy
        return self.cached("j", lambda: jnp.asarray(self.x).block_until_ready())

    @property
    def target(self):
        """Integer class labels: the input's shape without the class axis."""
        def make():
            shp = self.shape[:self.axis] + self.shape[self.axis + 1:]
            return self.rng.integers(0, self.n_classes, size=shp, dtype=np.int64)
        return self.cached("target", make)

    @property
    def y(self):
        """softmax(x) along the axis, in x's dtype (input of the backward ops)."""
        def make():
            import csoftmax
            return csoftmax.softmax(self.x, axis=self.axis)
        return self.cached("y", make)

    @property
    def logy(self):
        def make():
            import csoftmax
            return csoftmax.log_softmax(self.x, axis=self.axis)
        return self.cached("logy", make)

    @property
    def dy(self):
        """An upstream gradient of the input's shape."""
        return self.cached("dy", lambda: self.rng.standard_normal(self.shape).astype(self.dtype))

    def release(self):
        self._cache.clear()
        self.x = None


# ---------------------------------------------------------------------------
# op registry

class Op:
    def __init__(self, name, floor, builders, available=None, doc=""):
        self.name = name
        self.floor = floor                   # "copy" or "sum"
        self.builders = builders             # peer -> builder(case, module) -> callable|None
        self._available = available          # callable(csoftmax module) -> bool
        self.doc = doc

    def available(self, csoftmax):
        return self._available is None or bool(self._available(csoftmax))


OPS = {}


def register(name, *, floor="copy", available=None, doc="", **builders):
    """Add an op: ``builders[peer](case, module)`` returns a zero-argument
    callable that runs the op once (or None if that peer lacks it)."""
    unknown = set(builders) - set(PEERS)
    if unknown:
        raise ValueError(f"unknown peer(s) {sorted(unknown)}; peers are {PEERS}")
    OPS[name] = Op(name, floor, builders, available, doc)
    return OPS[name]


def _jit(jax, f, *args):
    g = jax.jit(f)
    return lambda: g(*args).block_until_ready()


# softmax -------------------------------------------------------------------
def _np_softmax(x, ax):
    m = x.max(ax, keepdims=True)
    e = np.exp(x - m)
    e /= e.sum(ax, keepdims=True)
    return e


register(
    "softmax", doc="e = exp(x - max); e / sum(e)",
    numpy=lambda c, m: lambda: _np_softmax(c.x, c.axis),
    scipy=lambda c, m: lambda: m.softmax(c.x, axis=c.axis),
    torch=lambda c, m: lambda: m.softmax(c.t, dim=c.axis),
    jax=lambda c, m: _jit(m, lambda a: m.nn.softmax(a, axis=c.axis), c.j),
    csoftmax=lambda c, m: lambda: m.softmax(c.x, axis=c.axis),
)


# log_softmax ---------------------------------------------------------------
def _np_log_softmax(x, ax):
    s = x - x.max(ax, keepdims=True)
    s -= np.log(np.exp(s).sum(ax, keepdims=True))
    return s


register(
    "log_softmax", doc="x - max - log(sum(exp(x - max)))",
    numpy=lambda c, m: lambda: _np_log_softmax(c.x, c.axis),
    scipy=lambda c, m: lambda: m.log_softmax(c.x, axis=c.axis),
    torch=lambda c, m: lambda: m.log_softmax(c.t, dim=c.axis),
    jax=lambda c, m: _jit(m, lambda a: m.nn.log_softmax(a, axis=c.axis), c.j),
    csoftmax=lambda c, m: lambda: m.log_softmax(c.x, axis=c.axis),
)


# logsumexp -----------------------------------------------------------------
def _np_logsumexp(x, ax, k=1.0):
    mx = x.max(ax, keepdims=True)
    s = np.exp((x - mx) * k) if k != 1.0 else np.exp(x - mx)
    return np.squeeze(mx, ax) + np.log(s.sum(ax)) / k


register(
    "logsumexp", floor="sum", doc="max + log(sum(exp(x - max)))",
    numpy=lambda c, m: lambda: _np_logsumexp(c.x, c.axis),
    scipy=lambda c, m: lambda: m.logsumexp(c.x, axis=c.axis),
    torch=lambda c, m: lambda: m.logsumexp(c.t, dim=c.axis),
    jax=lambda c, m: _jit(m, lambda a: m.scipy.special.logsumexp(a, axis=c.axis), c.j),
    csoftmax=lambda c, m: lambda: m.logsumexp(c.x, axis=c.axis),
)


# smooth_max ----------------------------------------------------------------
_K = SMOOTH_MAX_SHARPNESS
register(
    "smooth_max", floor="sum", doc=f"max + log(sum(exp(k*(x - max))))/k with k={_K:g}",
    numpy=lambda c, m: lambda: _np_logsumexp(c.x, c.axis, _K),
    scipy=lambda c, m: lambda: m.logsumexp(c.x * _K, axis=c.axis) / _K,
    torch=lambda c, m: lambda: m.logsumexp(c.t * _K, dim=c.axis) / _K,
    jax=lambda c, m: _jit(m, lambda a: m.scipy.special.logsumexp(a * _K, axis=c.axis) / _K, c.j),
    csoftmax=lambda c, m: lambda: m.smooth_max(c.x, axis=c.axis, sharpness=_K),
)


# cross_entropy (forward + gradient, mean reduction, integer targets) -------
def _np_cross_entropy(x, target, ax):
    """Loss and d loss / d x: grad = (softmax - onehot) / n_samples."""
    idx = np.expand_dims(target, ax)
    logp = _np_log_softmax(x, ax)
    loss = -np.take_along_axis(logp, idx, ax).mean()
    grad = np.exp(logp, out=logp)
    np.put_along_axis(grad, idx, np.take_along_axis(grad, idx, ax) - 1, ax)
    grad /= target.size
    return loss, grad


def _torch_cross_entropy(c, torch):
    leaf = c.cached("t_leaf", lambda: torch.from_numpy(c.x).requires_grad_(True))
    tgt = c.cached("t_target", lambda: torch.from_numpy(c.target))
    F = torch.nn.functional

    def run():
        leaf.grad = None
        F.cross_entropy(torch.movedim(leaf, c.axis, 1), tgt).backward()
    return run


def _jax_cross_entropy(c, jax):
    jnp = jax.numpy
    ax = c.axis

    def loss(a, t):
        logp = jax.nn.log_softmax(a, axis=ax)
        return -jnp.take_along_axis(logp, jnp.expand_dims(t, ax), ax).mean()
    g = jax.jit(jax.value_and_grad(loss))
    tj = c.cached("j_target", lambda: jnp.asarray(c.target))
    return lambda: jax.block_until_ready(g(c.j, tj))


register(
    "cross_entropy", doc="forward + gradient, mean over rows, integer labels: "
        "logp = x - max - log(sum(exp(x - max))); loss = -mean(logp[label]); "
        "grad = (exp(logp) - onehot) / n_rows",
    available=lambda cs: hasattr(cs, "cross_entropy"),
    numpy=lambda c, m: lambda: _np_cross_entropy(c.x, c.target, c.axis),
    torch=_torch_cross_entropy,
    jax=_jax_cross_entropy,
    csoftmax=lambda c, m: lambda: m.cross_entropy(c.x, c.target, axis=c.axis, return_grad=True),
)


# backward (VJP) ops: y = softmax(x) (or log_softmax), dy upstream ---------
def _np_softmax_backward(y, dy, ax):
    return y * (dy - (dy * y).sum(ax, keepdims=True))


def _np_log_softmax_backward(logy, dy, ax):
    return dy - np.exp(logy) * dy.sum(ax, keepdims=True)


def _torch_backward(c, torch, log):
    y = c.cached("t_logy" if log else "t_y",
                 lambda: torch.from_numpy(c.logy if log else c.y))
    dy = c.cached("t_dy", lambda: torch.from_numpy(c.dy))
    f = torch._log_softmax_backward_data if log else torch._softmax_backward_data
    return lambda: f(dy, y, c.axis, y.dtype)


def _jax_backward(c, jax, log):
    jnp = jax.numpy
    y = c.cached("j_logy" if log else "j_y",
                 lambda: jnp.asarray(c.logy if log else c.y).block_until_ready())
    dy = c.cached("j_dy", lambda: jnp.asarray(c.dy).block_until_ready())
    ax = c.axis
    if log:
        return _jit(jax, lambda a, g: g - jnp.exp(a) * g.sum(ax, keepdims=True), y, dy)
    return _jit(jax, lambda a, g: a * (g - (g * a).sum(ax, keepdims=True)), y, dy)


register(
    "softmax_backward", doc="y * (dy - sum(dy * y)), y = softmax(x)",
    available=lambda cs: hasattr(cs, "softmax_backward"),
    numpy=lambda c, m: lambda: _np_softmax_backward(c.y, c.dy, c.axis),
    torch=lambda c, m: _torch_backward(c, m, False),
    jax=lambda c, m: _jax_backward(c, m, False),
    csoftmax=lambda c, m: lambda: m.softmax_backward(c.y, c.dy, axis=c.axis),
)

register(
    "log_softmax_backward", doc="dy - exp(logy) * sum(dy), logy = log_softmax(x)",
    available=lambda cs: hasattr(cs, "log_softmax_backward"),
    numpy=lambda c, m: lambda: _np_log_softmax_backward(c.logy, c.dy, c.axis),
    torch=lambda c, m: _torch_backward(c, m, True),
    jax=lambda c, m: _jax_backward(c, m, True),
    csoftmax=lambda c, m: lambda: m.log_softmax_backward(c.logy, c.dy, axis=c.axis),
)

# --quick runs these; a full run runs every registered op
DEFAULT_OPS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")


# ---------------------------------------------------------------------------
# timing

def measure(fns, repeat, budget, min_repeat=2, min_sample=1e-3, step=None):
    """Best time of one call of each ``fns[key]()`` in ns.

    Each callable gets one untimed warm-up (jit, page faults, caches) and one
    calibration call; calls faster than `min_sample` seconds are looped so a
    sample lasts about that long (per-call time = sample / loops, as timeit
    does).  Then all callables are timed round-robin -- one sample each per
    round, so load from elsewhere on the machine hits the floor and every peer
    alike -- for up to `repeat` samples in all, stopping early once
    ``budget * len(fns)`` seconds are spent and `min_repeat` samples exist.
    The minimum per callable is returned.
    """
    loops, best = {}, {}
    for key, fn in fns.items():
        if step:
            step(f"warm-up {key}")
        fn()
        t0 = time.perf_counter_ns()
        fn()
        one = max(time.perf_counter_ns() - t0, 1)
        loops[key] = max(1, int(min_sample * 1e9 / one))
        best[key] = one
    t_end = time.perf_counter() + budget * len(fns)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for done in range(1, max(repeat, 1)):
            if done >= min_repeat and time.perf_counter() > t_end:
                break
            if step:
                step(f"round {done + 1}/{repeat}")
            for key, fn in fns.items():
                k = loops[key]
                t0 = time.perf_counter_ns()
                for _ in range(k):
                    fn()
                best[key] = min(best[key], (time.perf_counter_ns() - t0) / k)
    finally:
        if gc_was:
            gc.enable()
    return best


def best_of(fn, repeat, budget, min_repeat=2, min_sample=1e-3):
    """:func:`measure` for a single callable."""
    return measure({0: fn}, repeat, budget, min_repeat, min_sample)[0]


def floor_copy(x):
    out = np.empty_like(x)
    return lambda: np.copyto(out, x)


def floor_sum(x, axis):
    return lambda: np.sum(x, axis=axis)


# ---------------------------------------------------------------------------
# parsing

def parse_shapes(spec):
    """'8192x1000,32x21x128x128:1' -> [((8192, 1000), -1), ((32, 21, 128, 128), 1)]."""
    out = []
    for item in spec.split(","):
        item = item.strip().lower()
        if not item:
            continue
        dims, _, ax = item.partition(":")
        try:
            shape = tuple(int(float(d)) for d in dims.split("x"))
            axis = int(ax) if ax else -1
        except ValueError:
            raise ValueError(f"bad shape {item!r}: expected e.g. 8192x1000 or 32x21x128x128:1") from None
        if not shape or any(d <= 0 for d in shape):
            raise ValueError(f"bad shape {item!r}: dimensions must be positive integers")
        if not -len(shape) <= axis < len(shape):
            raise ValueError(f"bad shape {item!r}: axis {axis} out of range for {len(shape)} dims")
        out.append((shape, axis))
    if not out:
        raise ValueError("no shapes given")
    return out


def parse_list(spec, allowed, what):
    items = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}")
    if not items:
        raise ValueError(f"no {what} given")
    return items


# ---------------------------------------------------------------------------
# the run

def cpu_model(cpuinfo=None):
    """The CPU's model name, with AMD's Zen generation appended where the
    name does not give it ("AMD EPYC (Zen4)"): the bench report keys its
    BENCHMARKS.md block by this name.  cpuinfo: a /proc/cpuinfo text (by
    default this machine's)."""
    from ._cpu import amd_zen, cpuinfo_fields
    f = cpuinfo_fields(cpuinfo)
    name = f.get("model name")
    if not name:
        return platform.processor() or None
    zen = amd_zen(f)
    if zen is not None and not re.search(r"\bzen\s*\d", name, re.I):
        return f"{name} (Zen{zen})"
    return name


def environment(peers):
    import csoftmax
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": peers.versions(),
        "config": csoftmax.get_config(),
    }


class _Progress:
    """Progress on stderr: one overwritten line on a terminal, else a line
    per step."""

    def __init__(self, total, stream, enabled=True):
        self.total, self.stream, self.enabled = total, stream, enabled
        self.t0 = time.perf_counter()
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()

    def show(self, text):
        if not self.enabled:
            return
        msg = f"bench {time.perf_counter() - self.t0:5.1f}s  {text}"
        if self.tty:
            self.stream.write("\r\033[K" + msg[:150])
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _set_affinity(cpus):
    """Put every thread of this process on `cpus` (Linux: each task of
    /proc/self/task; elsewhere the calling thread's affinity)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for t in tids:
        try:
            os.sched_setaffinity(t, cpus)
        except OSError:          # a thread that ended meanwhile
            pass


def pin_process(n):
    """Pin the whole process -- csoftmax's OpenMP team, torch's and XLA's
    pools -- to `n` of the CPUs it may use, so that an n-thread run gives
    every library the same n cores (XLA ignores its thread flags).
    Returns (previous CPUs, chosen CPUs), or None where the OS has no
    affinity call or n covers every CPU already."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cur = sorted(os.sched_getaffinity(0))
    if n >= len(cur):
        return None
    chosen = set(cur[-n:])
    _set_affinity(chosen)
    return set(cur), chosen


def run(ops=None, shapes=None, dtypes=("float32",), threads=1, quick=False,
        repeat=None, budget=None, peers=PEERS, progress=sys.stderr):
    """Run the benchmark; returns a dict (the ``--json`` document).

    Times are ns per input element (``None``: peer not installed or lacking
    the op).  ``ratio_to_floor`` is csoftmax over the op's floor (``copy`` or
    ``sum``); ``speedup`` is the fastest rival's time over csoftmax's.
    """
    import csoftmax
    # before the peers start their thread pools (threads created later
    # inherit the affinity; the ones already running are moved too)
    pinned = pin_process(threads)
    pe = Peers(peers, threads)
    if ops is None:
        ops = [o for o in (DEFAULT_OPS if quick else OPS) if OPS[o].available(csoftmax)]
    for o in ops:
        if not OPS[o].available(csoftmax):
            raise ValueError(f"op {o!r} is not available in this csoftmax ({csoftmax.__version__})")
    if shapes is None:
        shapes = DEFAULT_SHAPES if quick else DEFAULT_SHAPES + "," + FULL_EXTRA_SHAPES
    if isinstance(shapes, str):
        shapes = parse_shapes(shapes)
    k_def, b_def = QUICK_TIMING if quick else FULL_TIMING
    repeat = k_def if repeat is None else int(repeat)
    budget = b_def if budget is None else float(budget)
    if repeat < 1:
        raise ValueError("repeat must be >= 1")

    not_selected = [p for p in RIVALS if p not in pe.use]
    prev_threads = csoftmax.get_num_threads()
    torch = pe.get("torch")
    prev_torch = torch.get_num_threads() if torch is not None else None
    csoftmax.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)

    active = [p for p in PEERS if pe.get(p) is not None]
    cases = [(dt, sh, ax) for dt in dtypes for sh, ax in shapes]
    prog = _Progress(len(cases), progress, progress is not None)
    results = []
    t_start = time.perf_counter()
    try:
        for i, (dt, shape, axis) in enumerate(cases):
            case = Case(shape, axis, dt, pe)
            n = case.size
            head = f"{case.label} {case.dtype.name} ({i + 1}/{len(cases)})"
            fns = {"floor copy": floor_copy(case.x)}
            if any(OPS[o].floor == "sum" for o in ops) and case.dtype.itemsize > 2:
                fns["floor sum"] = floor_sum(case.x, case.axis)
            for o in ops:
                for p in active:
                    if p in OPS[o].builders:
                        try:
                            fn = OPS[o].builders[p](case, pe.get(p))
                            if fn is not None and case.dtype.itemsize == 2:
                                fn()      # a peer without 16-bit support is left out
                        except Exception:
                            if case.dtype.itemsize != 2:
                                raise
                            fn = None
                        if fn is not None:
                            fns[f"{o} {p}"] = fn
            ns = measure(fns, repeat, budget, step=lambda msg: prog.show(f"{head}: {msg}"))
            fns = None
            ns = {k: v / n for k, v in ns.items()}
            floors = {"copy": ns["floor copy"], "sum": ns.get("floor sum")}
            for o in ops:
                op = OPS[o]
                times = {p: ns.get(f"{o} {p}") for p in PEERS}
                cs = times["csoftmax"]
                # 16-bit data: the floor is the copy of the 2-byte array (NumPy's
                # float16 sum is emulated, no floor)
                fkind = "copy" if case.dtype.itemsize == 2 else op.floor
                fl = floors[fkind]
                rivals = {p: times[p] for p in RIVALS if times[p] is not None}
                best = min(rivals, key=rivals.get) if rivals else None
                results.append({
                    "op": o, "shape": list(case.shape), "axis": case.axis,
                    "label": case.label, "dtype": case.dtype.name, "n_elements": n,
                    "floor_copy": floors["copy"], "floor_sum": floors["sum"],
                    "floor_kind": fkind, "times": times,
                    "ratio_to_floor": cs / fl if cs and fl else None,
                    "best_peer": best,
                    "speedup": rivals[best] / cs if best and cs else None,
                })
            case.release()
            del case
            gc.collect()
    finally:
        prog.close()
        csoftmax.set_num_threads(prev_threads)
        if torch is not None:
            torch.set_num_threads(prev_torch)
        if pinned is not None:
            _set_affinity(pinned[0])

    return {
        "unit": "ns/element",
        "timing": {"method": "best of K samples (min), round-robin over floor and peers, "
                                 "after one untimed warm-up", "repeat": repeat,
                   "budget_s": budget, "quick": bool(quick),
                   "wall_s": round(time.perf_counter() - t_start, 2)},
        "threads": threads,
        # the CPUs the whole process was pinned to (None: not pinned)
        "pinned_cpus": sorted(pinned[1]) if pinned is not None else None,
        "peers": active,
        # selected (all by default, or --peers) but not importable
        "missing_peers": [p for p in PEERS if p not in active and p not in not_selected],
        # left out by --peers: installed or not, never imported
        "not_selected_peers": not_selected,
        "env": environment(pe),
        "results": results,
    }


# ---------------------------------------------------------------------------
# table

def _fmt(v):
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def format_table(doc):
    env = doc["env"]
    cfg = env["config"]
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        f"csoftmax {cfg['version']} (isa {cfg['isa']}, openmp {cfg['openmp']}) -- "
        f"{env['cpu'] or 'unknown CPU'}, {env['cpu_count']} CPUs, threads={doc['threads']}",
        f"versions: python {env['python']}, {vers}",
    ]
    if doc.get("pinned_cpus"):
        lines.append(f"pinned: the whole process (csoftmax, numpy, scipy, torch, jax) to "
                     f"CPU{'s' if len(doc['pinned_cpus']) > 1 else ''} "
                     f"{', '.join(map(str, doc['pinned_cpus']))} -- every library on the "
                     f"same {doc['threads']} core{'s' if doc['threads'] > 1 else ''}")
    if "jax" in doc["peers"]:
        lines.append("jax: one thread requested via XLA_FLAGS when threads=1 (XLA ignores "
                     "it; the pinning above holds it to the same cores)")
    missing = doc["missing_peers"]
    if missing:
        lines.append("not installed: " + ", ".join(missing) + " (their columns are left out)")
        lines += [f"  add {p}: {PEER_INSTALL[p]}" for p in missing if p in PEER_INSTALL]
    if doc.get("not_selected_peers"):
        lines.append("not selected (--peers): " + ", ".join(doc["not_selected_peers"]))
    t = doc["timing"]
    lines.append(f"ns per element, best of {t['repeat']} (budget {t['budget_s']} s per "
                 f"measurement); the columns are defined under the table")
    lines.append("")
    peers = [p for p in PEERS if p in doc["peers"]]
    head = ["op", "shape", "dtype", "floor"] + [PEER_TITLES[p] for p in peers] + \
           ["cs/floor", "speed-up"]
    rows = []
    for r in doc["results"]:
        fl = r["floor_sum"] if r["floor_kind"] == "sum" else r["floor_copy"]
        floor_s = _fmt(fl) + (" sum" if r["floor_kind"] == "sum" else "")
        ratio = "-" if r["ratio_to_floor"] is None else f"{r['ratio_to_floor']:.2f}x"
        sp = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x {r['best_peer']}"
        rows.append([r["op"], r["label"], r["dtype"], floor_s] +
                    [_fmt(r["times"][p]) for p in peers] + [ratio, sp])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    left = 3

    def fmt_row(row):
        return "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
    lines.append(fmt_row(head))
    lines.append("  ".join("-" * w for w in widths))
    lines += [fmt_row(r) for r in rows]
    lines.append("")
    lines += legend(doc)
    return "\n".join(lines)


def _item(key, text, width, indent=2):
    import textwrap
    return textwrap.wrap(text, 100, initial_indent=" " * indent + key.ljust(width) + " ",
                         subsequent_indent=" " * (indent + width + 1))


def legend(doc):
    """Lines defining every column of :func:`format_table`'s table."""
    peers = [p for p in PEERS if p in doc["peers"]]
    cols = [("floor", "np.copyto(out, x) into a preallocated array: the memory traffic of "
                      "reading x and writing a result of its size; 'sum': np.sum(x, axis), "
                      "the floor of a reduction")]
    cols += [(PEER_TITLES[p], PEER_LEGEND[p]) for p in peers]
    cols += [("cs/floor", "csoftmax time / floor (1.00x = as fast as copying the array)"),
             ("speed-up", "fastest other column's time / csoftmax's, and which one "
                          "(>1 = csoftmax faster; '-': no other column has the op)")]
    lines = ["columns (ns per input element, lower is faster):"]
    for k, v in cols:
        lines += _item(k, v, 13)
    if "numpy" in peers:
        ops = list(dict.fromkeys(r["op"] for r in doc["results"]))
        lines.append("numpy formula, per op (max and sums along the axis):")
        for o in ops:
            if o in OPS:
                lines += _item(o, OPS[o].doc, 20)
    return lines
