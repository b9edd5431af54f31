"""One time step's elementwise work, eager or compiled.

At each step a :class:`~pyro_betalstm.nn.GateLayer` forms its pre-activations with one matrix
product, then does elementwise work: the Gamma concentrations of a latent family, the gates
(from the drawn basis, the mean gates, or a deterministic family's map) and the LSTM cell
update. :class:`StepFunctions` holds that work as plain functions (the eager loop, the
reference) or, with ``compiled=True``, each one through :func:`torch.compile`, which fuses its
many small kernels into a few: on a GPU, together with CUDA graphs
(:mod:`~pyro_betalstm.nn.cuda_graphs`), fewer kernels per replayed step.

The random draws stay outside the compiled functions: the Gamma basis is drawn eagerly between
them (torch's exact reparameterised sampler, the same numbers as the eager loop), and a
deterministic family that draws noise while training (``draws_in_training``: ``gumbel``,
``prior_noise``) runs its training steps eagerly. So the compiled path computes the eager
path's function on the eager path's draws; only floating-point rounding of fused arithmetic
differs (tests/core/test_step_compile.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..distributions.gate_algebra import STEP_BASIS_DIM
from ..gates import GateFamily, offset_log_basis

#: ``(h, c, output, input_gate, forget_gate)`` of one step
StepResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def cell_update(i, f, g, o, h, c, m):
    """The LSTM cell: new ``h``, ``c`` (unchanged at padded rows, ``m`` ``(B, 1)`` False) and
    the output (zero at padded rows); ``m`` None: every row is valid."""
    c_new = torch.addcmul(i * torch.tanh(g), f, c)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    if m is None:
        return h_new, c_new, h_new
    return torch.where(m, h_new, h), torch.where(m, c_new, c), h_new * m


class StepFunctions:
    """The elementwise work of a step for ``family`` (see the module docstring).

    ``concentration(z_gate)``; ``from_basis(log_u, g, o, h, c, m)``;
    ``from_mean(alpha, g, o, h, c, m)``; ``deterministic(z_gate, g, o, h, c, m, training)``:
    the last three return :data:`StepResult`.
    """

    def __init__(self, family: GateFamily, basis_offset: float = 0.0, compiled: bool = False):
        self.family = family
        self.basis_offset = basis_offset
        self.compiled = compiled
        wrap: Callable = _compile if compiled else (lambda fn: fn)
        self.concentration = wrap(self._concentration)
        self.from_basis = wrap(self._from_basis)
        self.from_mean = wrap(self._from_mean)
        self._deterministic_fn = wrap(self._deterministic)

    def deterministic(self, z_gate, g, o, h, c, m, training: bool) -> StepResult:
        if training and self.family.draws_in_training:
            return self._deterministic(z_gate, g, o, h, c, m, training)  # draws stay eager
        return self._deterministic_fn(z_gate, g, o, h, c, m, training)

    def _concentration(self, z_gate):
        return self.family.concentration(z_gate)

    def _from_basis(self, log_u, g, o, h, c, m) -> StepResult:
        log_u = offset_log_basis(log_u, self.basis_offset)
        i, f = self.family.algebra.gates(log_u, STEP_BASIS_DIM)
        return (*cell_update(i, f, g, o, h, c, m), i, f)

    def _from_mean(self, alpha, g, o, h, c, m) -> StepResult:
        i, f = self.family.algebra.mean_gates(alpha, STEP_BASIS_DIM)
        return (*cell_update(i, f, g, o, h, c, m), i, f)

    def _deterministic(self, z_gate, g, o, h, c, m, training) -> StepResult:
        i, f = self.family.gates_from_preactivations(z_gate, training, self.basis_offset)
        return (*cell_update(i, f, g, o, h, c, m), i, f)


def _compile(fn: Callable) -> Callable:
    # dynamic=None: a second batch size recompiles once with a symbolic batch. dynamic=False
    # recompiles per size, and with fullgraph=True the 9th shape or grad-mode combination of
    # a code object (process-wide) raises FailOnRecompileLimitHit, not a RuntimeError
    return torch.compile(fn, dynamic=None, fullgraph=True)
