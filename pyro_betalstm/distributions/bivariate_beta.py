"""Olkin–Liu bivariate Beta over (input gate, forget gate): the paper's bBLSTM."""

from __future__ import annotations

import torch

from ._gate_distribution import GateDistribution
from .gate_algebra import GammaRatioGates


class BivariateBeta(GateDistribution):
    r"""Olkin–Liu bivariate Beta distribution of the gate pair :math:`(i, f)`.

    With :math:`u_1, u_2, u_3` independent, :math:`u_k \sim \mathrm{Gamma}(c_k, 1)` and
    ``concentration[..., :] = (a, b, c)``,

    .. math::

        i = \frac{u_1}{u_1 + u_3}, \qquad f = \frac{u_2}{u_2 + u_3},

    with density on :math:`(0, 1)^2`

    .. math::

        p(i, f) = \frac{i^{a-1} f^{b-1} (1-i)^{b+c-1} (1-f)^{a+c-1}}
                       {B(a, b, c)\,(1 - i f)^{a+b+c}}, \qquad
        B(a, b, c) = \frac{\Gamma(a)\Gamma(b)\Gamma(c)}{\Gamma(a+b+c)}.

    The marginals are :math:`\mathrm{Beta}(a, c)` and :math:`\mathrm{Beta}(b, c)`; the shared
    :math:`u_3` makes the correlation always positive. This is the gate law of the bBLSTM of
    Song et al. (2020).

    References: I. Olkin and R. Liu, "A bivariate beta distribution", *Statistics & Probability
    Letters* 62 (2003) 407–412; H. Song, W. Jang, J. Shin and I.-C. Moon, "Bivariate Beta-LSTM",
    AAAI 2020.

    :param concentration: positive tensor with last dimension 3, ``(a, b, c)``.
    """

    algebra = GammaRatioGates(
        "BivariateBeta",
        basis_size=3,
        input_numerator=(0,),
        input_rest=(2,),
        forget_numerator=(1,),
        forget_rest=(2,),
    )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log density at gate pairs ``value`` ``(..., 2)`` (``-inf`` outside ``(0, 1)^2``)."""
        self._log_prob_checks(value)
        conc = self.concentration
        a, b, c = conc.unbind(-1)
        x, y = value[..., 0], value[..., 1]
        lx, ly = x.log(), y.log()
        l1x, l1y = torch.log1p(-x), torch.log1p(-y)
        # 1 - x y = (1 - x) + x (1 - y): exact near the corner (1, 1)
        l1xy = torch.logaddexp(l1x, lx + l1y)
        total = a + b + c
        log_norm = torch.lgamma(a) + torch.lgamma(b) + torch.lgamma(c) - torch.lgamma(total)
        lp = (
            (a - 1) * lx
            + (b - 1) * ly
            + (b + c - 1) * l1x
            + (a + c - 1) * l1y
            - total * l1xy
            - log_norm
        )
        inside = (x > 0) & (x < 1) & (y > 0) & (y < 1)
        return torch.where(inside, lp, torch.full_like(lp, -float("inf")))
