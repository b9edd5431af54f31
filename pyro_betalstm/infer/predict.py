"""Prediction: the paper's mean gates, the posterior predictive over S gate draws, gate draws."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..batch import SequenceBatch, as_whole_numbers
from ..checks import is_integer
from ..data import SequenceDataset
from ..models.base import GateModel
from ..models.classifier import class_index_targets
from ..models.modes import evaluating
from ..nn import GateMode, LayerRun, stack_layers
from ..progress import progress_bar

#: Dimension names of the arrays returned by :func:`sample_gates`.
GATE_DIMS = ("draw", "sequence", "time", "layer", "unit")

#: Sequences per evaluation minibatch by default. Evaluation reads the sequences shortest
#: first, so a minibatch pads to a length near its own; on the CPU a step costs in proportion
#: to the rows it carries, padded ones included, so smaller minibatches waste less, while every
#: minibatch adds a pass over its longest sequence's steps (what a launch-bound GPU pays). 32
#: takes fewer steps than 64 in file order on MuseData, Nottingham and Piano-midi.de, and 6%
#: (test) to 14% (valid) more on JSB (docs/results/benchmarks.md, "Evaluation").
EVAL_BATCH_SIZE = 32

#: The most rows times padded steps that one pass of posterior-predictive draws carries: the
#: S draws of a minibatch run folded into its batch (``n * B`` rows, ``n`` draws at a time), so
#: each step's fixed cost is paid once per ``n`` draws: 1.2 to 1.4x faster on JSB on the CPU,
#: 9.6x on an H200 with the eager loop (docs/results/benchmarks.md, "Posterior-predictive draws
#: folded"). It caps a pass at the rows times steps of mean gates over 32 sequences of 2,048
#: steps (a sampled pass also keeps the log-bases: up to about twice that pass's memory);
#: longer minibatches run one draw at a time. Layers that replay CUDA graphs run one draw at a
#: time too: each folded shape would be one more graph held in their caches.
PREDICTIVE_ROW_STEPS = 2**16


@torch.no_grad()
def evaluate_nll(
    model: GateModel,
    data: SequenceDataset,
    batch_size: int = EVAL_BATCH_SIZE,
    num_samples: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """Negative log-likelihood per prediction, the unit of ``model.num_predictions`` (per
    predicted frame for music, per token for captions, per sequence for classifiers).

    Always reports ``nll_mean_gates`` (the paper's evaluation: gates at their Beta means) and
    ``num_predictions``, the count both NLLs are divided by. With ``num_samples = S > 0`` and a
    latent gate family it also reports ``nll_predictive``, the posterior predictive
    ``-log (1/S) sum_s p(y | u_s)``, ``u_s ~ q(u | x)``, summed over the sequences and divided
    by ``num_predictions`` as well, and ``num_samples`` (``S``).

    The model runs in evaluation mode (no dropout); its mode is restored afterwards.

    :param model: the trained model.
    :param data: the sequences to evaluate, read shortest first (less padding); empty: a
        ValueError.
    :param batch_size: sequences per minibatch (:data:`~pyro_betalstm.infer.EVAL_BATCH_SIZE`, 32).
    :param num_samples: gate draws from the guide per sequence for ``nll_predictive`` (0:
        mean gates only), folded into the minibatch within :data:`PREDICTIVE_ROW_STEPS`.
    :param device: where each minibatch is moved; the model is not moved: it must already be
        on that device.
    :param progress: a bar over the minibatches where one would be watched
        (:func:`~pyro_betalstm.progress.progress_bar`).
    """
    _check_not_empty(data)
    total_mean, total_pred, count = 0.0, 0.0, 0
    with evaluating(model):
        for batch in _minibatches(data, batch_size, progress):
            batch = batch.to(device)
            run = model.run_network(batch, gate_mode="mean")[-1]
            total_mean += float(model.log_likelihood(run, batch).sum())
            if num_samples and model.family.is_latent:
                total_pred += float(predictive_log_likelihood(model, batch, num_samples).sum())
            count += model.num_predictions(batch)
    result = {"nll_mean_gates": -total_mean / count, "num_predictions": count}
    if num_samples and model.family.is_latent:
        result["nll_predictive"] = -total_pred / count
        result["num_samples"] = num_samples
    return result


@torch.no_grad()
def gate_kl_summary(
    model: GateModel,
    data: SequenceDataset,
    batch_size: int = EVAL_BATCH_SIZE,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """How far the gate posterior is from the prior, on ``data`` with the mean-gate network.

    ``kl_per_gate``: the mean over every valid (sequence, step, layer, unit) of
    ``KL(q(u_t | x_t, h_{t-1}) || p(u_t))``, summed over the Gamma basis of one gate pair (the
    analytic Gamma KL; the prior must be Gamma, with no global latent variables of its own, so
    not ``"hierarchical"``: a ValueError otherwise).
    ``alpha_p01``/``alpha_p50``/``alpha_p99``: the 1st, 50th and 99th percentiles of the
    guide's concentrations; ``mean_input_gate`` and ``mean_forget_gate`` with their standard
    deviations over the same elements. A posterior collapsed onto the paper's Gamma(0.5, 1)
    prior has a KL near 0, concentrations near 0.5 and mean gates near 1/2 with a small spread.

    :param model: a model with a latent gate family (a ValueError otherwise).
    :param data: the sequences to evaluate, read shortest first (less padding); empty: a
        ValueError.
    :param batch_size: sequences per minibatch (:data:`~pyro_betalstm.infer.EVAL_BATCH_SIZE`, 32).
    :param device: where each minibatch is moved; the model is not moved: it must already be
        on that device.
    """
    from ..distributions import gamma_kl
    from ..models.gate_sites import prior_concentration_rate
    from ..priors import GatePrior

    if not model.family.is_latent:
        raise ValueError(f"gate family {model.family.name!r} has no latent gates")
    if type(model.prior).model is not GatePrior.model:
        # p(u_t) integrates over the prior's global variables: a KL given one draw of them
        # (the last one the model sampled, if any) is not the KL to the prior
        raise ValueError(
            "gate_kl_summary needs a prior without global latent variables; "
            f"{type(model.prior).__name__} samples its own in model()"
        )
    _check_not_empty(data)
    kl_total, count, alphas, i_all, f_all = 0.0, 0, [], [], []
    with evaluating(model):
        for batch in _minibatches(data, batch_size):
            batch = batch.to(device)
            valid = batch.step_mask().to(batch.inputs.device)
            for k, run in enumerate(model.run_network(batch, gate_mode="mean")):
                i, f = model.family.algebra.mean_gates(run.alpha)  # (B, T, H) each
                d = model.prior.distribution(k, run.inputs, run.previous_hidden)
                params = prior_concentration_rate(d)
                if params is None:
                    raise ValueError("gate_kl_summary needs a Gamma prior (analytic KL)")
                kl = gamma_kl(run.alpha, params[0], 1.0, params[1]).sum(-1)  # (B, T, H)
                kl_total += float(kl[valid].sum())
                count += int(valid.sum()) * kl.shape[-1]
                alphas.append(run.alpha[valid].flatten())
                i_all.append(i[valid].flatten())
                f_all.append(f[valid].flatten())
    alpha, i, f = torch.cat(alphas), torch.cat(i_all), torch.cat(f_all)
    q = exact_quantiles(alpha, (0.01, 0.5, 0.99))
    return {
        "kl_per_gate": kl_total / count,
        "alpha_p01": float(q[0]),
        "alpha_p50": float(q[1]),
        "alpha_p99": float(q[2]),
        "mean_input_gate": float(i.mean()),
        "sd_input_gate": float(i.std()),
        "mean_forget_gate": float(f.mean()),
        "sd_forget_gate": float(f.std()),
    }


def exact_quantiles(values: torch.Tensor, probabilities: Sequence[float]) -> list[float]:
    """The ``probabilities`` quantiles of all of ``values``, interpolated linearly between order
    statistics as :func:`torch.quantile` does, but for any number of elements (torch.quantile
    takes at most 2**24; a MuseData gate KL summary has more) and whatever their order."""
    flat = values.detach().flatten()
    if flat.numel() == 0:
        raise ValueError("exact_quantiles needs at least one value")
    last = flat.numel() - 1
    result = []
    for p in probabilities:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"quantile probabilities lie in [0, 1], got {p}")
        position = last * p
        below, above = math.floor(position), math.ceil(position)
        low = float(torch.kthvalue(flat, below + 1).values)
        high = low if above == below else float(torch.kthvalue(flat, above + 1).values)
        result.append(low + (position - below) * (high - low))
    return result


@torch.no_grad()
def evaluate_classifier(
    model: GateModel,
    data: SequenceDataset,
    batch_size: int = EVAL_BATCH_SIZE,
    num_samples: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """Accuracy and NLL per sequence of a classifier whose ``predict_from_run`` gives logits.

    Reports ``accuracy_mean_gates``, ``error_mean_gates`` (``1 - accuracy``, lower is better, for
    early stopping) and ``nll_mean_gates`` with the paper's mean gates; with ``num_samples = S``
    and latent gates also ``accuracy_predictive`` and ``nll_predictive`` from the class
    probabilities averaged over ``S`` gate draws from the guide. The targets must be class
    indices ``(B,)`` that the model's observation accepts (a ValueError otherwise, also for the
    ``(B, T, K)`` targets of a next-step model).

    :param model: a classifier (e.g. :class:`~pyro_betalstm.models.SequenceClassifier`).
    :param data: the sequences to evaluate, read shortest first (less padding); empty: a
        ValueError.
    :param batch_size: sequences per minibatch (:data:`~pyro_betalstm.infer.EVAL_BATCH_SIZE`, 32).
    :param num_samples: gate draws per sequence for the ``*_predictive`` metrics (0: mean
        gates only), folded into the minibatch within :data:`PREDICTIVE_ROW_STEPS`.
    :param device: where each minibatch is moved; the model is not moved: it must already be
        on that device.
    :param progress: as for :func:`evaluate_nll`.
    """
    _check_not_empty(data)
    sampled = bool(num_samples) and model.family.is_latent

    def class_log_probs(run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        return model.predict_from_run(run, batch).log_softmax(-1)

    correct_mean, correct_pred, nll_mean, nll_pred, count = 0, 0, 0.0, 0.0, 0
    with evaluating(model):
        for batch in _minibatches(data, batch_size, progress):
            batch = batch.to(device)
            run = model.run_network(batch, "mean")[-1]
            targets = _class_indices(model, run, batch)
            log_p = model.predict_from_run(run, batch).log_softmax(-1)
            correct_mean += int((log_p.argmax(-1) == targets).sum())
            nll_mean -= float(log_p.gather(-1, targets[:, None]).sum())
            if sampled:
                draws = _folded_draws(model, batch, num_samples, class_log_probs, None)
                log_p = torch.logsumexp(draws, dim=0) - math.log(num_samples)
                correct_pred += int((log_p.argmax(-1) == targets).sum())
                nll_pred -= float(log_p.gather(-1, targets[:, None]).sum())
            count += batch.batch_size
    result = {
        "accuracy_mean_gates": correct_mean / count,
        "error_mean_gates": 1.0 - correct_mean / count,
        "nll_mean_gates": nll_mean / count,
        "num_predictions": count,
    }
    if sampled:
        result.update(
            accuracy_predictive=correct_pred / count,
            nll_predictive=nll_pred / count,
            num_samples=num_samples,
        )
    return result


def _minibatches(data: SequenceDataset, batch_size: int, progress: bool = False):
    """The evaluators' minibatches: shortest sequences first (each pads to a length near its
    own), with a bar where ``progress`` and one would be watched."""
    batches = data.batches(batch_size, bucket=True)
    if not progress:
        return batches
    return progress_bar(batches, data.num_batches(batch_size), "evaluate", leave=False)


def _check_not_empty(data) -> None:
    """A ValueError for a data set (or a rank's shard of one) without sequences: there is no
    mean over nothing."""
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty data set")


def _class_indices(model: GateModel, run, batch: SequenceBatch) -> torch.Tensor:
    """The batch's class labels ``(B,)`` as integer indices: checked for their shape here (a
    model whose observation takes other targets, such as a next-step model's frames, would
    fail in the comparison with the argmax), by the model's own
    :meth:`~pyro_betalstm.models.GateModel.observation` (range), and whole numbers."""
    class_index_targets(batch)
    _, targets = model.observation(run, batch)
    return as_whole_numbers(targets, "targets must be whole-number class labels")


@torch.no_grad()
def predictive_log_likelihood(
    model: GateModel,
    batch: SequenceBatch,
    num_samples: int,
    row_steps: int | None = None,
) -> torch.Tensor:
    """``log (1/S) sum_s p(y | u_s)`` per sequence with ``S`` gate draws from the guide, in
    evaluation mode (no dropout) as :func:`evaluate_nll`; the model's mode is restored.

    :param model: the trained model.
    :param batch: a batch on the model's device (it is not moved).
    :param num_samples: ``S``, a positive integer (a ValueError otherwise).
    :param row_steps: the draws run folded into the batch, as many at a time as keep rows
        times padded steps within this (None: :data:`PREDICTIVE_ROW_STEPS`; 0: one at a time).
    :returns: ``(B,)``, one value per sequence, in the units of
        :meth:`~pyro_betalstm.models.GateModel.log_likelihood`.
    """
    _check_num_samples(num_samples)
    with evaluating(model):
        draws = _folded_draws(model, batch, num_samples, model.log_likelihood, row_steps)
    return torch.logsumexp(draws, dim=0) - math.log(num_samples)


def draws_per_pass(
    model: GateModel, batch: SequenceBatch, num_samples: int, row_steps: int | None = None
) -> int:
    """How many of ``num_samples`` gate draws of ``batch`` ``model`` runs at once, folded into
    the batch: as many as keep ``draws * B * T`` (T: the padded steps) within ``row_steps``
    (None: :data:`PREDICTIVE_ROW_STEPS`), at least 1; one where its layers would replay CUDA
    graphs (each folded shape would be one more graph held in their caches)."""
    row_steps = PREDICTIVE_ROW_STEPS if row_steps is None else row_steps
    if not is_integer(row_steps) or row_steps < 0:
        raise ValueError(f"row_steps must be a non-negative integer, got {row_steps!r}")
    if model.lstm.recurrence != "eager" and batch.inputs.is_cuda:
        return 1
    steps = batch.inputs.shape[1] if batch.inputs.dim() > 1 else 1
    return max(1, min(num_samples, row_steps // max(1, batch.batch_size * steps)))


def _folded_draws(
    model: GateModel,
    batch: SequenceBatch,
    num_samples: int,
    per_draw: Callable[[LayerRun, SequenceBatch], torch.Tensor],
    row_steps: int | None,
) -> torch.Tensor:
    """``per_draw(run, batch)`` under ``num_samples`` gate draws from the guide, ``(S, B, ...)``:
    the draws run :func:`draws_per_pass` at a time, folded into the batch
    (:meth:`~pyro_betalstm.batch.SequenceBatch.repeat`), which costs each step's fixed work once
    per pass instead of once per draw."""
    B = batch.batch_size
    per_pass = draws_per_pass(model, batch, num_samples, row_steps)
    values = []
    for start in range(0, num_samples, per_pass):
        n = min(per_pass, num_samples - start)
        folded = batch if n == 1 else batch.repeat(n)
        value = per_draw(model.run_network(folded, gate_mode="sample")[-1], folded)
        values.append(value.reshape(n, B, *value.shape[1:]))
    return torch.cat(values)


@torch.no_grad()
def sample_gates(
    model: GateModel, batch: SequenceBatch, num_samples: int = 100, gate_mode: str = "sample"
) -> dict[str, torch.Tensor]:
    """Gate draws from the amortised posterior, with named dimensions.

    Returns ``input_gate`` and ``forget_gate`` with dims :data:`GATE_DIMS` =
    (draw, sequence, time, layer, unit); for latent families also ``alpha`` and, where gates
    are drawn (not with ``"mean"``), ``log_basis``, both with a trailing ``basis`` dimension;
    and ``mask`` (sequence, time) of valid steps. ``num_samples`` must be positive.

    :param gate_mode: ``"sample"`` (draws from the guide), ``"mean"`` (the paper's mean gates:
        identical draws) or a :class:`~pyro_betalstm.nn.GateMode` such as
        :class:`~pyro_betalstm.nn.PriorBasis`; ``"given"`` and ``"prior"``, which need an
        argument, are refused (a ValueError).
    """
    _check_num_samples(num_samples)
    _check_gate_mode(gate_mode)
    return _network_draws(model, batch, num_samples, gate_mode, predictive=False)


@torch.no_grad()
def sample_posterior_predictive(
    model: GateModel, batch: SequenceBatch, num_samples: int = 100, gate_mode: str = "sample"
) -> dict[str, torch.Tensor]:
    """Posterior predictive draws of the targets, each with the gate draw that produced it.

    Draw ``s`` runs the network with gates drawn from the guide on the observed inputs
    (teacher forcing: for a next-step model, one-step-ahead predictions of every frame) and
    samples the targets from the task's :meth:`~pyro_betalstm.models.GateModel.observation`
    distribution. Returns everything :func:`sample_gates` returns, from the same draws, and
    ``targets`` with dims ``(draw, *targets.shape)``, for instance (draw, sequence, time, key)
    for music frames; padded steps hold draws the likelihood masks out. ``gate_mode`` as in
    :func:`sample_gates`.
    """
    _check_num_samples(num_samples)
    _check_gate_mode(gate_mode)
    return _network_draws(model, batch, num_samples, gate_mode, predictive=True)


def _check_num_samples(num_samples: int) -> None:
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")


def _check_gate_mode(gate_mode) -> None:
    # "given" and "prior" need a basis or a sampler, which these functions do not take
    if not isinstance(gate_mode, GateMode) and gate_mode not in ("sample", "mean"):
        raise ValueError(
            "gate_mode must be 'sample', 'mean' or a GateMode (e.g. PriorBasis(sampler)), "
            f"got {gate_mode!r}"
        )


def _network_draws(
    model: GateModel, batch: SequenceBatch, num_samples: int, gate_mode: str, predictive: bool
) -> dict[str, torch.Tensor]:
    with evaluating(model):
        keys = ["input_gate", "forget_gate", "alpha", "log_basis"]
        out: dict[str, list] = {k: [] for k in [*keys, "targets"]}
        lstm_batch = model.embed_batch(batch)  # raw inputs through the model's front end
        mask = model.mask(lstm_batch)  # validated once: run_prepared does not check again
        inputs = lstm_batch.inputs
        for _ in range(num_samples):
            runs = model.lstm.run_prepared(inputs, mask, gate_mode=gate_mode, record_gates=True)
            for name, array in stack_layers(runs, tuple(keys)).items():
                out[name].append(array)
            if predictive:  # the observation takes the raw batch, as in log_likelihood
                distribution, _ = model.observation(runs[-1], batch)
                out["targets"].append(distribution.sample())
    result = {k: torch.stack(v) for k, v in out.items() if v}
    result["mask"] = batch.step_mask()
    return result
