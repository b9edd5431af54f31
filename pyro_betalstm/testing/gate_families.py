"""Test cases of the gate families, and the battery of tests every registered family inherits.

A :class:`GateFamilyCase` states a family's contract independently of the package code: the
index sets of a latent family's gate map (from the formulas in each distribution's docstring),
or the formula of a deterministic family's evaluation gates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.nn.functional import softplus

from ..gates import GATE_FAMILIES, get_gate_family
from ..nn import GivenBasis, StochasticLSTM, layer_parameters
from .capture import StaticBufferStandIn, host_syncs
from .registry import case_for

#: ``alpha = softplus(z) + EPS``: the authors' constant, as the contract states it
EPS = 1e-3
IndexSets = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]
GatePairFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def ratio_gates(index_sets: IndexSets, values: torch.Tensor, log_space: bool):
    """``(i, f)`` as ratios of sums over the last dimension of ``values``: the basis ``log u``
    (``log_space``) or the concentrations (the mean gates). ``index_sets`` are (input numerator,
    input rest, forget numerator, forget rest). In log space each ratio's terms are rescaled by
    their maximum before exponentiating, which leaves it unchanged and avoids 0/0."""
    ni, di, nf, df = index_sets

    def ratio(num, rest):
        v = values[..., list(num + rest)]
        u = (v - v.max(-1, keepdim=True).values).exp() if log_space else v
        return u[..., : len(num)].sum(-1) / u.sum(-1)

    return ratio(ni, di), ratio(nf, df)


@dataclass(frozen=True)
class GateFamilyCase:
    """What the battery needs to know about one gate family.

    :param num_gate_preactivations: pre-activation blocks that feed the gates.
    :param index_sets: a latent family's gate map (0-based input numerator, input rest,
        forget numerator, forget rest); None for a deterministic family.
    :param evaluation: a deterministic family's gates in evaluation mode from pre-activations
        ``(..., n_pre, H)``; None for a latent family.
    :param training_noise: a deterministic family whose training gates are random.
    """

    num_gate_preactivations: int
    index_sets: IndexSets | None = None
    evaluation: GatePairFn | None = None
    training_noise: bool = False

    @property
    def is_latent(self) -> bool:
        return self.index_sets is not None

    @property
    def basis_size(self) -> int:
        return 1 + max(max(s) for s in self.index_sets) if self.is_latent else 0

    def evaluation_gates(self, z_gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation gates (mean gates of a latent family) from ``z_gate`` ``(..., n_pre, H)``."""
        if not self.is_latent:
            return self.evaluation(z_gate)
        alpha = (softplus(z_gate) + EPS).transpose(-1, -2)  # the basis last
        return ratio_gates(self.index_sets, alpha, log_space=False)


def _sigmoid(z):
    return torch.sigmoid(z[..., 0, :]), torch.sigmoid(z[..., 1, :])


def _coupled(z):
    i = torch.sigmoid(z[..., 0, :])
    return i, 1 - i


def _half(z):
    half = torch.full(z.shape[:-2] + z.shape[-1:], 0.5, dtype=z.dtype)
    return half, half


#: One case per registered gate family, keyed by the family's name.
GATE_FAMILY_CASES: dict[str, GateFamilyCase] = {
    "sigmoid": GateFamilyCase(2, evaluation=_sigmoid),
    "coupled": GateFamilyCase(1, evaluation=_coupled),
    "gumbel": GateFamilyCase(2, evaluation=_sigmoid, training_noise=True),
    # i = u1/(u1+u2), f = u3/(u3+u4)
    "beta": GateFamilyCase(4, index_sets=((0,), (1,), (2,), (3,))),
    # i = u1/(u1+u3), f = u2/(u2+u3)
    "bivariate": GateFamilyCase(3, index_sets=((0,), (2,), (1,), (2,))),
    # i = (u1+u3)/(u1+u3+u4+u5), f = (u2+u4)/(u2+u4+u3+u5)
    "bivariate5": GateFamilyCase(5, index_sets=((0, 2), (3, 4), (1, 3), (2, 4))),
    "constant": GateFamilyCase(0, evaluation=_half),
    "prior_noise": GateFamilyCase(0, evaluation=_half, training_noise=True),
}


def gate_family_names(latent: bool | None = None) -> list[str]:
    """Names of the registered gate families (:data:`~pyro_betalstm.gates.GATE_FAMILIES`), the
    latent or deterministic ones only when ``latent`` is given."""
    return [n for n, f in GATE_FAMILIES.items() if latent is None or f.is_latent == latent]


def gate_family_case(name: str) -> GateFamilyCase:
    """The test case of a registered gate family (KeyError saying where to add a missing one)."""
    where = "pyro_betalstm.testing.gate_families.GATE_FAMILY_CASES"
    return case_for(GATE_FAMILY_CASES, name, "gate family", where)


def _network(name: str, hidden: int = 4) -> StochasticLSTM:
    torch.manual_seed(0)
    return StochasticLSTM(3, hidden, 1, gate=name, batch_first=True).double()


def _network_state(name: str) -> dict:
    """Seeded weights of a two-layer, hidden-4, float64 network of family ``name``."""
    torch.manual_seed(0)
    return StochasticLSTM(3, 4, 2, gate=name, batch_first=True).double().state_dict()


def _gate_preactivations(lstm: StochasticLSTM, run, n_pre: int) -> torch.Tensor:
    """``z_gate`` ``(B, T, n_pre, H)`` recomputed from the layer's weights and ``h_{t-1}``."""
    layer = lstm.layers[0]
    z = layer.input_proj(run.inputs) + run.previous_hidden @ layer.hidden_proj.weight.T
    return z.unflatten(-1, (n_pre + 2, lstm.hidden_size))[..., :n_pre, :]


class GateFamilyBattery:
    """Tests every gate family passes. The subclass provides a ``gate_family`` fixture (a
    registered name), parametrised over :func:`gate_family_names`, and a ``latent_gate_family``
    fixture parametrised over ``gate_family_names(latent=True)`` for the Gamma-basis tests."""

    def test_family_agrees_with_its_case(self, gate_family):
        case, family = gate_family_case(gate_family), get_gate_family(gate_family)
        assert family.name == gate_family
        assert family.is_latent == case.is_latent
        if not case.is_latent:  # a compiled step leaves the drawing families' training eager
            assert family.draws_in_training == case.training_noise
        assert family.num_gate_preactivations == case.num_gate_preactivations
        assert family.basis_size == case.basis_size

    def test_layer_has_the_documented_parameter_count(self, gate_family):
        blocks = gate_family_case(gate_family).num_gate_preactivations + 2
        layer = _network(gate_family, hidden=5).layers[0]
        count = sum(p.numel() for p in layer.parameters())
        assert count == blocks * 5 * (3 + 5 + 1) == layer_parameters(gate_family, 3, 5)

    def test_evaluation_gates_follow_the_contract(self, gate_family):
        case = gate_family_case(gate_family)
        lstm = _network(gate_family).eval()
        x = torch.randn(2, 6, 3, dtype=torch.float64)
        run = lstm.run(x, gate_mode="mean", record_gates=True)[0]
        i_ref, f_ref = case.evaluation_gates(
            _gate_preactivations(lstm, run, case.num_gate_preactivations)
        )
        torch.testing.assert_close(run.gates[0], i_ref)
        torch.testing.assert_close(run.gates[1], f_ref)

    def test_training_gates_are_valid_and_differentiable(self, gate_family):
        case = gate_family_case(gate_family)
        lstm = _network(gate_family).train()
        x = torch.randn(2, 6, 3, dtype=torch.float64)
        runs = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            runs.append(lstm.run(x, gate_mode="sample", record_gates=True)[0])
        for gate in runs[0].gates:
            assert torch.all((gate >= 0) & (gate <= 1))
        runs[0].outputs.sum().backward()
        for p in lstm.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all()
        random = case.is_latent or case.training_noise
        assert torch.equal(runs[0].gates[0], runs[1].gates[0]) != random
        if not random:  # training gates are the evaluation gates
            z = _gate_preactivations(lstm, runs[0], case.num_gate_preactivations)
            torch.testing.assert_close(runs[0].gates[1], case.evaluation_gates(z)[1])

    def test_recurrence_needs_no_host_sync(self, gate_family):
        """A CUDA graph captures the recurrence only if no step waits for the device or copies
        host data to it (``.item()``, ``bool()``, ``torch.tensor``...): checked here on the CPU
        for training (with its draws), evaluation, padding, a given state and the backward."""
        lstm = StochasticLSTM(3, 4, 2, gate=gate_family, batch_first=True, basis_offset=1e-3)
        x = torch.randn(2, 6, 3, requires_grad=True)
        mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
        state = (torch.zeros(2, 2, 4), torch.zeros(2, 2, 4))
        runs = {}

        def train_step():
            runs["train"] = lstm.train().run(x, mask, state, gate_mode="sample", record_gates=True)
            sum(r.outputs.sum() + r.c_n.sum() for r in runs["train"]).backward()

        def evaluate():
            with torch.no_grad():
                lstm.eval().run(x, mask, gate_mode="mean")

        assert host_syncs(train_step) == {}
        assert host_syncs(evaluate) == {}
        if lstm.family.is_latent:
            basis = [r.log_basis.detach() for r in runs["train"]]
            assert host_syncs(lambda: lstm.run(x, mask, gate_mode="given", log_basis=basis)) == {}

    def test_graphed_recurrence_reproduces_the_eager_loop(self, gate_family):
        """The graph path's bookkeeping (arguments, outputs, padding, gradients), with the CPU
        stand-in for the capture: same seed, same draws, so equal to the eager loop."""
        x = torch.randn(3, 5, 3, dtype=torch.float64)
        mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 5])
        results = []
        for recurrence in ("eager", "auto"):
            lstm = StochasticLSTM(3, 4, 2, gate=gate_family, batch_first=True).double()
            lstm.load_state_dict(_network_state(gate_family))
            for layer in lstm.layers:
                layer.set_recurrence(recurrence)
                if layer.graphs is not None:
                    layer.graphs.capture = StaticBufferStandIn
            torch.manual_seed(5)
            runs = lstm.train().run(x, mask, record_gates=True)
            loss = sum((r.outputs**2).sum() + r.h_n.sum() for r in runs)
            grads = torch.autograd.grad(loss, list(lstm.parameters()))
            results.append((runs, grads))
            if recurrence == "auto":
                assert lstm.layers[0].graphs.stats.replays == 1
        (eager_runs, eager_grads), (graph_runs, graph_grads) = results
        for eager, graphed in zip(eager_runs, graph_runs, strict=True):
            for name in ("outputs", "h_n", "c_n", "alpha", "log_basis", "cell_states"):
                torch.testing.assert_close(getattr(graphed, name), getattr(eager, name))
            torch.testing.assert_close(graphed.gates, eager.gates)
        torch.testing.assert_close(graph_grads, eager_grads)

    # The tests below concern a Gamma basis: they take ``latent_gate_family`` (the latent
    # families only), so no deterministic family is collected and skipped.

    def test_given_basis_gates_follow_the_contract(self, latent_gate_family):
        gate_family = latent_gate_family
        case = gate_family_case(gate_family)
        lstm = _network(gate_family)
        x = torch.randn(2, 6, 3, dtype=torch.float64)
        log_u = torch.randn(2, 6, 4, case.basis_size, dtype=torch.float64) * 3
        run = lstm.run(x, gate_mode="given", log_basis=[log_u], record_gates=True)[0]
        i_ref, f_ref = ratio_gates(case.index_sets, log_u, log_space=True)
        torch.testing.assert_close(run.gates[0], i_ref)
        torch.testing.assert_close(run.gates[1], f_ref)
        assert run.log_basis is log_u and run.alpha.shape == log_u.shape

    def test_distribution_shares_the_gate_map(self, latent_gate_family):
        gate_family = latent_gate_family
        case, family = gate_family_case(gate_family), get_gate_family(gate_family)
        assert family.algebra is family.distribution.algebra
        g = torch.Generator().manual_seed(0)
        conc = torch.rand(6, case.basis_size, generator=g, dtype=torch.float64) * 3 + 0.2
        log_u = torch.randn(6, case.basis_size, generator=g, dtype=torch.float64)
        d = family.distribution(conc)
        mean = ratio_gates(case.index_sets, conc, log_space=False)
        torch.testing.assert_close(d.mean, torch.stack(mean, -1))
        gates = ratio_gates(case.index_sets, log_u, log_space=True)
        torch.testing.assert_close(d.gates_from_log_basis(log_u), torch.stack(gates, -1))

    def test_wrong_basis_layout_is_a_clear_error(self, latent_gate_family):
        gate_family = latent_gate_family
        case, family = gate_family_case(gate_family), get_gate_family(gate_family)
        K = case.basis_size
        with pytest.raises(ValueError, match=f"{K} Gamma basis variables on dimension -1"):
            family.algebra.gates(torch.zeros(3, K + 1))
        with pytest.raises(ValueError, match=f"{K} Gamma basis variables on dimension -1"):
            family.algebra.mean_gates(torch.ones(2, K, K + 2))  # (..., K, H): basis not last
        lstm = _network(gate_family)
        x = torch.randn(2, 6, 3, dtype=torch.float64)
        wrong = torch.zeros(2, 6, 4, K + 1, dtype=torch.float64)
        with pytest.raises(ValueError, match="Gamma basis variables"):
            lstm.run(x, gate_mode="given", log_basis=[wrong])
        with pytest.raises(ValueError, match=r"\(B, T, H, K\)"):
            GivenBasis(torch.zeros(6, 4, K))
