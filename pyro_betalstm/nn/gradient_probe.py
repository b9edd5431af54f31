"""Record the gradient of the loss through the input and forget gates during training.

The paper argues that Beta gates pass more gradient than sigmoid gates, whose derivative is at
most 1/4. :class:`GateGradientProbe` measures it: while active it hooks every step's gate
pre-activations ``z`` (the ``i, f`` logits for sigmoid-type families, the Gamma-basis
pre-activations for latent ones) and the gate values, and accumulates ``|dL/dz|`` and
``|dL/dgate|`` over valid steps, per layer and per time step, plus a histogram of
``log10 |dL/dz|``. It costs nothing when not attached.

Example::

    with GateGradientProbe(model.lstm) as probe:
        loss.backward()
    probe.summary()  # {"layer0": {"pre_mean_abs": ..., ...}, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch

from .stochastic_lstm import StochasticLSTM

#: Edges of the ``log10 |dL/dz|`` histogram; values outside fall in the end bins.
LOG10_BINS = torch.linspace(-12.0, 2.0, 57)


@dataclass
class LayerGradients:
    """Running sums for one layer. Per-step tensors grow with the longest sequence seen."""

    pre_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    gate_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    count: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    histogram: torch.Tensor = field(
        default_factory=lambda: torch.zeros(len(LOG10_BINS) + 1, dtype=torch.float64)
    )
    samples: list[torch.Tensor] = field(default_factory=list)

    def _grow(self, t: int) -> None:
        if t >= len(self.count):
            extra = t + 1 - len(self.count)
            pad = torch.zeros(extra, dtype=torch.float64)
            self.pre_sum = torch.cat([self.pre_sum, pad])
            self.gate_sum = torch.cat([self.gate_sum, pad])
            self.count = torch.cat([self.count, pad])


class GateGradientProbe:
    """Context manager that measures ``|dL/dz|`` and ``|dL/dgate|`` of an LSTM's gates.

    ``z`` is every gate pre-activation element (``n_pre`` per unit: 2 for LSTM and G2-LSTM, 1 for
    CIFG, ``K`` Gamma-basis pre-activations for the Beta families); gate gradients are those of
    ``i`` and ``f``. Means are over valid (unpadded) steps, sequences, units and elements; with
    the ``sum`` reduction of the ELBO they scale with the batch's share of the loss, so compare
    models trained with the same data, batch size and likelihood.
    """

    def __init__(self, lstm: StochasticLSTM, sample_fraction: float = 0.0, seed: int = 0):
        if not isinstance(lstm, StochasticLSTM):
            raise TypeError(f"expected a StochasticLSTM, got {type(lstm).__name__}")
        if not 0.0 <= sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must lie in [0, 1], got {sample_fraction}")
        self.lstm = lstm
        self.sample_fraction = sample_fraction
        # its own generator: keeping samples must not change the training's random stream
        self._generator = torch.Generator().manual_seed(seed)
        self.layers = [LayerGradients() for _ in lstm.layers]
        self._attached: list = []  # the hooks this probe put on the layers while entered

    # ----- attaching --------------------------------------------------------------------------
    def __enter__(self) -> GateGradientProbe:
        # every layer is checked before any is attached: a refusal leaves no probe of ours
        taken = [k for k, layer in enumerate(self.lstm.layers) if layer.gate_probe is not None]
        if taken:
            raise RuntimeError(f"layer {taken[0]} already has a gate probe attached")
        self._attached = [partial(self._on_step, k) for k in range(len(self.lstm.layers))]
        for layer, probe in zip(self.lstm.layers, self._attached, strict=True):
            layer.gate_probe = probe
        return self

    def __exit__(self, *exc) -> None:
        # only the probes this one attached: another probe set since is not ours to remove
        for layer, probe in zip(self.lstm.layers, self._attached, strict=False):
            if layer.gate_probe is probe:
                layer.gate_probe = None
        self._attached = []

    def reset(self) -> None:
        """Forget everything recorded so far (for instance at the end of an epoch)."""
        self.layers = [LayerGradients() for _ in self.lstm.layers]

    # ----- recording --------------------------------------------------------------------------
    def _on_step(self, k, t, z_gate, i, f, valid) -> None:
        stats = self.layers[k]
        stats._grow(t)
        rows = None if valid is None else valid.detach()

        def on_pre(grad: torch.Tensor) -> None:
            g = grad.detach().abs()  # (B, n_pre, H)
            if rows is not None:
                g = g[rows]
            stats.pre_sum[t] += float(g.sum())
            stats.count[t] += g.numel()
            logs = torch.log10(g.clamp_min(1e-30)).flatten().cpu()
            idx = torch.bucketize(logs, LOG10_BINS.to(logs.dtype))
            stats.histogram += torch.bincount(idx, minlength=len(LOG10_BINS) + 1).double()
            if self.sample_fraction > 0:
                keep = torch.rand(g.numel(), generator=self._generator) < self.sample_fraction
                stats.samples.append(g.flatten().cpu()[keep])

        def on_gate(grad: torch.Tensor) -> None:
            g = grad.detach().abs()
            if rows is not None:
                g = g[rows]
            stats.gate_sum[t] += float(g.sum())

        z_gate.register_hook(on_pre)
        for gate in (i, f):
            if gate.requires_grad:
                gate.register_hook(on_gate)

    # ----- results ----------------------------------------------------------------------------
    def summary(self) -> dict[str, dict[str, float]]:
        """Per layer: mean ``|dL/dz|``, mean ``|dL/dgate|``, their ratio and the fraction of
        pre-activation gradients at most ``1e-8`` (from the histogram)."""
        n_pre = self.lstm.family.num_gate_preactivations
        out = {}
        for k, s in enumerate(self.layers):
            n = float(s.count.sum())
            if n == 0:
                out[f"layer{k}"] = {"pre_mean_abs": float("nan"), "gate_mean_abs": float("nan")}
                continue
            # per unit there are n_pre pre-activations but two gates (i and f)
            gate_count = n / n_pre * 2
            pre_mean = float(s.pre_sum.sum()) / n
            gate_mean = float(s.gate_sum.sum()) / gate_count
            # bins whose upper edge is at most 1e-8 (edges are exact multiples of 0.25)
            below = float(s.histogram[: int((LOG10_BINS <= -8 + 1e-6).sum())].sum())
            out[f"layer{k}"] = {
                "pre_mean_abs": pre_mean,
                "gate_mean_abs": gate_mean,
                "pre_per_gate_ratio": pre_mean / gate_mean if gate_mean > 0 else float("nan"),
                "pre_fraction_below_1e-8": below / float(s.histogram.sum()),
                "elements": n,
            }
        return out

    def samples(self, layer: int = 0) -> torch.Tensor:
        """The kept random share (``sample_fraction``) of ``|dL/dz|`` values of ``layer``."""
        kept = self.layers[layer].samples
        return torch.cat(kept) if kept else torch.zeros(0)

    def per_step(self, layer: int = 0) -> torch.Tensor:
        """Mean ``|dL/dz|`` at each time step of ``layer`` (NaN where no step was seen)."""
        s = self.layers[layer]
        return s.pre_sum / s.count
