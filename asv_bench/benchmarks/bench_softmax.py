"""asv benchmarks: the softmax family over dtype x shape x threads.

Only csoftmax's public API is used, so the suite also runs against older
commits (``asv continuous main HEAD``).  Shapes are ``BxV`` strings; a ``:A``
suffix runs along axis A (``32x21x128x128:1`` is the non-last-axis case).

* ``time_*``   wall time of one call (asv's own repeat/statistics);
* ``track_ratio_to_floor`` csoftmax time / ``np.copyto`` time of the same
  array (``np.sum`` over the axis for the reductions), both best-of-5 and
  measured round-robin in the same process -- the figure the performance
  targets are written in (float32 only unless ``CSOFTMAX_ASV_FULL=1``);
* ``Backward``  softmax_backward / log_softmax_backward / logsumexp_backward;
* cross-entropy benchmarks are skipped (NotImplementedError) on commits
  without ``csoftmax.cross_entropy``.
"""
import math
import os
import time

import numpy as np

import csoftmax

SHAPES = ["8192x1000", "512x32000", "64x256000", "262144x10", "1x10000000",
          "32x21x128x128:1"]
DTYPES = ["float32", "float64"]
THREADS = [1, 2]
# the ratio track runs 12 timed calls per point; float32 only unless asked
FULL = os.environ.get("CSOFTMAX_ASV_FULL") == "1"
TRACK_DTYPES = DTYPES if FULL else ["float32"]
SHARPNESS = 2.0

_cache = {}


def parse_shape(label):
    dims, _, ax = label.partition(":")
    return tuple(int(d) for d in dims.split("x")), (int(ax) if ax else -1)


def make_input(label, dtype):
    """Standard-normal logits (times 3) of the given shape; cached per process."""
    key = (label, dtype)
    if key not in _cache:
        _cache.clear()                       # keep at most one big array alive
        shape, axis = parse_shape(label)
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(shape) * 3.0).astype(dtype)
        _cache[key] = (x, axis)
    return _cache[key]


def _ops():
    ops = {
        "softmax": (lambda x, ax: csoftmax.softmax(x, axis=ax), "copy"),
        "log_softmax": (lambda x, ax: csoftmax.log_softmax(x, axis=ax), "copy"),
        "logsumexp": (lambda x, ax: csoftmax.logsumexp(x, axis=ax), "sum"),
        "smooth_max": (lambda x, ax: csoftmax.smooth_max(x, axis=ax, sharpness=SHARPNESS), "sum"),
    }
    if hasattr(csoftmax, "cross_entropy"):
        ops["cross_entropy"] = (
            lambda x, ax: csoftmax.cross_entropy(x, _target(x, ax), axis=ax, return_grad=True),
            "copy")
    return ops


def _target(x, axis):
    key = ("target", x.shape, axis)
    if key not in _cache:
        ax = axis % x.ndim
        shp = x.shape[:ax] + x.shape[ax + 1:]
        _cache[key] = np.random.default_rng(1).integers(0, x.shape[ax], size=shp)
    return _cache[key]


class _Threads:
    """Common setup: the input and the thread count (restored afterwards)."""
    params = [DTYPES, SHAPES, THREADS]
    param_names = ["dtype", "shape", "threads"]
    timeout = 600

    def setup(self, dtype, shape, threads):
        self.x, self.axis = make_input(shape, dtype)
        self._prev = csoftmax.get_num_threads()
        csoftmax.set_num_threads(threads)

    def teardown(self, *params):
        if getattr(self, "_prev", None) is not None:     # setup may have skipped
            csoftmax.set_num_threads(self._prev)


class Softmax(_Threads):
    """Forward ops, one call each, returning a new array/scalar."""

    def time_softmax(self, dtype, shape, threads):
        csoftmax.softmax(self.x, axis=self.axis)

    def time_log_softmax(self, dtype, shape, threads):
        csoftmax.log_softmax(self.x, axis=self.axis)

    def time_logsumexp(self, dtype, shape, threads):
        csoftmax.logsumexp(self.x, axis=self.axis)

    def time_smooth_max(self, dtype, shape, threads):
        csoftmax.smooth_max(self.x, axis=self.axis, sharpness=SHARPNESS)


class Backward(_Threads):
    """Backward (VJP) ops given the forward output and an upstream gradient."""

    def setup(self, dtype, shape, threads):
        if not hasattr(csoftmax, "softmax_backward"):
            raise NotImplementedError("backward ops not in this commit")
        super().setup(dtype, shape, threads)
        x, ax = self.x, self.axis
        self.y = csoftmax.softmax(x, axis=ax)
        self.logy = csoftmax.log_softmax(x, axis=ax)
        self.dy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
        self.dl = np.random.default_rng(3).standard_normal(
            np.sum(x, axis=ax).shape).astype(dtype)

    def time_softmax_backward(self, dtype, shape, threads):
        csoftmax.softmax_backward(self.y, self.dy, axis=self.axis)

    def time_log_softmax_backward(self, dtype, shape, threads):
        csoftmax.log_softmax_backward(self.logy, self.dy, axis=self.axis)

    def time_logsumexp_backward(self, dtype, shape, threads):
        csoftmax.logsumexp_backward(self.x, self.dl, axis=self.axis)


class Floor(_Threads):
    """The memory floors the ratios are taken against (threads unused)."""
    params = [DTYPES, SHAPES]
    param_names = ["dtype", "shape"]

    def setup(self, dtype, shape):
        self.x, self.axis = make_input(shape, dtype)
        self.out = np.empty_like(self.x)

    def teardown(self, *params):
        pass

    def time_copy(self, dtype, shape):
        np.copyto(self.out, self.x)

    def time_sum(self, dtype, shape):
        np.sum(self.x, axis=self.axis)


class CrossEntropy(_Threads):
    """Fused cross-entropy forward + gradient (mean reduction, int targets)."""

    def setup(self, dtype, shape, threads):
        if not hasattr(csoftmax, "cross_entropy"):
            raise NotImplementedError("csoftmax.cross_entropy not in this commit")
        super().setup(dtype, shape, threads)
        self.target = _target(self.x, self.axis)

    def time_cross_entropy_fwd_grad(self, dtype, shape, threads):
        csoftmax.cross_entropy(self.x, self.target, axis=self.axis, return_grad=True)


class CrossEntropyMemory:
    """Peak memory of cross_entropy fwd+grad with a fresh gradient array
    versus ``grad_out=logits`` (gradient written over the logits)."""
    params = [["new", "grad_out=logits"]]
    param_names = ["grad"]
    shape = "8192x1000"

    def setup(self, grad):
        if not hasattr(csoftmax, "cross_entropy"):
            raise NotImplementedError("csoftmax.cross_entropy not in this commit")
        x, self.axis = make_input(self.shape, "float32")
        self.target = _target(x, self.axis)

    def peakmem_cross_entropy_fwd_grad(self, grad):
        x = make_input(self.shape, "float32")[0].copy()
        kw = {"grad_out": x} if grad == "grad_out=logits" else {}
        csoftmax.cross_entropy(x, self.target, axis=self.axis, return_grad=True, **kw)


def _best_round_robin(fns, repeat=5):
    best = [math.inf] * len(fns)
    for f in fns:
        f()                                          # warm-up
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


class RatioToFloor(_Threads):
    """csoftmax time / memory-floor time on the same array, same process."""
    params = [list(_ops()), TRACK_DTYPES, SHAPES, THREADS]
    param_names = ["op", "dtype", "shape", "threads"]
    unit = "ratio to floor"

    def setup(self, op, dtype, shape, threads):
        ops = _ops()
        if op not in ops:
            raise NotImplementedError(f"{op} not in this commit")
        super().setup(dtype, shape, threads)
        self.fn, self.floor = ops[op]

    def track_ratio_to_floor(self, op, dtype, shape, threads):
        x, ax = self.x, self.axis
        if self.floor == "sum":
            floor = lambda: np.sum(x, axis=ax)       # noqa: E731
        else:
            out = np.empty_like(x)
            floor = lambda: np.copyto(out, x)        # noqa: E731
        t_floor, t_op = _best_round_robin([floor, lambda: self.fn(x, ax)])
        return t_op / t_floor


# ---------------------------------------------------------------------------
# every kernel path, forced (issue #17): the planner's paths timed one by one
# through csoftmax._core.forced, so a regression in a path the default plan
# does not take on these shapes (the unfused write, column blocks, ...) shows.

# shape of each path's cell (threads 2 for the long-row splits: one segment
# per thread); "op:path" pairs a path cannot serve on this ISA/dtype skip
PATH_SHAPES = {"SMALL": "262144x10", "SMALL_TWO_PASS": "262144x10",
               "FUSED": "8192x1000", "TWO_PASS": "8192x1000",
               "TWO_PASS_PREFETCH": "8192x1000", "LONG_ROW_SPLIT": "1x10000000",
               "LONG_ROW_STORE": "1x10000000", "ROWS": "8192x1000",
               "ROWS_PREFETCH": "8192x1000",
               "COLS_BLOCKS": "32x21x128x128:1", "COLS_TILED": "32x21x128x128:1",
               "COLS_LOOP": "32x21x128x128:1"}
OP_PATHS = [
    "softmax:SMALL", "softmax:SMALL_TWO_PASS", "softmax:FUSED", "softmax:TWO_PASS",
    "softmax:TWO_PASS_PREFETCH", "softmax:LONG_ROW_SPLIT", "softmax:COLS_TILED",
    "softmax:COLS_BLOCKS",
    "log_softmax:SMALL", "log_softmax:SMALL_TWO_PASS", "log_softmax:TWO_PASS",
    "log_softmax:TWO_PASS_PREFETCH", "log_softmax:LONG_ROW_SPLIT",
    "log_softmax:COLS_TILED", "log_softmax:COLS_BLOCKS",
    "logsumexp:SMALL", "logsumexp:TWO_PASS", "logsumexp:LONG_ROW_SPLIT",
    "logsumexp:COLS_BLOCKS",
    "cross_entropy:SMALL", "cross_entropy:SMALL_TWO_PASS", "cross_entropy:FUSED",
    "cross_entropy:TWO_PASS", "cross_entropy:TWO_PASS_PREFETCH",
    "cross_entropy:LONG_ROW_SPLIT", "cross_entropy:LONG_ROW_STORE",
    "cross_entropy:COLS_TILED", "cross_entropy:COLS_BLOCKS",
    "logsumexp_backward:SMALL", "logsumexp_backward:FUSED",
    "logsumexp_backward:COLS_TILED", "logsumexp_backward:COLS_BLOCKS",
    "softmax_backward:ROWS", "softmax_backward:ROWS_PREFETCH", "softmax_backward:COLS_TILED",
    "softmax_backward:COLS_BLOCKS", "softmax_backward:COLS_LOOP",
    "log_softmax_backward:ROWS", "log_softmax_backward:ROWS_PREFETCH",
    "log_softmax_backward:COLS_TILED",
    "log_softmax_backward:COLS_BLOCKS", "log_softmax_backward:COLS_LOOP",
]


class KernelPaths:
    """One call of `op` with the planner forced onto `path` (private API:
    skipped on commits without csoftmax._core.forced)."""
    params = [OP_PATHS, DTYPES]
    param_names = ["op_path", "dtype"]
    timeout = 600

    def setup(self, op_path, dtype):
        from csoftmax import _core
        if not hasattr(_core, "forced"):
            raise NotImplementedError("no planner in this commit")
        op, path = op_path.split(":")
        label = PATH_SHAPES[path]
        shape, axis = parse_shape(label)
        threads = 2 if path.startswith("LONG_ROW") else 1
        try:
            with _core.forced(op, path):
                _core.plan(op, shape, dtype, axis, threads=threads)
        except ValueError as e:
            raise NotImplementedError(str(e)) from None
        x, axis = make_input(label, dtype)
        self._prev = csoftmax.get_num_threads()
        csoftmax.set_num_threads(threads)
        if op == "cross_entropy":
            t = _target(x, axis)
            self.fn = lambda: csoftmax.cross_entropy(x, t, axis=axis, return_grad=True)
        elif op == "logsumexp_backward":
            dl = np.random.default_rng(3).standard_normal(np.sum(x, axis=axis).shape)
            self.fn = lambda: csoftmax.logsumexp_backward(x, dl, axis=axis)
        elif op.endswith("_backward"):
            log = op.startswith("log")
            y = (csoftmax.log_softmax if log else csoftmax.softmax)(x, axis=axis)
            dy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
            f = getattr(csoftmax, op)
            self.fn = lambda: f(y, dy, axis=axis)
        else:
            f = getattr(csoftmax, op)
            self.fn = lambda: f(x, axis=axis)
        self._forced = _core.forced(op, path)
        self._forced.__enter__()

    def teardown(self, *params):
        if getattr(self, "_forced", None) is not None:
            self._forced.__exit__(None, None, None)
            self._forced = None
        if getattr(self, "_prev", None) is not None:
            csoftmax.set_num_threads(self._prev)

    def time_path(self, op_path, dtype):
        self.fn()


class Masks:
    """where= masks (issue #16): the masked call against the unmasked one,
    float32 8192x1000, 1 thread; mask "none" (the unmasked call), "full"
    (a bool mask of x's shape) or "vocab" (shape (1000,), broadcast along
    rows).  Skipped on commits without where=."""
    params = [["softmax", "log_softmax", "logsumexp", "cross_entropy"],
              ["none", "full", "vocab"]]
    param_names = ["op", "mask"]

    def setup(self, op, mask):
        import inspect
        if "where" not in inspect.signature(csoftmax.softmax).parameters:
            raise NotImplementedError("no where= in this commit")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8192, 1000)).astype(np.float32)
        w = {"none": None, "full": rng.random(x.shape) < 0.8,
             "vocab": rng.random(1000) < 0.8}[mask]
        self._prev = csoftmax.get_num_threads()
        csoftmax.set_num_threads(1)
        out = np.empty_like(x)
        if op == "cross_entropy":
            keep = np.ones(x.shape, bool) if w is None else np.broadcast_to(w, x.shape)
            t = np.argmax(np.where(keep, rng.random(x.shape), -1), axis=1)
            self.fn = lambda: csoftmax.cross_entropy(x, t, where=w, return_grad=True)
        elif op == "logsumexp":
            self.fn = lambda: csoftmax.logsumexp(x, axis=-1, where=w)
        else:
            f = getattr(csoftmax, op)
            self.fn = lambda: f(x, out=out, where=w)

    def teardown(self, *params):
        csoftmax.set_num_threads(self._prev)

    def time_masked(self, op, mask):
        self.fn()


class LogProbInputs:
    """Inputs whose LSE is 0 -- log-probabilities (log_softmax's output),
    the common input of a re-normalisation or a KL term -- against random
    logits, float32, 1 thread.  Their LSE cancels (s*max + log_sum ~ 0), so
    the float32 reductions redo those rows' sums in float64 (issue #18: the
    redo was a scalar libm loop, 13-20x the normal row's time)."""
    params = [["logsumexp", "log_softmax"], ["8192x1000", "32x21x128x128:1"],
              ["logits", "logprobs"]]
    param_names = ["op", "shape", "inputs"]

    def setup(self, op, shape, inputs):
        x, axis = make_input(shape, np.float32)
        if inputs == "logprobs":
            x = csoftmax.log_softmax(x, axis=axis)
        self._prev = csoftmax.get_num_threads()
        csoftmax.set_num_threads(1)
        f = getattr(csoftmax, op)
        self.fn = lambda: f(x, axis=axis)

    def teardown(self, *params):
        csoftmax.set_num_threads(self._prev)

    def time_call(self, op, shape, inputs):
        self.fn()


class CallOverhead:
    """One call on 16 float32 elements: what the Python facade (validation,
    planning, the overlap checks of ``out=``) costs beside the kernel;
    ``np.exp`` of the same array is the reference.  Session 16 measured the
    backward ops at 20-33 us here on an AMD Zen3 VM, two thirds of it two
    ``np.prod`` calls over the shape (now ``math.prod``): 7-8 us."""
    params = [["softmax", "softmax out=", "logsumexp", "softmax_backward",
               "log_softmax_backward out=", "cross_entropy", "np.exp"]]
    param_names = ["call"]

    def setup(self, call):
        x = np.random.default_rng(0).standard_normal(16).astype(np.float32)
        y = csoftmax.log_softmax(x)
        p = np.exp(y)
        o = np.empty_like(x)
        x2 = x.reshape(2, 8)
        lab = np.array([1, 5])
        self.fn = {
            "softmax": lambda: csoftmax.softmax(x),
            "softmax out=": lambda: csoftmax.softmax(x, out=o),
            "logsumexp": lambda: csoftmax.logsumexp(x),
            "softmax_backward": lambda: csoftmax.softmax_backward(p, x),
            "log_softmax_backward out=": lambda: csoftmax.log_softmax_backward(y, x, out=o),
            "cross_entropy": lambda: csoftmax.cross_entropy(x2, lab),
            "np.exp": lambda: np.exp(x),
        }[call]

    def time_call(self, call):
        self.fn()
