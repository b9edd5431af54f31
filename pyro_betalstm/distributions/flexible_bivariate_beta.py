"""Arnold–Ng five-parameter bivariate Beta over (input gate, forget gate): the paper's bBLSTM(5G)."""

from __future__ import annotations

import math

import torch

from ._gate_distribution import GateDistribution
from .gate_algebra import GammaRatioGates
from .numerics import log1mexp, tanh_sinh_nodes


class FlexibleBivariateBeta(GateDistribution):
    r"""Arnold–Ng five-parameter bivariate Beta distribution of the gate pair :math:`(i, f)`.

    With :math:`u_k \sim \mathrm{Gamma}(c_k, 1)`, :math:`k = 1..5`, independent,

    .. math::

        i = \frac{u_1 + u_3}{u_1 + u_3 + u_4 + u_5}, \qquad
        f = \frac{u_2 + u_4}{u_2 + u_4 + u_3 + u_5}.

    The marginals are :math:`\mathrm{Beta}(c_1 + c_3, c_4 + c_5)` and
    :math:`\mathrm{Beta}(c_2 + c_4, c_3 + c_5)`. Because :math:`u_3` and :math:`u_4` sit in the
    numerator of one gate and the denominator of the other while :math:`u_5` sits in both
    denominators, the correlation can take either sign (down to about -1 when :math:`c_3, c_4`
    dominate). This is the gate law of the bBLSTM(5G) of Song et al. (2020).

    **Density.** There is no simple closed form. Writing :math:`v = u_1 + u_3`,
    :math:`w = u_2 + u_4`, :math:`\beta = u_3 / v \sim \mathrm{Beta}(c_3, c_1)` and
    :math:`\gamma = u_4 / w \sim \mathrm{Beta}(c_4, c_2)` (all independent),
    :math:`i = v / (v + \gamma w + u_5)` and :math:`f = w / (w + \beta v + u_5)`. Given
    :math:`(\beta, \gamma)` the map is Olkin–Liu-like and its density has the closed form

    .. math::

        p(i, f \mid \beta, \gamma) = \frac{\Gamma(S)}{\Gamma(c_v)\Gamma(c_w)\Gamma(c_5)}
            \frac{V^{c_v+1} W^{c_w+1}}{i^2 f^2 (1 + \gamma W + \beta V)(1 + V + W)^{S}},

    with :math:`X = i/(1-i)`, :math:`Y = f/(1-f)`, :math:`D = 1 - \beta\gamma X Y > 0`,
    :math:`V = X(1 + \gamma Y)/D`, :math:`W = Y(1 + \beta X)/D`, :math:`c_v = c_1 + c_3`,
    :math:`c_w = c_2 + c_4`, :math:`S = \sum_k c_k`. :meth:`log_prob` integrates it against the
    Beta laws of :math:`(\beta, \gamma)` by tensor-product tanh-sinh quadrature, splitting the
    square where the support boundary :math:`D = 0` crosses it, with every endpoint quantity
    computed in log space so that endpoint singularities are resolved. Per-point quantities are
    formed in ``float64``; the integrand over the nodes runs in :attr:`quadrature_dtype`.

    **Accuracy** (``num_quadrature = 48`` nodes per dimension and a ``float32`` integrand, the
    defaults). Absolute error of the log-density (= relative error of the density) against
    160-node ``float64`` quadrature, measured at draws and grid points in
    :math:`[10^{-3}, 1 - 10^{-3}]^2`: below 1e-5 for the test registry's concentrations
    (0.3 to 12); below 1e-5 when all concentrations lie in [0.5, 2] and below 2e-4 in [0.5, 5]
    or [1, 10]; up to about 1e-3 in [0.7, 10], 3e-3 in [1, 20] and 1e-2 in [0.5, 10]; 0.1 to 0.3
    near the edges of the square when concentrations below 0.3 are mixed with ones above 10.
    The error grows with the spread of the concentrations; raise :attr:`num_quadrature` (96
    nodes: below 1e-5 on [0.5, 10]). Where :math:`c_1 + c_2 + c_5 < 1` the density is infinite
    on the line :math:`i + f = 1` and values very near that line are less accurate. The density
    integrates to 1 within 1e-3 (tested). 90,000 points take about 15 s on two CPU cores.

    References: B. C. Arnold and H. K. T. Ng, "Flexible bivariate beta distributions",
    *Journal of Multivariate Analysis* 102 (2011) 1194–1202; H. Song, W. Jang, J. Shin and
    I.-C. Moon, "Bivariate Beta-LSTM", AAAI 2020.

    :param concentration: positive tensor with last dimension 5.
    """

    algebra = GammaRatioGates(
        "FlexibleBivariateBeta",
        basis_size=5,
        input_numerator=(0, 2),
        input_rest=(3, 4),
        forget_numerator=(1, 3),
        forget_rest=(2, 4),
    )

    #: Quadrature nodes per dimension of :meth:`log_prob`. A class attribute: set it on the
    #: class for every instance, or on one instance (``d.num_quadrature = 96``), which its
    #: ``expand`` (as Pyro's plates call it) passes on to the expanded instance.
    num_quadrature: int = 48
    #: The dtype of :meth:`log_prob`'s integrand over the nodes (the accuracy reference above
    #: uses ``torch.float64``); a class attribute, set as :attr:`num_quadrature` is.
    quadrature_dtype: torch.dtype = torch.float32
    _chunk_elements: int = 2_000_000

    def expand(self, batch_shape, _instance=None):
        """As :meth:`~pyro_betalstm.distributions.GateDistribution.expand`, keeping the
        :attr:`num_quadrature` and :attr:`quadrature_dtype` set on this instance."""
        new = super().expand(batch_shape, _instance)
        for name in ("num_quadrature", "quadrature_dtype"):  # set on this instance: keep them
            if name in self.__dict__:
                setattr(new, name, self.__dict__[name])
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log density at gate pairs ``value`` ``(..., 2)`` (``-inf`` outside ``(0, 1)^2``), by
        the quadrature of the class docstring. Differentiable in the value and the
        concentrations, with finite gradients on the line ``i + f = 1`` too. Not for
        ``torch.jit.trace``: the quadrature's range and its second piece depend on the values
        (a trace would fix them to those of the traced points)."""
        self._log_prob_checks(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        conc = self.concentration.expand(shape + (5,)).reshape(-1, 5).to(torch.float64)
        val = value.expand(shape + (2,)).reshape(-1, 2).to(torch.float64)
        # the dtype of the others' log_prob: the value's and the concentration's, promoted
        out_dtype = self.concentration.dtype
        if value.is_floating_point():
            out_dtype = torch.promote_types(value.dtype, out_dtype)
        if val.shape[0] == 0:  # an empty batch: nothing to integrate
            return conc.new_empty(shape, dtype=out_dtype)
        inside = ((val > 0) & (val < 1)).all(-1)
        # Evaluate at a safe interior point where outside, then mask.
        val = torch.where(inside[:, None], val, torch.full_like(val, 0.5))
        a_min = float(conc.detach().min().clamp(min=1e-3))  # the node range: no gradient
        # Endpoint terms behave like t^a in the tanh-sinh variable: extend the range until
        # exp(-a * pi * sinh(w)) < exp(-20), and at least to t in [1e-6, 1 - 1e-6].
        half_width = max(2.2, math.asinh(20.0 / (math.pi * a_min)))
        nodes = tanh_sinh_nodes(self.num_quadrature, half_width, device=val.device)
        n = self.num_quadrature
        chunk = max(1, self._chunk_elements // (n * n))
        out = torch.cat(
            [
                _flexible_log_density(
                    val[s : s + chunk], conc[s : s + chunk], nodes, self.quadrature_dtype
                )
                for s in range(0, val.shape[0], chunk)
            ]
        )
        out = torch.where(inside, out, torch.full_like(out, -float("inf")))
        return out.reshape(shape).to(out_dtype)


def _flexible_log_density(val, conc, nodes, dtype):
    """log p(i, f) for rows of ``val`` (N, 2) and ``conc`` (N, 5) by 2-D quadrature.

    Per-point quantities are formed in float64; the O(N n^2) integrand runs in ``dtype``.
    """
    softplus = torch.nn.functional.softplus
    log_t, log_1mt, log_wt = nodes
    # Shapes: points (N, 1, 1), outer node t (1, n, 1), inner node tau (1, 1, n).
    lt, l1t, lwt = (z[None, :, None] for z in (log_t, log_1mt, log_wt))
    lu, l1u, lwu = (z[None, None, :] for z in (log_t, log_1mt, log_wt))
    x, y = val[:, 0, None, None], val[:, 1, None, None]
    c1, c2, c3, c4, c5 = (c[:, None, None] for c in conc.unbind(-1))
    lx, ly, l1x, l1y = x.log(), y.log(), torch.log1p(-x), torch.log1p(-y)
    lX, lY = lx - l1x, ly - l1y  # log odds
    P = lX + lY  # log(X Y); the support boundary D = 0 cuts the (beta, gamma) square iff P > 0
    cv, cw = c1 + c3, c2 + c4
    S = cv + cw + c5
    const = (
        torch.lgamma(S)
        - torch.lgamma(cv)
        - torch.lgamma(cw)
        - torch.lgamma(c5)
        - 2 * lx
        - 2 * ly
        - (torch.lgamma(c3) + torch.lgamma(c1) - torch.lgamma(cv))
        - (torch.lgamma(c4) + torch.lgamma(c2) - torch.lgamma(cw))
    ).flatten()

    def log_integral(params, lb, l1b, lg, l1g, lD, log_jacobian):
        lX, lY, c1, c2, c3, c4, cv, cw, S = params
        # Beta(c3, c1) and Beta(c4, c2) mixing weights and node weights (separable parts first)
        outer = (c3 - 1) * lb + (c1 - 1) * l1b + lwt
        inner = (c4 - 1) * lg + (c2 - 1) * l1g + lwu
        lV = lX + softplus(lg + lY) - lD
        lW = lY + softplus(lb + lX) - lD
        l_mix = softplus(torch.logaddexp(lg + lW, lb + lV))  # log(1 + gamma W + beta V)
        l_tot = softplus(torch.logaddexp(lV, lW))  # log(1 + V + W)
        terms = (cv + 1) * lV + (cw + 1) * lW - l_mix - S * l_tot + outer + inner + log_jacobian
        return torch.logsumexp(terms.flatten(1), dim=1)

    lt, l1t, lwt, lu, l1u, lwu = (z.to(dtype) for z in (lt, l1t, lwt, lu, l1u, lwu))
    params = [z.to(dtype) for z in (lX, lY, c1, c2, c3, c4, cv, cw, S)]
    P = P.to(dtype)

    # Piece 1: beta = b1 t in [0, b1], b1 = min(1, 1/(XY)); gamma = tau in [0, 1].
    # P <= 0 takes the uncut square's formulas (b1 = 1, rho = XY), P > 0 the cut one's; at P = 0
    # both give the density, and one side's formulas throughout keep every derivative finite
    # (a clamp's or an unselected where branch's infinite derivative times 0 made NaN there,
    # on the line i + f = 1). Where an input is replaced, it is by a value whose log1mexp is
    # finite and unused.
    cut = P > 0
    minus_inf = torch.full_like(P, -float("inf"))
    log_b1 = torch.where(cut, -P, torch.zeros_like(P))
    log_rho = torch.where(cut, torch.zeros_like(P), P)  # log(b1 X Y)
    log_1mb1 = torch.where(cut, log1mexp(torch.where(cut, -P, -1.0)), minus_inf)
    lb = log_b1 + lt
    l1b = torch.logaddexp(log_1mb1, log_b1 + l1t)
    l1_t_tau = torch.logaddexp(l1t, lt + l1u)  # log(1 - t tau)
    below = P < 0
    log_1mrho = torch.where(below, log1mexp(torch.where(below, P, -1.0)), minus_inf)
    lD = torch.logaddexp(log_1mrho, log_rho + l1_t_tau)  # D = (1 - rho) + rho (1 - t tau)
    # At P = 0, log(1 - rho) is -inf: its term's derivative, -rho / D, is added by a term that
    # is 0 there (P times it), capped where D underflows (nodes of negligible weight)
    # (only where some point lies on the line: the term is a full pass over the grid)
    at_zero = P == 0
    if at_zero.any():
        lD = lD - torch.where(at_zero, P * torch.exp(-lD.clamp(min=-80.0)), torch.zeros_like(P))
    result = log_integral(params, lb, l1b, lu, l1u, lD, log_b1)

    # Piece 2, only where P > 0: beta in [1/(XY), 1], gamma = gmax tau, gmax = 1/(beta X Y).
    cut = cut.flatten()
    if cut.any():
        Pc = P[cut]
        log_1mbstar = log1mexp(-Pc)
        lb2 = torch.logaddexp(-Pc, log_1mbstar + lt)
        l1b2 = log_1mbstar + l1t
        log_bXY = Pc + lb2  # log(beta X Y) >= 0
        log_gmax = -log_bXY
        log_1mgmax = torch.log(torch.expm1(Pc)) + lt - log_bXY
        l1g2 = torch.logaddexp(log_1mgmax, log_gmax + l1u)
        params2 = [z[cut] if z.shape[0] > 1 else z for z in params]
        piece2 = log_integral(params2, lb2, l1b2, log_gmax + lu, l1g2, l1u, log_1mbstar + log_gmax)
        result = result.clone()
        result[cut] = torch.logaddexp(result[cut], piece2)
    return const + result.to(torch.float64)
