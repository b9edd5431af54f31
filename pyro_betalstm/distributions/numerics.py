"""Numerical kernels shared by the gate distributions: log-space Gamma draws and quadrature nodes."""

from __future__ import annotations

import math

import torch
from torch.distributions import Gamma


def sample_log_gamma(concentration: torch.Tensor) -> torch.Tensor:
    r"""Reparameterised draw of :math:`\log u`, :math:`u \sim \mathrm{Gamma}(\alpha, 1)`, one per element.

    Uses :math:`u \overset{d}{=} g\,U^{1/\alpha}` with :math:`g \sim \mathrm{Gamma}(\alpha + 1, 1)`
    and :math:`U \sim \mathrm{Uniform}(0, 1)`, so that :math:`\log u = \log g - E/\alpha` with
    :math:`E \sim \mathrm{Exponential}(1)`. Both terms are differentiable in :math:`\alpha`
    (``torch.distributions.Gamma.rsample`` has exact implicit-reparameterisation gradients), and
    the result stays finite where a direct ``float32`` draw of :math:`u` underflows
    (:math:`\alpha \lesssim 0.05`).
    """
    # The public Gamma draw (rate 1: the division by it is exact), bit-identical to torch's
    # private kernel in value and gradient. Measured on this CPU it costs about 60 us more per
    # call, and a bivariate5 SVI step (batch 1, H 200, T 59) about 1.15x (issue 11).
    # A vectorised Marsaglia-Tsang sampler in eager torch ops measured slower than this kernel
    # on the CPU at a step's size (B 32, H 128, K 5: 3.3 ms against 2.1 ms in float64), and it
    # would need its own implicit gradient, so the Gamma part stays torch's.
    # The rate is a tensor made on the device (a fill), not the float 1.0, which
    # torch.distributions would turn into a host-to-device copy: a stream sync on CUDA at every
    # step, and an error inside a CUDA-graph capture. Same numbers.
    g = Gamma(concentration + 1.0, concentration.new_ones(()), validate_args=False).rsample()
    # No clamp before the log: torch's rsample already keeps g >= the dtype's tiny, and a
    # Gamma(alpha + 1 >= 1) draw below it has probability < 1e-37 (one op fewer per step,
    # bit-identical values and gradients).
    e = standard_exponential(concentration.shape, concentration.dtype, concentration.device)
    return g.log() - e / concentration


#: Below this many float32 elements ``Tensor.exponential_`` is the faster of the two draws.
_INVERSION_MIN_ELEMENTS = 2048


def standard_exponential(shape: torch.Size, dtype: torch.dtype, device=None) -> torch.Tensor:
    r"""Independent :math:`\mathrm{Exponential}(1)` draws: exactly the numbers of
    ``torch.empty(shape, dtype=dtype, device=device).exponential_()``, from the same generator
    state, only faster.

    For a float32 CPU tensor of at least 2048 elements they are drawn as ``-log(1 - U)`` with
    ``U`` uniform in float64, which is what torch's CPU kernel computes (bit-identical: tests/
    distributions/test_numerics.py), but that kernel draws one element at a time and this was
    1.8x to 3.5x faster at a training step's size in this machine's measurements
    (docs/results/gamma_path_cpu.json, docs/results/benchmarks.md). Everything else (other
    dtypes and devices, small tensors, where the two extra ops cost more than they save) uses
    ``exponential_``.
    So no result made before this function existed changes. The buffer is contiguous: the draws
    depend on the shape only, not on a caller's memory layout.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    numel = math.prod(shape)
    if device.type != "cpu" or dtype != torch.float32 or numel < _INVERSION_MIN_ELEMENTS:
        return torch.empty(shape, dtype=dtype, device=device).exponential_()
    u = torch.rand(shape, dtype=torch.float64, device=device)
    return torch.log1p(u.neg_()).neg_().to(dtype)


def into_open_unit_interval(x: torch.Tensor) -> torch.Tensor:
    """``x`` in ``[0, 1]`` moved inside ``(0, 1)``: a value that rounded to exactly 0 or 1 in its
    dtype becomes the nearest representable value inside (the gradient is kept elsewhere)."""
    info = torch.finfo(x.dtype)
    # 1 - eps / 2 is the largest value below 1 in a binary float format (nextafter(1, 0)),
    # exact as a Python float; no tensor is made or read for it
    return x.clamp(min=info.tiny, max=1.0 - info.eps / 2)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and for large negative ``x``.

    Each of the two formulas sees only the inputs it is chosen for (the others are replaced by
    -1, where both are finite): the formula not chosen near ``x = 0`` has an infinite
    derivative there, and ``torch.where``'s backward would turn its ``0 * inf`` into NaN."""
    near = x > -math.log(2.0)
    x_near, x_far = torch.where(near, x, -1.0), torch.where(near, -1.0, x)
    return torch.where(near, torch.log(-torch.expm1(x_near)), torch.log1p(-torch.exp(x_far)))


def tanh_sinh_nodes(num: int, half_width: float, dtype=torch.float64, device=None):
    r"""Tanh-sinh (double-exponential) nodes on :math:`(0, 1)` in log space.

    With :math:`t(s) = \sigma(\pi \sinh s)`, :math:`s \in [-w, w]` on an even grid, returns
    ``(log t, log(1 - t), log weight)`` where the weights include :math:`dt/ds` and the step,
    so that :math:`\int_0^1 g(t)\,dt \approx \sum_k \exp(\log w_k)\, g(t_k)`. Endpoint
    singularities of any integrable power are resolved because ``log t`` and ``log(1 - t)`` are
    computed without forming ``t`` (Takahasi & Mori, 1974).
    """
    s = torch.linspace(-half_width, half_width, num, dtype=dtype, device=device)
    h = 2.0 * half_width / (num - 1)
    z = math.pi * torch.sinh(s)
    log_t = torch.nn.functional.logsigmoid(z)
    log_1mt = torch.nn.functional.logsigmoid(-z)
    log_w = log_t + log_1mt + torch.log(math.pi * torch.cosh(s)) + math.log(h)
    return log_t, log_1mt, log_w


def exp_sinh_nodes(num: int, half_width: float, dtype=torch.float64, device=None):
    r"""Exp-sinh nodes on :math:`(0, \infty)`: ``(log r, log weight)`` with :math:`r = e^{\frac{\pi}{2}\sinh s}`.

    :math:`\int_0^\infty g(r)\,dr \approx \sum_k \exp(\log w_k)\, g(r_k)`.
    """
    s = torch.linspace(-half_width, half_width, num, dtype=dtype, device=device)
    h = 2.0 * half_width / (num - 1)
    log_r = 0.5 * math.pi * torch.sinh(s)
    log_w = log_r + torch.log(0.5 * math.pi * torch.cosh(s)) + math.log(h)
    return log_r, log_w
