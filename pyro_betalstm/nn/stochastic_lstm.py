"""Multi-layer LSTM with a selectable gate family and the interface of ``torch.nn.LSTM``."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..batch import as_whole_numbers, lengths_tensor, lengths_to_mask
from ..checks import is_integer
from ..gates import GateFamily, get_gate_family
from .gate_modes import GateMode, GateModeName, GivenBasis, as_gate_mode
from .layer import GateLayer, LayerRun


def _lengths_of_shape(lengths, batch_size: int, device) -> torch.Tensor:
    """``lengths`` as ``(B,)`` int64 on ``device``, checked from dtype and shape (and, for float
    lengths only, that they are whole: a read); the range is left to the caller."""
    lengths = lengths_tensor(lengths, device)
    if lengths.dtype == torch.bool or lengths.is_complex():  # .long() would make True a 1
        raise TypeError(f"lengths must be integers, one per sequence; got dtype {lengths.dtype}")
    if lengths.shape != (batch_size,):
        raise ValueError(
            f"lengths must have shape ({batch_size},), one per sequence, got {tuple(lengths.shape)}"
        )
    return as_whole_numbers(lengths, "lengths must be whole numbers")


def _in_range(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """A 0-d bool tensor, on the lengths' device: every length in ``[1, max_len]`` (not read)."""
    return (lengths.min() >= 1) & (lengths.max() <= max_len)


def _raise_out_of_range(lengths: torch.Tensor, max_len: int) -> None:
    raise ValueError(
        f"lengths must lie in [1, {max_len}] (the padded sequence length); got values in "
        f"[{int(lengths.min())}, {int(lengths.max())}]"
    )


GATE_MODES = ("sample", "mean", "given", "prior")


def check_gate_mode(gate_mode) -> None:
    """Raise ValueError unless ``gate_mode`` is a :class:`GateMode` or one of :data:`GATE_MODES`."""
    if not isinstance(gate_mode, GateMode) and gate_mode not in GATE_MODES:
        raise ValueError(f"unknown gate_mode {gate_mode!r}; expected one of {GATE_MODES}")


def check_inputs(inputs: torch.Tensor, input_size: int, dtype: torch.dtype | None = None) -> None:
    """Check batch-first ``inputs`` ``(B, T, input_size)`` from their shape and dtype alone: no
    value is read, so no host sync (see :meth:`~pyro_betalstm.nn.StochasticLSTM.run`).
    ``dtype``: the network's parameter dtype, which the inputs must have."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3:
        raise ValueError(
            "input must be a 3-D tensor (batch, time, features) with batch_first=True or "
            f"(time, batch, features) otherwise; got shape {tuple(getattr(inputs, 'shape', ()))}"
        )
    if dtype is not None and inputs.dtype != dtype:
        # a network can only take a floating dtype: offer converting it only to one
        network = f" or the network (.to({inputs.dtype}))" if inputs.is_floating_point() else ""
        raise ValueError(
            f"input has dtype {inputs.dtype}; the network's parameters are {dtype}: convert the "
            f"input (input.to({dtype})){network}"
        )
    B, T, D = inputs.shape
    if D != input_size:
        raise ValueError(f"input has {D} features per step; this network expects {input_size}")
    if B == 0 or T == 0:
        raise ValueError(f"empty batch: got {B} sequences of length {T}")


def check_mask(mask, batch_size: int, max_len: int) -> None:
    """Raise ValueError unless ``mask`` is None or a bool ``(B, T)`` tensor of valid steps."""
    if mask is None:
        return
    expected = (batch_size, max_len)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != expected:
        got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, torch.Tensor) else type(mask)
        raise ValueError(
            f"mask must be a torch.bool tensor of shape (batch, time) = {expected} marking the "
            f"valid steps (or None), got {got}"
        )


def validate_sequences(
    inputs: torch.Tensor, lengths, input_size: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Check batch-first ``inputs`` ``(B, T, input_size)`` and ``lengths``; return them with the mask.

    The mask is None when every sequence has the full length. ``dtype``: the network's
    parameter dtype, which the inputs must have. Besides
    :func:`~pyro_betalstm.nn.stochastic_lstm.check_inputs` this reads the values (finite inputs,
    the lengths' range, whether all are full): one host sync per batch, as the three tests come
    back from the device together.
    """
    check_inputs(inputs, input_size, dtype)
    finite = torch.isfinite(inputs).all()
    if lengths is None:
        if not bool(finite):
            raise ValueError("input contains NaN or infinite values")
        return inputs, None, None
    B, T, _ = inputs.shape
    lengths = _lengths_of_shape(lengths, B, inputs.device)
    if B == 0:  # no values to read (an empty batch is refused by SequenceBatch; a raw call)
        return inputs, None, lengths
    mask = lengths_to_mask(lengths, T)
    # the three tests as bits of one integer: a single read (``item``, counted by host_syncs)
    flags = int(finite.long() | _in_range(lengths, T).long() << 1 | mask.all().long() << 2)
    if not flags & 1:
        raise ValueError("input contains NaN or infinite values")
    if not flags & 2:
        _raise_out_of_range(lengths, T)
    return inputs, (None if flags & 4 else mask), lengths


class LayerCall:
    """Layer ``index``'s turn in :meth:`StochasticLSTM.run`, as a ``layer_hook`` sees it.

    :meth:`input` forms the layer's input on first use (the network input for layer 0, else
    the outputs of the layer below with dropout while training) and keeps it, so a hook that
    does not run the layer draws no dropout mask; :meth:`run` runs the layer on that input.
    """

    def __init__(
        self,
        lstm: StochasticLSTM,
        index: int,
        below: torch.Tensor | LayerRun,
        mask: torch.Tensor | None,
        state: tuple[torch.Tensor, torch.Tensor] | None,
        record_gates: bool,
    ):
        self.index = index
        self.layer: GateLayer = lstm.layers[index]
        self.mask = mask
        self.state = state
        self.record_gates = record_gates
        self._lstm, self._below, self._input = lstm, below, None

    def input(self) -> torch.Tensor:
        """The layer's batch-first input ``(B, T, D)``."""
        if self._input is None:
            below = self._below
            self._input = below if self.index == 0 else self._lstm._drop(below.outputs)
        return self._input

    def run(self, mode: GateModeName | GateMode = "sample") -> LayerRun:
        """Run the layer on :meth:`input` with gate ``mode`` (see :class:`GateLayer`)."""
        return self.layer(self.input(), self.mask, self.state, mode, self.record_gates)


#: ``hook(call) -> LayerRun``: run one layer in :meth:`StochasticLSTM.run` (see :class:`LayerCall`).
LayerHook = Callable[[LayerCall], LayerRun]


class StochasticLSTM(nn.Module):
    """LSTM whose input and forget gates come from a gate family (see :mod:`pyro_betalstm.gates`).

    The signature follows :class:`torch.nn.LSTM`: ``input_size, hidden_size, num_layers, bias,
    batch_first, dropout``; ``forward`` returns ``output, (h_n, c_n)``. Variable-length batches are
    given by ``lengths`` or a :class:`~torch.nn.utils.rnn.PackedSequence`; padded steps leave the
    state unchanged and give zero outputs, as packed ``torch.nn.LSTM`` does. With the same
    weights (see :meth:`load_torch_lstm`) the ``sigmoid`` family reproduces ``torch.nn.LSTM``.

    Latent gate families sample their gates in training mode (``gate_mode="sample"``) and use
    the paper's mean gates otherwise; pass ``gate_mode`` to choose.

    Dropout (training only): ``dropout`` on the input of every layer but the first, as in
    ``torch.nn.LSTM`` (so with one layer and no ``output_dropout`` it has no effect, and a
    UserWarning says so, as torch's does); ``locked_dropout=True`` draws one mask per sequence
    shared over time (variational dropout) instead of one per element; ``output_dropout=True``
    also drops the last layer's output: ``forward``'s output, :meth:`top_output` (the outputs
    :class:`~pyro_betalstm.models.NextStepBernoulli` and
    :class:`~pyro_betalstm.models.CaptionDecoder` read) and :meth:`top_state` (the last state
    the classifiers read). Song et al.'s music code uses locked dropout on every layer's output,
    the last included.
    ``basis_offset``: training gates are computed from ``u + basis_offset`` instead of the Gamma
    draw ``u`` (the authors' code adds 1e-3); the latent variable stays ``log u``, and the mean
    gates are unchanged. ``recurrence``: ``"auto"`` (the default: CUDA graphs of the
    Python loop for CUDA inputs, the loop itself for any other), ``"eager"`` (the loop always)
    or ``"cuda_graph"`` (graphs, CUDA inputs required; see
    :mod:`~pyro_betalstm.nn.cuda_graphs` and :meth:`set_recurrence`); ``compile_cell``: each
    step's elementwise work through ``torch.compile`` (:mod:`~pyro_betalstm.nn.step`).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        gate: str | GateFamily = "bivariate",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        locked_dropout: bool = False,
        output_dropout: bool = False,
        basis_offset: float = 0.0,
        recurrence: str = "auto",
        compile_cell: bool = False,
    ):
        super().__init__()
        sizes = {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers}
        for name, value in sizes.items():
            if not is_integer(value):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError(
                "input_size, hidden_size and num_layers must be positive integers, got "
                f"{input_size}, {hidden_size}, {num_layers}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if dropout > 0 and num_layers == 1 and not output_dropout:
            warnings.warn(
                f"dropout={dropout} has no effect with num_layers=1: it acts between layers, "
                "and on the last layer's output only with output_dropout=True",
                UserWarning,
                stacklevel=2,
            )
        if not (basis_offset >= 0.0 and basis_offset < float("inf")):
            raise ValueError(f"basis_offset must be finite and non-negative, got {basis_offset}")
        self.family = get_gate_family(gate)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.dropout = dropout
        self.locked_dropout = bool(locked_dropout)
        self.output_dropout = bool(output_dropout)
        self.basis_offset = float(basis_offset)
        self.layers = nn.ModuleList(
            GateLayer(
                input_size if k == 0 else hidden_size,
                hidden_size,
                self.family,
                bias,
                basis_offset=basis_offset,
                recurrence=recurrence,
                compile_cell=compile_cell,
            )
            for k in range(num_layers)
        )

    @property
    def recurrence(self) -> str:
        """How the layers run their recurrence (``"eager"``, ``"auto"``, ``"cuda_graph"``)."""
        return self.layers[0].recurrence

    def set_recurrence(
        self,
        recurrence: str,
        max_graphs: int | None = None,
        compile_cell: bool | None = None,
    ) -> StochasticLSTM:
        """Set every layer's recurrence (:meth:`GateLayer.set_recurrence`; ``max_graphs`` or
        ``compile_cell`` None, the default, keeps each layer's own); returns ``self``."""
        for layer in self.layers:
            layer.set_recurrence(recurrence, max_graphs, compile_cell)
        return self

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"gate={self.family.name!r}, batch_first={self.batch_first}, dropout={self.dropout}"
            + (", locked_dropout=True" if self.locked_dropout else "")
            + (", output_dropout=True" if self.output_dropout else "")
            + (f", basis_offset={self.basis_offset}" if self.basis_offset else "")
            + (f", recurrence={self.recurrence!r}" if self.recurrence != "auto" else "")
            + (", compile_cell=True" if self.layers[0].compile_cell else "")
        )

    # ----- input handling ----------------------------------------------------------------------
    def prepare(
        self, input: torch.Tensor | PackedSequence, lengths=None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Batch-first inputs, the step mask (None when every sequence is full) and lengths."""
        if isinstance(input, PackedSequence):
            input, lengths = pad_packed_sequence(input, batch_first=True)
        elif not self.batch_first and isinstance(input, torch.Tensor) and input.dim() == 3:
            input = input.transpose(0, 1)
        return validate_sequences(input, lengths, self.input_size, self._dtype())

    def _dtype(self) -> torch.dtype | None:
        return next((p.dtype for p in self.parameters()), None)

    def _check_hx(self, hx, batch_size: int, dtype: torch.dtype) -> None:
        expected = (self.num_layers, batch_size, self.hidden_size)
        if not (isinstance(hx, tuple | list) and len(hx) == 2):
            raise ValueError(f"hx must be a pair (h_0, c_0) of tensors of shape {expected}")
        for name, t in zip(("h_0", "c_0"), hx, strict=True):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"hx: {name} must have shape (num_layers, batch, hidden_size) = {expected}, "
                    f"got {shape}"
                )
            if t.dtype != dtype:
                raise ValueError(f"hx: {name} has dtype {t.dtype}; the input has {dtype}")

    def _check_hx_values(self, hx, batch_size: int, dtype: torch.dtype) -> None:
        """:meth:`_check_hx` and finite values: a host sync, so only where :meth:`forward`
        reads the input's values too (never in :meth:`run` or :meth:`run_prepared`)."""
        self._check_hx(hx, batch_size, dtype)
        for name, t in zip(("h_0", "c_0"), hx, strict=True):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"hx: {name} contains NaN or infinite values")

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout of batch-first ``(B, T, H)`` outputs while training: per element, or with
        one mask per sequence shared over time (``locked_dropout``)."""
        if not (self.dropout > 0 and self.training):
            return x
        if not self.locked_dropout:
            return nn.functional.dropout(x, self.dropout, training=True)
        keep = 1.0 - self.dropout
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep) / keep
        return x * mask

    def top_output(self, run: LayerRun) -> torch.Tensor:
        """The last layer's outputs ``(B, T, H)`` as a task head sees them: with dropout while
        training when ``output_dropout`` is set, as they are otherwise."""
        return self._drop(run.outputs) if self.output_dropout else run.outputs

    def top_state(self, run: LayerRun) -> torch.Tensor:
        """The last layer's last valid state ``h_n`` ``(B, H)`` as a task head sees it: with
        dropout while training when ``output_dropout`` is set (as :meth:`top_output`), as it is
        otherwise."""
        if not self.output_dropout:
            return run.h_n
        return self._drop(run.h_n[:, None])[:, 0]  # _drop takes (B, T, H): one step here

    def run(
        self,
        input: torch.Tensor,  # noqa: A002 (torch.nn.LSTM's name)
        mask: torch.Tensor | None = None,
        hx: tuple[torch.Tensor, torch.Tensor] | None = None,
        gate_mode: GateModeName | GateMode = "sample",
        log_basis: list[torch.Tensor] | None = None,
        record_gates: bool = False,
        layer_hook: LayerHook | None = None,
    ) -> list[LayerRun]:
        """Run every layer on batch-first ``input``; returns one :class:`LayerRun` per layer.

        Layer ``k`` runs on the outputs of layer ``k - 1`` (with dropout while training).
        ``mask``: bool ``(B, T)``, the valid steps (None: all). ``gate_mode`` applies to every
        layer; ``"given"`` takes each layer's basis from ``log_basis[k]``, exactly
        ``(B, T, hidden_size, K)``. ``layer_hook(call)``, when given, runs each layer instead (a
        :class:`LayerCall`: the layer, its lazily formed input, mask and state) and returns its
        run, for instance to wrap it in a Pyro sample site; ``gate_mode`` and ``log_basis`` are
        then unused.

        The arguments are checked as :meth:`forward` checks them, but from their shapes and
        dtypes only: no tensor value is read (no host sync, which would stall a GPU and break
        a CUDA-graph capture of the call), so non-finite inputs are not detected here;
        :func:`~pyro_betalstm.nn.stochastic_lstm.validate_sequences` detects them, once per
        batch, before :meth:`run_prepared`.
        """
        check_inputs(input, self.input_size, self._dtype())
        check_mask(mask, *input.shape[:2])
        return self.run_prepared(input, mask, hx, gate_mode, log_basis, record_gates, layer_hook)

    def run_prepared(
        self,
        input: torch.Tensor,  # noqa: A002 (torch.nn.LSTM's name)
        mask: torch.Tensor | None = None,
        hx: tuple[torch.Tensor, torch.Tensor] | None = None,
        gate_mode: GateModeName | GateMode = "sample",
        log_basis: list[torch.Tensor] | None = None,
        record_gates: bool = False,
        layer_hook: LayerHook | None = None,
    ) -> list[LayerRun]:
        """:meth:`run` on an ``input`` and ``mask`` already checked (what :meth:`prepare` or
        :func:`~pyro_betalstm.nn.stochastic_lstm.validate_sequences` returned): the path of
        :meth:`forward` and of the models' training steps, which checks only the other
        arguments."""
        check_gate_mode(gate_mode)
        if hx is not None:
            self._check_hx(hx, input.shape[0], input.dtype)
        if layer_hook is None:
            if gate_mode == "given":
                modes = self._given_modes(log_basis, *input.shape[:2])
            else:
                modes = [as_gate_mode(gate_mode)] * self.num_layers
            layer_hook = lambda call: call.run(modes[call.index])  # noqa: E731
        runs: list[LayerRun] = []
        for k in range(self.num_layers):
            state = None if hx is None else (hx[0][k], hx[1][k])
            below = runs[-1] if runs else input
            runs.append(layer_hook(LayerCall(self, k, below, mask, state, record_gates)))
        return runs

    def _given_modes(self, log_basis, batch_size: int, max_len: int) -> list[GivenBasis]:
        """``gate_mode="given"``: one :class:`GivenBasis` per layer, each basis checked to be
        exactly ``(B, T, H, K)`` (a longer one would be silently cut, a shorter one fail
        mid-run)."""
        if not isinstance(log_basis, list | tuple) or len(log_basis) != self.num_layers:
            raise ValueError("gate_mode='given' needs log_basis: one tensor per layer")
        modes = [GivenBasis(b) for b in log_basis]
        K = self.family.basis_size
        expected = (batch_size, max_len, self.hidden_size, K)
        for k, b in enumerate(log_basis):
            if self.family.is_latent and tuple(b.shape) != expected:
                raise ValueError(
                    f"log_basis[{k}] must have shape (batch, time, hidden_size, K) = {expected}, "
                    f"the {K} Gamma basis variables last; got {tuple(b.shape)}"
                )
        return modes

    def forward(
        self,
        input: torch.Tensor | PackedSequence,  # noqa: A002 (torch.nn.LSTM's name)
        hx: tuple[torch.Tensor, torch.Tensor] | None = None,
        lengths=None,
        gate_mode: GateModeName | GateMode | None = None,
    ):
        """``output, (h_n, c_n)`` as :class:`torch.nn.LSTM` (a ``PackedSequence`` in, one out).

        Unlike :class:`torch.nn.LSTM`, unbatched 2-D input is refused, and the input's dtype
        must be the parameters' (no conversion); both raise a ValueError, as do NaN or
        infinite values in ``input`` or ``hx``.

        :param input: ``(B, T, input_size)`` with ``batch_first``, else ``(T, B,
            input_size)``; or a ``PackedSequence`` (whose lengths are used, not ``lengths``).
        :param hx: ``(h_0, c_0)``, each ``(num_layers, B, hidden_size)`` with the input's
            dtype; None: zeros.
        :param lengths: ``(B,)`` valid lengths, integers (or whole floats) in ``[1, T]``;
            None: every sequence has ``T`` steps.
        :param gate_mode: None (``"sample"`` in training mode, ``"mean"`` otherwise),
            ``"sample"``, ``"mean"`` or a :class:`~pyro_betalstm.nn.GateMode` instance such
            as ``GivenBasis(log_basis)`` or ``PriorBasis(sampler)``; ``"given"`` and
            ``"prior"`` are refused (a ValueError: they need an argument, see :meth:`run`).
            Deterministic gate families ignore it.
        :returns: ``output`` ``(B, T, hidden_size)`` (``(T, B, hidden_size)`` without
            ``batch_first``, packed for packed input; zero at padded steps, with dropout while
            training when ``output_dropout`` is set), and the last valid states ``h_n`` and
            ``c_n``, ``(num_layers, B, hidden_size)`` each.
        """
        packed = isinstance(input, PackedSequence)
        x, mask, lengths = self.prepare(input, lengths)
        if gate_mode is None:
            gate_mode = "sample" if self.training else "mean"
        check_gate_mode(gate_mode)
        if gate_mode == "given":
            raise ValueError("gate_mode='given' needs log_basis: use StochasticLSTM.run")
        if hx is not None:  # prepare read the input's values already: read hx's too
            self._check_hx_values(hx, x.shape[0], x.dtype)
        # pad_packed_sequence restores the caller's batch order, so hx is used as given and
        # h_n, c_n come back in that order too. prepare checked the input: not run's checks again.
        runs = self.run_prepared(x, mask, hx, gate_mode)
        output = self.top_output(runs[-1])
        h_n = torch.stack([r.h_n for r in runs])
        c_n = torch.stack([r.c_n for r in runs])
        if packed:
            output = nn.utils.rnn.pack_padded_sequence(
                output, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            return output, (h_n, c_n)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n, c_n)

    @torch.no_grad()
    def load_torch_lstm(self, lstm: nn.LSTM) -> StochasticLSTM:
        """Copy the weights of a ``torch.nn.LSTM`` (sigmoid family only; the same sizes and
        ``bias`` setting, one direction, no projection; returns ``self``)."""
        if self.family.name != "sigmoid":
            raise ValueError("only the 'sigmoid' family has the parameters of torch.nn.LSTM")
        has_bias = self.layers[0].input_proj.bias is not None
        if bool(lstm.bias) != has_bias:  # one side's biases would be missing or dropped
            raise ValueError(
                f"torch.nn.LSTM has bias={bool(lstm.bias)}, this StochasticLSTM bias={has_bias}: "
                "they must match"
            )
        if (
            (lstm.input_size, lstm.hidden_size, lstm.num_layers)
            != (
                self.input_size,
                self.hidden_size,
                self.num_layers,
            )
            or lstm.bidirectional
            or lstm.proj_size
        ):
            raise ValueError("torch.nn.LSTM must have the same sizes, one direction, no projection")
        for k, layer in enumerate(self.layers):
            layer.input_proj.weight.copy_(getattr(lstm, f"weight_ih_l{k}"))
            layer.hidden_proj.weight.copy_(getattr(lstm, f"weight_hh_l{k}"))
            if layer.input_proj.bias is not None:
                layer.input_proj.bias.copy_(
                    getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
                )
        return self
