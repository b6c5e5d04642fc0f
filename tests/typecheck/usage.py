"""Every public function of csoftmax, called as a user would: `mypy` over
this file (CI: `.ci/run`) checks that the shipped hints (py.typed) describe
the signatures.  It also runs (`python tests/typecheck/usage.py`)."""
from typing import Any

import numpy as np
from numpy.typing import NDArray

import csoftmax

x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
labels = np.array([0, 3, 9, 1])

p: NDArray[np.floating[Any]] = csoftmax.softmax(x, temperature=2.0)
lp: NDArray[np.floating[Any]] = csoftmax.log_softmax(x, axis=(0, 1), dtype=np.float64)
csoftmax.softmax(x, out=x)
csoftmax.softmax([1.0, 2.0, 3.0], axis=None)
lse = csoftmax.logsumexp(x, axis=1, b=np.ones(10), keepdims=True)
lse_val, sign = csoftmax.logsumexp([1.0, -2.0], b=[1.0, -1.0], return_sign=True)
sm: float = float(csoftmax.smooth_max(x, axis=-1, sharpness=10.0).max())

loss = csoftmax.cross_entropy(x, labels, label_smoothing=0.1, reduction="mean")
loss, grad = csoftmax.cross_entropy(x, labels, weight=np.ones(10), ignore_index=-1,
                                    temperature=0.5, return_grad=True,
                                    grad_out=np.empty_like(x))
nll = csoftmax.nll_loss(lp, labels, reduction="sum")
kl = csoftmax.kl_div(lp, p, log_target=False, reduction="batchmean")
dl, dgrad = csoftmax.distillation_loss(x, x[::-1], temperature=4.0, return_grad=True)

cos = np.tanh(x)
mlog: NDArray[np.floating[Any]] = csoftmax.margin_logits(cos, labels, scale=30.0, margin=0.2,
                                                         kind="arcface")
mce = csoftmax.margin_cross_entropy(cos, labels, margin=0.35, kind="cosface", easy_margin=False)
sp = csoftmax.softplus(x, beta=2.0, threshold=10.0)
sh = csoftmax.soft_hinge(x, labels, margin=1.0, reduction="none")
idx = csoftmax.sample(x, temperature=0.7, top_k=5, seed=0)
first: int = int(np.asarray(idx).ravel()[0])

dy = np.ones_like(x)
g1: NDArray[np.floating[Any]] = csoftmax.softmax_backward(p, dy, axis=-1)
g2: NDArray[np.floating[Any]] = csoftmax.log_softmax_backward(lp, dy, out=np.empty_like(lp))
g3: NDArray[np.floating[Any]] = csoftmax.logsumexp_backward(x, np.ones((4, 1), np.float32))

cfg: dict[str, Any] = csoftmax.get_config()
prev: int | None = csoftmax.set_num_threads(1)
n: int = csoftmax.get_num_threads()
csoftmax.set_num_threads(prev)
inc: str = csoftmax.get_include()
version: str = csoftmax.__version__
