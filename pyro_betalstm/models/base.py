"""The Pyro program shared by every task: gate sites per layer, then a task likelihood."""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import Distribution
from pyro.params import param_with_module_name
from torch import nn

from ..batch import SequenceBatch, as_whole_numbers, lengths_to_mask
from ..checks import is_integer
from ..distributions.numerics import into_open_unit_interval
from ..nn import (
    GivenBasis,
    LayerCall,
    LayerRun,
    PriorBasis,
    SampledBasis,
    StochasticLSTM,
    stack_layers,
)
from ..nn.stochastic_lstm import validate_sequences
from ..priors import GatePrior, PriorSpec, get_prior
from .gate_sites import (
    FoldedDraws,
    GuideGateSequence,
    KeptRun,
    PriorGateSequence,
    draw_shape_of,
    sample_prior_log_basis,
    unfold_draws,
)

#: Name of the Pyro sample site of the observed targets (see :meth:`GateModel.likelihood`).
OBSERVED_SITE = "obs"

#: Names of the ``pyro.deterministic`` sites of the gates, ``(B, T, L, H)`` each.
GATE_SITES = ("input_gate", "forget_gate")
#: Names of the ``pyro.deterministic`` sites of the states (with ``trace_states=True``).
STATE_SITES = ("hidden_state", "cell_state")
#: Dimension names of the gate and state sites, after any leading sample dimension.
GATE_SITE_DIMS = ("sequence", "time", "layer", "unit")
#: Dimension names of a latent gate site's value, the log Gamma basis of one layer.
BASIS_SITE_DIMS = ("sequence", "time", "unit", "basis")

_namespaces = itertools.count()
#: model -> {param store name: weak reference to the tensor the model last put there}: an entry
#: that is another tensor was put there by the store itself (``load``, ``set_state``)
_registered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def site_name(layer: int) -> str:
    """Name of the latent gate site of ``layer``: its value is the **log** of the Gamma basis,
    ``log u`` ``(B, T, H, K)`` (dims :data:`BASIS_SITE_DIMS`, the layout of
    :mod:`pyro_betalstm.distributions.gate_algebra`); ``family.gates_from_log_basis(value)``
    maps it to the gates, which the model also records as the sites :data:`GATE_SITES`."""
    return f"log_gamma_basis_{layer}"


def check_size(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or a TypeError/ValueError naming ``name``: an integer >= ``minimum``
    (an output layer's size, so 2.5 or True is a mistake, not a size)."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def any_index_outside(indices: torch.Tensor, size: int) -> bool:
    """Whether any of the integer ``indices`` lies outside ``[0, size)`` (False for none): one
    read of the device, not a min and a max (each read makes a GPU step wait)."""
    return bool(((indices < 0) | (indices >= size)).any())


def checked_token_ids(inputs: torch.Tensor, vocab_size: int, what: str) -> torch.Tensor:
    """``(B, T)`` int64 token ids from a batch's ``inputs``, ``(B, T)`` or ``(B, T, 1)``:
    integers, or floats that are whole numbers (a padded data set may store ids as floats),
    each in ``[0, vocab_size)``. A ValueError naming ``what`` (``"text"``, ``"caption"``)
    otherwise. One read of the device (two for float ids)."""
    ids = inputs[..., 0] if inputs.dim() == 3 and inputs.shape[-1] == 1 else inputs
    if ids.dim() != 2 or ids.dtype == torch.bool or ids.is_complex():
        raise ValueError(
            f"{what} inputs must be token ids of shape (B, T, 1) or (B, T), got {ids.dtype} "
            f"of shape {tuple(inputs.shape)}"
        )
    ids = as_whole_numbers(ids, f"{what} token ids must be whole numbers")
    if any_index_outside(ids, vocab_size):
        raise ValueError(
            f"{what} token ids must lie in [0, {vocab_size - 1}], got values in "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    return ids


class GateModel(nn.Module):
    """A stochastic-gate LSTM with gate priors, an amortised guide and a task likelihood.

    Subclasses implement :meth:`observation` (the distribution of the targets given the top
    layer's run, from which the base class builds :meth:`likelihood` and
    :meth:`log_likelihood`) and :meth:`predict_from_run`, and a model with an input front end
    overrides :meth:`embed_batch`. ``model`` and ``guide`` are Pyro callables taking a raw
    :class:`SequenceBatch` (they embed it themselves, batch first).

    Parameters: every parameter is an ordinary ``nn.Module`` parameter, and ``model`` and
    ``guide`` also register them with Pyro's param store (as ``pyro.module`` does) under the
    instance's own namespace :attr:`pyro_namespace`. So a plain Pyro loop,
    ``SVI(m.model, m.guide, pyro.optim.Adam({...}), Trace_ELBO())``, trains the model, and
    ``elbo.differentiable_loss(m.model, m.guide, batch)`` with any torch optimiser does too
    (what :func:`~pyro_betalstm.infer.fit` does). Two models in one process never share a name.

    The trace: latent gate site ``log_gamma_basis_{k}`` per layer (see :func:`site_name`), the
    gates as ``pyro.deterministic`` sites ``input_gate`` and ``forget_gate`` ``(B, T, L, H)`` in
    ``(0, 1)`` (dims :data:`GATE_SITE_DIMS`; a gate that rounds to 0 or 1 in its dtype is
    recorded one step inside; values at padded steps are computed but unused) when
    :attr:`trace_gates` is set (the default), the states ``hidden_state`` (zero at padded steps)
    and ``cell_state`` likewise when :attr:`trace_states` is set, and the observed ``"obs"``.

    Several draws at once: inside an outer ``pyro.plate`` (vectorised ELBO particles,
    ``Predictive(parallel=True)``) every site gets the plate's dimensions first, e.g. gates
    ``(draws, B, T, L, H)``; the draws' recurrences run folded into one batch.

    Loss units: ``svi.step(batch)`` returns the negative ELBO of the whole data set (the sequence
    plate is scaled by ``batch.dataset_size / batch_size``); :func:`~pyro_betalstm.infer.fit`
    reports it per sequence. :func:`~pyro_betalstm.infer.loss_per_sequence` converts.

    :param lstm: the recurrent network (its gate family decides whether gates are latent).
    :param prior: the gate prior: a name from :data:`~pyro_betalstm.priors.PRIORS`
        (``"gamma"``, ``"learnable"``, ``"conditional"``, ``"hierarchical"``), a
        :class:`~pyro_betalstm.priors.GatePrior` instance, a function ``(layer, inputs,
        prev_hidden) -> distribution``, or None for the paper's ``Gamma(0.5, 1)`` (see
        :func:`~pyro_betalstm.priors.get_prior`). A deterministic gate family (sigmoid,
        coupled, gumbel, ...) has no latent gates: it ignores a prior, with a warning; the
        example scripts refuse ``--prior`` and ``--kl-weight`` with one.
    :param kl_weight: the paper's ``kl_lambda``, a finite number >= 0; multiplies the gate KL
        (and can be annealed by setting the attribute during training, which checks it too).
        None (the default) means 1. A deterministic gate family has no KL term: a positive
        weight given to one is ignored, with a warning (0 states that there is none).
    """

    #: record the gates as ``pyro.deterministic`` sites (see the class docstring)
    trace_gates: bool = True
    #: record the hidden and cell states as ``pyro.deterministic`` sites too
    trace_states: bool = False

    def __init__(
        self,
        lstm: StochasticLSTM,
        prior: PriorSpec = None,
        kl_weight: float | None = None,
    ):
        super().__init__()
        if not lstm.batch_first:
            raise ValueError(
                "GateModel needs StochasticLSTM(..., batch_first=True): its Pyro program takes "
                "SequenceBatch inputs, which are batch first (batch, time, features); "
                "batch_first=False applies only to StochasticLSTM.forward"
            )
        self.lstm = lstm
        self.prior: GatePrior = get_prior(prior)
        if lstm.family.is_latent:  # deterministic gate families have no latent gates to prior
            sizes = [layer.input_size for layer in lstm.layers]
            self.prior.setup(lstm.family, sizes, lstm.hidden_size)
        elif prior is not None:
            warnings.warn(
                f"the {lstm.family.name!r} gate family is deterministic: it has no latent gates, "
                f"so the prior {prior!r} is ignored",
                UserWarning,
                stacklevel=3,  # the caller of the task model's __init__
            )
        self.kl_weight = 1.0 if kl_weight is None else kl_weight  # checked by the setter
        if kl_weight is not None and self.kl_weight > 0 and not lstm.family.is_latent:
            warnings.warn(
                f"the {lstm.family.name!r} gate family is deterministic: it has no gate KL, "
                f"so kl_weight={self.kl_weight:g} is ignored",
                UserWarning,
                stacklevel=3,  # the caller of the task model's __init__
            )
        self._guide_runs: list[KeptRun] = []  # the guide's runs, for the model to reuse
        # (raw batch, embedded batch, its step mask) of the guide's last call, for the model
        self._embedded: tuple[SequenceBatch, SequenceBatch, torch.Tensor | None] | None = None

    @property
    def kl_weight(self) -> float:
        """The weight of the gate KL in the loss (``0``: no prior term)."""
        return self._kl_weight

    @kl_weight.setter
    def kl_weight(self, value: float) -> None:
        # checked here, not at the first loss: NaN, inf or a negative weight ruins training
        one_element = isinstance(value, torch.Tensor) and value.numel() == 1
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) or one_element):
            raise TypeError(f"kl_weight must be a number, got {value!r}")
        weight = float(value)
        if not 0 <= weight < math.inf:
            raise ValueError(f"kl_weight must be finite and non-negative, got {weight}")
        self._kl_weight = weight

    @property
    def family(self):
        return self.lstm.family

    @property
    def pyro_namespace(self) -> str:
        """The prefix of this model's parameters in Pyro's param store (``pyro.module``'s name):
        unique to the instance, so two models in one process do not collide (a copy of a model
        gets a new one). Numbered in creation order; set a name of your own
        (``model.pyro_namespace = "jsb_model"``) to load a saved store in another process
        whatever the order the models are built in there."""
        if self.__dict__.get("_namespace_owner") != id(self):
            self.__dict__["_namespace"] = f"{type(self).__name__}_{next(_namespaces)}"
            self.__dict__["_namespace_owner"] = id(self)
        return self.__dict__["_namespace"]

    @pyro_namespace.setter
    def pyro_namespace(self, name: str) -> None:
        # "$$$" separates the namespace from the parameter's name in Pyro's store
        if not isinstance(name, str) or not name or "$$$" in name:
            raise ValueError(
                f"pyro_namespace must be a non-empty string without '$$$', got {name!r}"
            )
        self.__dict__["_namespace"] = name
        self.__dict__["_namespace_owner"] = id(self)

    def register_parameters(self) -> None:
        """Register every trainable parameter with Pyro under :attr:`pyro_namespace`, as
        ``pyro.module(self.pyro_namespace, self, update_module_params=True)`` does (``model``
        and ``guide`` call it).

        The param store holds the module's own tensors, so Pyro's optimisers update the
        module's weights in place. An entry under this model's name that holds another tensor:

        - one the store put there (``pyro.get_param_store().load(path)``, ``set_state``): its
          values are copied into the module's parameter, so a saved param store restores
          the model, as in Pyro (``ValueError`` when its shape differs);
        - one the model put there earlier (its parameter was since replaced, by
          ``load_state_dict(..., assign=True)`` say): the module's parameter replaces it."""
        namespace, store = self.pyro_namespace, pyro.get_param_store()
        ours = _registered.setdefault(self, {})
        for name, value in self.named_parameters():
            if not value.requires_grad:  # frozen (e.g. embeddings): nothing to train
                continue
            full_name = param_with_module_name(namespace, name)
            if full_name in store and store[full_name] is not value:
                entry, earlier = store[full_name], ours.get(full_name)
                if earlier is None or earlier() is not entry:
                    _copy_from_store(value, entry, full_name)
                del store[full_name]
            pyro.param(full_name, value)
            ours[full_name] = weakref.ref(value)

    # ----- task interface --------------------------------------------------------------------
    def observation(self, run: LayerRun, batch: SequenceBatch) -> tuple[Distribution, torch.Tensor]:
        """What the task observes: the distribution of the targets given the top layer's ``run``
        and the (checked) targets it scores.

        The distribution has batch shape ``(B,)``, one event per sequence (see
        :meth:`~pyro_betalstm.models.GateModel.over_valid_steps` for targets at every step).
        Subclasses implement this one method; :meth:`~pyro_betalstm.models.GateModel.likelihood`
        and :meth:`~pyro_betalstm.models.GateModel.log_likelihood` are built from it.
        """
        raise NotImplementedError

    def predict_from_run(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        """Task output (for instance logits) from the top layer's run."""
        raise NotImplementedError

    def likelihood(self, run: LayerRun, batch: SequenceBatch) -> None:
        """The observed site ``"obs"`` of the Pyro model: the targets under :meth:`observation`."""
        distribution, observed = self.observation(run, batch)
        pyro.sample(OBSERVED_SITE, distribution, obs=observed)

    def log_likelihood(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        """``log p(targets | gates)`` per sequence, ``(B,)``, under :meth:`observation`."""
        distribution, observed = self.observation(run, batch)
        return distribution.log_prob(observed)

    @staticmethod
    def over_valid_steps(distribution: Distribution, batch: SequenceBatch) -> Distribution:
        """A distribution over steps, batch shape ``(B, T, *rest)``, as one event per sequence:
        the steps past ``batch.lengths`` masked out, the steps and ``rest`` summed.

        Uses only ``batch.lengths`` (not the inputs), so it serves raw and embedded batches alike.
        A batch with lengths is masked even when every sequence is full (the same values): asking
        would read the device, a host sync on a GPU.
        """
        event_dims = len(distribution.batch_shape) - 1
        if batch.lengths is not None:
            steps = lengths_to_mask(batch.lengths, batch.inputs.shape[1])
            distribution = distribution.mask(steps.reshape(*steps.shape, *[1] * (event_dims - 1)))
        return distribution.to_event(event_dims)

    def num_predictions(self, batch: SequenceBatch) -> int:
        """How many predictions the batch's likelihood scores (the unit of reported NLL)."""
        return batch.batch_size

    # ----- the Pyro program --------------------------------------------------------------------
    def _kl_scale(self):
        """``poutine.scale(kl_weight)`` on the gate sites; ``kl_weight == 0`` (no prior term, the
        paper's bBLSTM(5G) without prior) masks them instead, as Pyro rejects a zero scale."""
        if self.kl_weight == 0:
            return poutine.mask(mask=False)
        return poutine.scale(scale=self.kl_weight)

    def _plate(self, batch: SequenceBatch):
        size = batch.dataset_size or batch.batch_size
        return pyro.plate(
            "sequences", size, subsample=torch.arange(batch.batch_size, device=batch.inputs.device)
        )

    def mask(self, batch: SequenceBatch) -> torch.Tensor | None:
        """Validate a batch as the LSTM sees it (embedded, see :meth:`embed_batch`); the
        ``(B, T)`` mask of valid steps, or None when every sequence has the full length."""
        dtype = next((p.dtype for p in self.lstm.parameters()), None)
        return validate_sequences(batch.inputs, batch.lengths, self.lstm.input_size, dtype)[1]

    def prior_sampler(
        self, layer: int
    ) -> Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]:
        """The sampler of ``layer``'s log gate basis from the prior, for a layer run in
        ``mode="prior"``: ``sampler(t, x_t, h_prev)`` draws ``(B, hidden_size, basis_size)``
        given step ``t``'s input and the previous hidden state (in log space, so that small
        Gamma concentrations do not underflow)."""

        def sampler(t, x_t, h_prev):
            d = self.prior.distribution(layer, x_t, h_prev)
            shape = (x_t.shape[0], self.lstm.hidden_size, self.family.basis_size)
            return sample_prior_log_basis(d, torch.Size(shape), layer, like=x_t)

        return sampler

    def _embedded_for_model(
        self, batch: SequenceBatch
    ) -> tuple[SequenceBatch, torch.Tensor | None]:
        """The guide's embedded inputs and step mask when the guide ran on this very batch
        object (same front-end pass, same dropout mask, already validated: no second check,
        whose host reads would stall a GPU mid-step), else a fresh :meth:`embed_batch` and
        :meth:`mask`. Taking the cache clears it, so no batch outlives its ELBO evaluation."""
        cached, self._embedded = self._embedded, None
        if cached is not None and cached[0] is batch:
            return cached[1], cached[2]
        embedded = self.embed_batch(batch)
        return embedded, self.mask(embedded)

    def model(self, batch: SequenceBatch) -> None:
        """``p(targets, u | inputs)``: gate sites from the prior, then the task likelihood.

        ``batch`` is raw (as the data set gives it): the model embeds it with
        :meth:`embed_batch`, or reuses the guide's embedding of the same batch object."""
        self.register_parameters()
        batch, mask = self._embedded_for_model(batch)
        lstm = self.lstm
        record = self._records_gates
        if self.family.is_latent:
            self.prior.model()
        draw_shapes: list[torch.Size] = []  # leading sample dims of the gate sites' values
        with self._plate(batch):
            if self.family.is_latent:
                hook = self._model_layer(batch, mask, draw_shapes)
                runs = lstm.run_prepared(batch.inputs, mask, record_gates=record, layer_hook=hook)
            else:
                runs = lstm.run_prepared(
                    batch.inputs, mask, gate_mode="sample", record_gates=record
                )
            self._guide_runs = []  # consumed: no graph outlives its ELBO evaluation
            draw_shape = draw_shapes[0] if draw_shapes else torch.Size()
            self._trace_runs(runs, draw_shape)
            if not draw_shape:
                self.likelihood(runs[-1], batch)
            else:  # the runs hold N draws folded into their batch
                folded = batch.repeat(math.prod(draw_shape))
                distribution, observed = self.observation(runs[-1], folded)
                observed = unfold_draws(observed, draw_shape)
                pyro.sample(OBSERVED_SITE, FoldedDraws(distribution, draw_shape), obs=observed)

    @contextmanager
    def untraced(self) -> Iterator[GateModel]:
        """Within the block the model records no ``pyro.deterministic`` gate or state sites
        (``trace_gates`` and ``trace_states`` off, restored after). No loss or draw changes:
        :func:`~pyro_betalstm.infer.fit` trains inside it, where nothing reads those sites
        and recording them costs about 3% of a latent-gate step and 10% of a sigmoid one."""
        saved = self.trace_gates, self.trace_states
        self.trace_gates = self.trace_states = False
        try:
            yield self
        finally:
            self.trace_gates, self.trace_states = saved

    @property
    def _records_gates(self) -> bool:
        return bool(self.trace_gates or self.trace_states)

    def _trace_runs(self, runs: list[LayerRun], draw_shape: torch.Size = torch.Size()) -> None:
        """The gates (and states) of every layer as ``pyro.deterministic`` sites ``(B, T, L, H)``,
        inside the sequence plate (the batch dimension is the plate's, the rest the event);
        ``(*draws, B, T, L, H)`` for runs of several folded draws."""
        arrays = {}
        if self.trace_gates:  # inside (0, 1), as GateDistribution samples are (see there)
            for name, gates in stack_layers(runs, GATE_SITES).items():
                arrays[name] = into_open_unit_interval(gates)
        if self.trace_states:
            arrays["hidden_state"] = torch.stack([run.outputs for run in runs], dim=2)
            arrays["cell_state"] = torch.stack([run.cell_states for run in runs], dim=2)
        for name, value in arrays.items():
            pyro.deterministic(name, unfold_draws(value, draw_shape), event_dim=3)

    def _model_layer(
        self, batch: SequenceBatch, mask: torch.Tensor | None, draw_shapes: list[torch.Size]
    ):
        """The model's layer hook: a prior gate site per layer, which reuses the guide's run
        when its value is the guide's very draw (the layer input is then never formed).
        Appends each value's leading sample dimensions to ``draw_shapes``."""
        B, T = batch.inputs.shape[:2]
        shape = (B, T, self.lstm.hidden_size, self.family.basis_size)

        def model_layer(call: LayerCall) -> LayerRun:
            k = call.index

            def run_given(value, num_draws=1):
                return _run_layer(call, GivenBasis(value), num_draws, B)

            def run_prior(num_draws=1):
                return _run_layer(call, PriorBasis(self.prior_sampler(k)), num_draws, B)

            site = PriorGateSequence(shape, mask, run_given, self.prior, k, run_prior)
            if k < len(self._guide_runs):
                guide_kept = self._guide_runs[k]
                site.kept = KeptRun(guide_kept.run, guide_kept.value)
            with self._kl_scale():
                value = pyro.sample(site_name(k), site)
            draw_shapes.append(draw_shape_of(value))
            return site.run_for(value)  # the guide's run when value is its very draw

        return model_layer

    def guide(self, batch: SequenceBatch) -> None:
        """Amortised ``q(u | inputs)``: each layer's gate network gives ``Gamma(alpha_t, 1)``.

        ``batch`` is raw: the guide embeds it with :meth:`embed_batch` and keeps the result for
        the model's call on the same batch object."""
        self.register_parameters()
        self._guide_runs, self._embedded = [], None
        if not self.family.is_latent:
            return
        embedded = self.embed_batch(batch)
        lstm, mask = self.lstm, self.mask(embedded)
        self._embedded = (batch, embedded, mask)
        batch = embedded
        self.prior.guide()

        B, T = batch.inputs.shape[:2]

        def guide_layer(call: LayerCall) -> LayerRun:
            call.input()  # formed before the site, so dropout is drawn before the gates

            def run_layer(value, num_draws=1):
                mode = SampledBasis() if value is None else GivenBasis(value)
                return _run_layer(call, mode, num_draws, B)

            shape = (B, T, lstm.hidden_size, self.family.basis_size)
            site = GuideGateSequence(shape, mask, run_layer)
            with self._kl_scale():
                value = pyro.sample(site_name(call.index), site)
            run = site.run_for(value)  # its own draw's run, or the given value's (conditioned)
            self._guide_runs.append(site.kept)
            return run

        with self._plate(batch):
            lstm.run_prepared(
                batch.inputs, mask, record_gates=self._records_gates, layer_hook=guide_layer
            )

    # ----- prediction ----------------------------------------------------------------------------
    def embed_batch(self, batch: SequenceBatch) -> SequenceBatch:
        """The batch as the LSTM sees it. The identity here; a model with an input front end
        (word embeddings, an image encoder) returns ``inputs`` mapped to ``(B, T, D)`` floats, so
        that :meth:`model`, :meth:`guide`, :meth:`run_network` and gate draws
        (:func:`~pyro_betalstm.infer.sample_gates`) take the raw batch. The Pyro program calls
        it once per ELBO evaluation (for a latent family the model reuses the guide's result)."""
        return batch

    def run_network(self, batch: SequenceBatch, gate_mode: str = "mean") -> list[LayerRun]:
        """Run the network without Pyro: ``mean`` gates (the paper's evaluation) or ``sample``."""
        batch = self.embed_batch(batch)
        return self.lstm.run_prepared(batch.inputs, self.mask(batch), gate_mode=gate_mode)


def _copy_from_store(parameter: torch.Tensor, entry: torch.Tensor, name: str) -> None:
    """Copy a param store entry's values into the module's own ``parameter``."""
    if entry.shape != parameter.shape:
        raise ValueError(
            f"the param store's {name!r} has shape {tuple(entry.shape)} but this model's "
            f"parameter has {tuple(parameter.shape)}: the store was saved from another model "
            "(pyro.clear_param_store() before using this one, or load the matching store)"
        )
    with torch.no_grad():
        parameter.copy_(entry)


def _run_layer(call: LayerCall, mode, num_draws: int, batch_size: int) -> LayerRun:
    """Run ``call``'s layer with gate ``mode``; for ``num_draws > 1`` draws at once, folded into
    the batch (draw-major): the layer input is repeated unless the layer below already ran
    folded, and so is the step mask."""
    if num_draws == 1:
        return call.run(mode)
    if call.state is not None:
        raise ValueError("several draws at once need the zero initial state")
    x = call.input()
    if x.shape[0] == batch_size:
        x = x.repeat(num_draws, *[1] * (x.dim() - 1))
    mask = None if call.mask is None else call.mask.repeat(num_draws, 1)
    return call.layer(x, mask, None, mode, call.record_gates)
