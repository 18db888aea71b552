"""Adam for the inversion search, without ``torch.optim``.

``torch.optim.Optimizer`` imports ``torch._dynamo`` on first use, which costs about 1.8 s of a one-face encode's
process (2 CPU cores, torch 2.14). The search needs plain Adam on a few latent rows, so this module does the
arithmetic of ``torch.optim.Adam``'s single-tensor path (no weight decay, no AMSGrad) in the same order of
operations: on the CPU a search gives the same latents bit for bit (``tests/test_search_adam.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Adam:
    """Adam over ``params`` (leaf tensors), each with its own learning rate ``lrs[i]`` (set before each step).

    A parameter whose ``.grad`` is ``None`` at :meth:`step` is skipped, state and all, as ``torch.optim`` does.
    """

    params: list[torch.Tensor]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lrs: list[float] = field(init=False)
    _avg: list[torch.Tensor] = field(init=False)
    _sq: list[torch.Tensor] = field(init=False)
    _steps: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.lrs = [self.lr] * len(self.params)
        self._avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._steps = [0] * len(self.params)

    def set_lr(self, lr: float) -> None:
        """One learning rate for every parameter."""
        self.lrs = [lr] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad, avg, sq = p.grad, self._avg[i], self._sq[i]
            self._steps[i] += 1
            step = float(self._steps[i])
            avg.lerp_(grad, 1 - beta1)
            sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = self.lrs[i] / bias_correction1
            denom = (sq.sqrt() / bias_correction2**0.5).add_(self.eps)
            p.addcdiv_(avg, denom, value=-step_size)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
