"""Independent Beta gates: the paper's BLSTM."""

from __future__ import annotations

import torch

from ._gate_distribution import GateDistribution
from .gate_algebra import GammaRatioGates


class IndependentBetaGates(GateDistribution):
    r"""Independent Beta input and forget gates, built from four Gamma variables.

    With :math:`u_k \sim \mathrm{Gamma}(c_k, 1)`, ``concentration[..., :] = (c_1, c_2, c_3, c_4)``,

    .. math::

        i = \frac{u_1}{u_1 + u_2} \sim \mathrm{Beta}(c_1, c_2), \qquad
        f = \frac{u_3}{u_3 + u_4} \sim \mathrm{Beta}(c_3, c_4),

    independently, so :math:`p(i, f) = \mathrm{Beta}(i; c_1, c_2)\,\mathrm{Beta}(f; c_3, c_4)`
    and the correlation is zero. This is the gate law of the BLSTM of Song et al. (2020).

    :param concentration: positive tensor with last dimension 4.
    """

    algebra = GammaRatioGates(
        "IndependentBetaGates",
        basis_size=4,
        input_numerator=(0,),
        input_rest=(1,),
        forget_numerator=(2,),
        forget_rest=(3,),
    )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log density at gate pairs ``value`` ``(..., 2)`` (``-inf`` outside ``(0, 1)^2``)."""
        self._log_prob_checks(value)
        c1, c2, c3, c4 = self.concentration.unbind(-1)
        x, y = value[..., 0], value[..., 1]

        def beta_log_prob(v, a, b):
            return (
                (a - 1) * v.log()
                + (b - 1) * torch.log1p(-v)
                - (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b))
            )

        lp = beta_log_prob(x, c1, c2) + beta_log_prob(y, c3, c4)
        inside = (x > 0) & (x < 1) & (y > 0) & (y < 1)
        return torch.where(inside, lp, torch.full_like(lp, -float("inf")))

    @property
    def correlation(self) -> torch.Tensor:
        """Exactly zero: the gates are independent."""
        return torch.zeros(
            self.batch_shape, dtype=self.concentration.dtype, device=self.concentration.device
        )
