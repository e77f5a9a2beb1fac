"""L-BFGS and Adam steps that never read a value back from the device.

``torch.optim.LBFGS`` decides things on the host from device values: the curvature test, the
first step's length, and every ``add_(alpha=tensor)`` of its two-loop recursion. On a GPU each such
read waits until everything queued before it has run (38 reads per iteration were counted on an
H100), so the GPU idles while Python catches up. The steps here make the same decisions with
``torch.where`` on the device: a step is a fixed sequence of kernels whatever the values, nothing
waits, and the whole step can be captured in a CUDA graph.

The L-BFGS direction is computed in the compact form of Byrd, Nocedal and Schnabel (1994, eq. 2.6)
instead of the two-loop recursion: both give the same ``H g`` in exact arithmetic, but the compact
form needs one matrix product over the history to read it and one to apply it (about 25 kernels)
where the two-loop needs seven kernels per history entry (about 400 at the default history).
The small history-by-history systems are solved in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .device import full_fp32_matmul

#: torch.optim.LBFGS's curvature test: a pair (s, y) with s.y at or below this is not used.
CURVATURE_EPS = 1e-10


class LBFGS:
    """L-BFGS with one gradient per step and no line search: ``torch.optim.LBFGS`` with
    ``max_iter=1`` and ``line_search_fn=None`` (neural-style's setting), without host reads.

    It differs from torch's on purpose in two corner cases: a pair failing the curvature test
    still takes its place in the history, with no weight (torch's leaves it out, so its history
    then reaches one pair further back); and torch's skip of a step whose direction is not a
    descent direction (g.d > 1, which a positive-definite H never gives) is not done.
    """

    def __init__(self, variable: Tensor, history: int, lr: float = 1.0) -> None:
        self.variable = variable
        self.lr = lr
        self.m = history
        n = variable.numel()
        # Rows 0..m-1 hold the steps s, rows m..2m-1 the gradient changes y, in ring order.
        self.pairs = variable.new_zeros(2 * history, n)
        self.valid = variable.new_zeros(history)
        # The small systems in float64 (MPS has none: float32 there).
        small = torch.float32 if variable.device.type == "mps" else torch.float64
        self.sy = variable.new_zeros(history, history, dtype=small)  # s_i . y_j
        self.yy = variable.new_zeros(history, history, dtype=small)  # y_i . y_j
        self.gamma = variable.new_ones((), dtype=small)  # H0 = gamma * I
        self.previous = variable.new_zeros(n)  # the last gradient
        self.step_taken = variable.new_zeros(n)  # the last step, t * d
        self.count = variable.new_zeros((), dtype=torch.long)  # steps taken, on the device
        self._arange = torch.arange(history, device=variable.device)

    def step(self, grad: Tensor) -> None:
        """Move the variable one step, given the gradient at its current value."""
        with torch.no_grad(), full_fp32_matmul():
            g = grad.reshape(-1)
            m = self.m
            newest = (self.count - 1).remainder(m)  # this step's pair goes here (step 0: none)
            # No image-sized temporaries: at camera sizes each one is hundreds of MB. A pair that
            # fails the curvature test is stored as it is and weighted 0 in the small systems.
            s, y = self.step_taken, self.previous.neg_().add_(g)  # y = g - previous, in place
            ys = torch.dot(y, s)
            accept = (ys > CURVATURE_EPS) & (self.count > 0)
            keep = accept.to(self.sy.dtype)
            self.pairs.index_copy_(0, newest.view(1), s.view(1, -1))
            self.pairs.index_copy_(0, (newest + m).view(1), y.view(1, -1))
            self.valid.index_copy_(0, newest.view(1), accept.to(g.dtype).view(1))
            # S g, Y g, S y, Y y and Y s: the new row and column of S^T Y and Y^T Y.
            on_g = (self.pairs @ g).to(self.sy.dtype)
            on_y = (self.pairs @ y).to(self.sy.dtype) * keep
            on_s = (self.pairs @ s).to(self.sy.dtype) * keep
            self.sy.index_copy_(1, newest.view(1), on_y[:m].view(m, 1))
            self.sy.index_copy_(0, newest.view(1), on_s[m:].view(1, m))
            self.yy.index_copy_(1, newest.view(1), on_y[m:].view(m, 1))
            self.yy.index_copy_(0, newest.view(1), on_y[m:].view(1, m))
            # Every state tensor is updated in place, so that a captured CUDA graph replays it.
            self.gamma.copy_(torch.where(accept, ys / torch.dot(y, y), self.gamma))

            # The step -t H g, built in its own buffer (s is stored in the history by now).
            coefficients = self._coefficients(on_g[:m], on_g[m:], newest)
            torch.mv(self.pairs.t(), coefficients, out=self.step_taken)
            self.step_taken.addcmul_(g, self.gamma.to(g.dtype))
            first = (1 / torch.linalg.vector_norm(g, 1)).clamp(max=1) * self.lr
            length = torch.where(self.count == 0, first, torch.full_like(first, self.lr))
            self.step_taken.mul_(-length)
            self.variable.view(-1).add_(self.step_taken)
            self.previous.copy_(g)
            self.count += 1

    def _coefficients(self, s_g: Tensor, y_g: Tensor, newest: Tensor) -> Tensor:
        """The weights of S's and Y's rows in H g - gamma g (compact form; oldest pair first)."""
        order = (self._arange + newest + 1).remainder(self.m)  # oldest first
        sy = self.sy[order][:, order]
        valid = self.valid[order].to(sy.dtype)
        # Unused and rejected slots: an identity row in R and no weight anywhere (their rows
        # and columns of S^T Y and Y^T Y are zero), so their coefficients come out 0.
        r = torch.triu(sy) + torch.diag(1 - valid)
        d = torch.diagonal(sy) * valid
        w = torch.linalg.solve_triangular(r, (s_g[order] * valid).unsqueeze(1), upper=True)
        rhs = d.unsqueeze(1) * w + self.gamma * (self.yy[order][:, order] @ w) \
            - self.gamma * (y_g[order] * valid).unsqueeze(1)
        p = torch.linalg.solve_triangular(r.t(), rhs, upper=False)
        coefficients = torch.empty(2 * self.m, dtype=self.sy.dtype, device=s_g.device)
        coefficients.index_copy_(0, order, p.squeeze(1))
        coefficients.index_copy_(0, order + self.m, -self.gamma * w.squeeze(1))
        return coefficients.to(self.pairs.dtype)


class Adam:
    """Adam (torch.optim.Adam's defaults and arithmetic); the bias corrections are computed from
    a step count kept on the host, so nothing is read from the device."""

    def __init__(self, variable: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.variable = variable
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.mean = torch.zeros_like(variable)
        self.square = torch.zeros_like(variable)
        self.count = 0

    def step(self, grad: Tensor) -> None:
        """Move the variable one step, given the gradient at its current value."""
        with torch.no_grad():
            self.count += 1
            b1, b2 = self.betas
            self.mean.lerp_(grad, 1 - b1)
            self.square.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            correction2 = (1 - b2 ** self.count) ** 0.5
            denominator = (self.square.sqrt() / correction2).add_(self.eps)
            self.variable.addcdiv_(self.mean, denominator, value=-self.lr / (1 - b1 ** self.count))
