"""A Pyro user's contracts: plain SVI trains the model, Predictive returns the gates, any
``TorchDistribution`` is a prior, and what is not supported says what to use instead."""

from __future__ import annotations

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import constraints, kl_divergence

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.infer import GateMeanFieldELBO, loss_per_sequence
from pyro_betalstm.models import (
    GATE_SITES,
    STATE_SITES,
    NextStepBernoulli,
    SequenceClassifier,
    evaluating,
    site_name,
)
from pyro_betalstm.models.gate_sites import basis_kl
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.priors import HierarchicalGammaPrior
from pyro_betalstm.testing.tasks import TASK_CASES

from .helpers import make_batch, make_model


def _svi_losses(model, batch, elbo, steps=40, lr=0.02):
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": lr}), elbo)
    return [svi.step(batch) for _ in range(steps)]


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# ----- 1. parameters registered the Pyro way -----------------------------------------------------
@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO, GateMeanFieldELBO])
@pytest.mark.parametrize("prior", ["gamma", "learnable"])
def test_plain_svi_trains_every_parameter(elbo, prior):
    """The first thing a Pyro user tries: the loss falls and every parameter moves. Seeds are
    fixed; the mean of the last 5 of 40 Adam steps (lr 0.02) is well below the first 5's (a
    drop of more than 10%, where an untrained model's losses stay flat up to noise)."""
    torch.manual_seed(0)
    m = make_model("next_step", gate="bivariate5", prior=prior)
    batch = make_batch("next_step")
    before = _snapshot(m)
    losses = _svi_losses(m, batch, elbo())
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5]), losses
    unmoved = [n for n, p in m.named_parameters() if torch.equal(before[n], p.detach())]
    assert not unmoved, f"parameters that plain SVI did not train: {unmoved}"
    names = set(pyro.get_param_store().keys())
    assert {f"{m.pyro_namespace}$$${n}" for n, _ in m.named_parameters()} <= names


def test_plain_svi_trains_a_deterministic_family():
    torch.manual_seed(0)
    m = make_model("classifier", gate="sigmoid")
    before = _snapshot(m)
    _svi_losses(m, make_batch("classifier"), Trace_ELBO(), steps=3)
    assert all(not torch.equal(before[n], p.detach()) for n, p in m.named_parameters())


def test_two_models_in_one_process_both_train():
    torch.manual_seed(0)
    a = make_model("next_step", gate="bivariate")
    b = make_model("next_step", gate="bivariate", seed=1)
    assert a.pyro_namespace != b.pyro_namespace
    batch = make_batch("next_step")
    before_a, before_b = _snapshot(a), _snapshot(b)
    svi_a = SVI(a.model, a.guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    svi_b = SVI(b.model, b.guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    for _ in range(3):  # interleaved, sharing the one param store
        svi_a.step(batch)
        svi_b.step(batch)
    for m, before in ((a, before_a), (b, before_b)):
        assert all(not torch.equal(before[n], p.detach()) for n, p in m.named_parameters())
    store = pyro.get_param_store()
    for m in (a, b):  # the store holds each model's own tensors, under its own names
        for n, p in m.named_parameters():
            assert store[f"{m.pyro_namespace}$$${n}"] is p


def test_a_copy_gets_its_own_namespace_and_trains():
    torch.manual_seed(0)
    a = make_model("next_step")
    batch = make_batch("next_step")
    _svi_losses(a, batch, Trace_ELBO(), steps=1)
    b = copy.deepcopy(a)
    assert b.pyro_namespace != a.pyro_namespace
    before = _snapshot(b)
    _svi_losses(b, batch, Trace_ELBO(), steps=2)
    assert all(not torch.equal(before[n], p.detach()) for n, p in b.named_parameters())


def test_a_replaced_parameter_is_the_one_registered():
    """After ``load_state_dict(assign=True)`` the module holds new tensors: those are trained."""
    torch.manual_seed(0)
    m = make_model("next_step")
    batch = make_batch("next_step")
    _svi_losses(m, batch, Trace_ELBO(), steps=1)
    m.load_state_dict({k: v.clone() + 0.5 for k, v in m.state_dict().items()}, assign=True)
    before = _snapshot(m)
    m.guide(batch)  # registers: the model's new tensors replace the store's older ones
    store = pyro.get_param_store()
    for n, p in m.named_parameters():
        assert store[f"{m.pyro_namespace}$$${n}"] is p and torch.equal(p.detach(), before[n])
    _svi_losses(m, batch, Trace_ELBO(), steps=2)
    assert all(not torch.equal(before[n], p.detach()) for n, p in m.named_parameters())


def test_a_saved_param_store_restores_the_model(tmp_path):
    """store.save, train on, store.load: the model goes back to the saved weights (it used to
    keep training from its own, the loaded entries silently replaced), as with pyro.module."""
    torch.manual_seed(0)
    m = make_model("next_step")
    batch = make_batch("next_step")
    _svi_losses(m, batch, Trace_ELBO(), steps=1)
    store = pyro.get_param_store()
    store.save(tmp_path / "params.pt")
    saved = _snapshot(m)
    _svi_losses(m, batch, Trace_ELBO(), steps=2)
    assert not all(torch.equal(saved[n], p.detach()) for n, p in m.named_parameters())
    store.load(tmp_path / "params.pt")
    m.guide(batch)
    for n, p in m.named_parameters():
        assert torch.equal(p.detach(), saved[n])  # restored into the module's own tensor
        assert store[f"{m.pyro_namespace}$$${n}"] is p  # which the store holds again
    _svi_losses(m, batch, Trace_ELBO(), steps=1)  # and training goes on from there
    assert not all(torch.equal(saved[n], p.detach()) for n, p in m.named_parameters())
    # a store saved from a model of other sizes under the same name is refused, not copied
    other = make_model("next_step", hidden_size=5)
    pyro.clear_param_store()
    other.guide(batch)
    state = {k.replace(other.pyro_namespace, m.pyro_namespace): v for k, v in
             pyro.get_param_store().get_state()["params"].items()}  # fmt: skip
    pyro.clear_param_store()
    for name, value in state.items():
        pyro.param(name, value.detach().clone())
    with pytest.raises(ValueError, match=r"the param store's .* has shape .* but this model's"):
        m.guide(batch)


def test_a_named_model_restores_a_store_saved_under_its_name(tmp_path):
    """A model built in another order (another numbered namespace, as in a new process) loads
    a store saved under the name both were given."""
    torch.manual_seed(0)
    m = make_model("next_step")
    m.pyro_namespace = "music_model"
    batch = make_batch("next_step")
    pyro.clear_param_store()
    _svi_losses(m, batch, Trace_ELBO(), steps=2)
    pyro.get_param_store().save(tmp_path / "params.pt")
    pyro.clear_param_store()
    make_model("next_step")  # takes the next number: the new model's default name differs
    fresh = make_model("next_step")
    fresh.pyro_namespace = "music_model"
    pyro.get_param_store().load(tmp_path / "params.pt")
    fresh.guide(batch)
    for (name, p), q in zip(m.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p.detach(), q.detach()), name
    for bad in ("", "a$$$b", 3):
        with pytest.raises(ValueError, match="pyro_namespace must be a non-empty string"):
            fresh.pyro_namespace = bad


# ----- 2. the gates in the trace -----------------------------------------------------------------
@pytest.mark.parametrize("gate", ["bivariate", "bivariate5", "beta"])
def test_predictive_returns_the_gates(gate):
    torch.manual_seed(0)
    m = make_model("next_step", gate=gate)
    batch = make_batch("next_step")
    S, (B, T, _), L, H = 3, batch.inputs.shape, m.lstm.num_layers, m.lstm.hidden_size
    draws = Predictive(m.model, guide=m.guide, num_samples=S)(batch)
    for name in GATE_SITES:  # dims (draw, sequence, time, layer, unit)
        assert draws[name].shape == (S, B, T, L, H)
        assert bool(((draws[name] > 0) & (draws[name] < 1)).all())
    K = m.family.basis_size
    for k in range(L):  # the latent sites hold the log Gamma basis, (draw, B, T, H, K)
        log_basis = draws[site_name(k)]
        assert log_basis.shape == (S, B, T, H, K)
        i, f = m.family.algebra.gates(log_basis)
        torch.testing.assert_close(i, draws["input_gate"][..., k, :])
        torch.testing.assert_close(f, draws["forget_gate"][..., k, :])
    assert not any(name in draws for name in STATE_SITES)  # states only when asked for


def test_the_basis_layout_is_checked():
    """A log-basis in another layout than ``(..., K)`` raises instead of giving wrong shapes."""
    m = make_model("next_step", gate="bivariate5", hidden_size=4)
    algebra = m.family.algebra
    with pytest.raises(ValueError, match=r"layout \(\.\.\., K\) with K = 5"):
        algebra.gates(torch.zeros(2, 6, 5, 4))  # (B, T, K, H): the step layout
    with pytest.raises(ValueError, match="K = 5"):
        m.family.gates_from_log_basis(torch.zeros(2, 6, 5, 4))
    with pytest.raises(ValueError, match="K = 5"):
        m.family.distribution.gates_from_log_basis(torch.zeros(2, 4))
    log_basis = torch.randn(2, 6, 4, 5)  # the stored layout: gates (2, 6, 4) each
    assert m.family.gates_from_log_basis(log_basis).input.shape == (2, 6, 4)


def test_states_are_traced_behind_a_flag():
    torch.manual_seed(0)
    m = make_model("next_step", gate="bivariate")
    m.trace_states = True
    batch = make_batch("next_step")
    trace = pyro.poutine.trace(m.guide).get_trace(batch)
    trace = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=trace)).get_trace(batch)
    hidden, cell = trace.nodes["hidden_state"]["value"], trace.nodes["cell_state"]["value"]
    B, T, _ = batch.inputs.shape
    assert hidden.shape == cell.shape == (B, T, 2, 4)
    with torch.no_grad():  # the last valid step's states are the runs' final states
        runs = m.lstm.run(
            batch.inputs,
            m.mask(batch),
            gate_mode="given",
            log_basis=[trace.nodes[site_name(k)]["value"] for k in range(2)],
        )
    last = batch.lengths - 1
    for k, run in enumerate(runs):
        torch.testing.assert_close(hidden[torch.arange(B), last, k], run.h_n)
        torch.testing.assert_close(cell[torch.arange(B), last, k], run.c_n)


def test_untraced_records_no_sites_changes_no_loss_and_restores_the_flags():
    m = make_model("next_step", gate="bivariate")
    m.trace_states = True
    batch = make_batch("next_step")
    elbo = GateMeanFieldELBO()

    def traced_loss():
        torch.manual_seed(5)
        guide = pyro.poutine.trace(m.guide).get_trace(batch)
        model = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide)).get_trace(batch)
        torch.manual_seed(5)
        return set(model.nodes), elbo.differentiable_loss(m.model, m.guide, batch)

    sites, loss = traced_loss()
    assert {"input_gate", "forget_gate", "hidden_state", "cell_state"} <= sites
    with m.untraced():
        quiet_sites, quiet_loss = traced_loss()
    assert not {"input_gate", "forget_gate", "hidden_state", "cell_state"} & quiet_sites
    torch.testing.assert_close(quiet_loss, loss, rtol=0, atol=0)  # same draws, same loss
    assert (m.trace_gates, m.trace_states) == (True, True)
    with pytest.raises(RuntimeError), m.untraced():
        raise RuntimeError("an interrupted step")
    assert (m.trace_gates, m.trace_states) == (True, True)


def test_deterministic_families_trace_their_gates_too():
    torch.manual_seed(0)
    m = make_model("classifier", gate="sigmoid")
    draws = Predictive(m.model, num_samples=2)(make_batch("classifier"))
    assert draws["input_gate"].shape == (2, 3, 5, 2, 4)


# ----- 3. any TorchDistribution as a prior -------------------------------------------------------
class ProductOfExponentials(dist.TorchDistribution):
    """A user-written prior: the K basis variables independent ``Exponential(rate)``, one event."""

    arg_constraints = {"rate": constraints.positive}
    support = constraints.independent(constraints.positive, 1)
    has_rsample = True

    def __init__(self, rate, size, validate_args=None):
        self.rate = torch.as_tensor(rate, dtype=torch.get_default_dtype())
        super().__init__(torch.Size(), torch.Size([size]), validate_args=validate_args)

    def rsample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        return -torch.rand(shape).log() / self.rate

    def log_prob(self, value):
        return (self.rate.log() - self.rate * value).sum(-1)


def _loss(m, batch, elbo, seed=3):
    torch.manual_seed(seed)
    return elbo.loss(m.model, m.guide, batch)


def _prior_model(prior):
    return make_model("next_step", gate="bivariate5", prior=lambda k, x, h: prior)


@pytest.mark.parametrize("elbo", [GateMeanFieldELBO, TraceMeanField_ELBO, Trace_ELBO])
def test_event_shaped_gamma_prior_equals_the_batch_shaped_one(elbo):
    """``Gamma(c, 1).to_event(1)`` regroups dimensions: the same loss as ``Gamma(c, 1)`` at the
    same draws (exactly, up to float summation order), with the analytic KL under mean field."""
    c = torch.tensor([0.5, 2.0, 0.5, 2.0, 0.5])
    batch = make_batch("next_step")
    losses = []
    for prior in (dist.Gamma(c, 1.0), dist.Gamma(c, 1.0).to_event(1)):
        m = _prior_model(prior)
        losses.append(_loss(m, batch, elbo()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_event_shaped_gamma_prior_keeps_the_analytic_kl():
    m = _prior_model(dist.Gamma(torch.full((5,), 0.5), 1.0).to_event(1))
    batch = make_batch("next_step")
    guide = pyro.poutine.trace(m.guide).get_trace(batch)
    model = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide)).get_trace(batch)
    q, p = guide.nodes[site_name(0)]["fn"], model.nodes[site_name(0)]["fn"]
    kl = kl_divergence(q, p)  # raises NotImplementedError if it fell back to Monte Carlo
    assert kl.shape == (3,) and bool((kl > 0).all())


@pytest.mark.parametrize(
    "prior",
    [
        dist.LogNormal(-0.7, 1.0),
        dist.LogNormal(torch.full((4, 5), -0.7), 1.0).to_event(2),
        ProductOfExponentials(2.0, 5),
        dist.Gamma(0.5, 1.0).expand([4, 5]).to_event(1),
    ],
    ids=["lognormal", "lognormal_event2", "user_written", "gamma_event1"],
)
def test_any_torch_distribution_trains_as_a_prior(prior):
    torch.manual_seed(0)
    m = _prior_model(prior)
    batch = make_batch("next_step")
    losses = _svi_losses(m, batch, GateMeanFieldELBO(), steps=30)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
    # the prior predictive draws from it, independently for every element
    draws = Predictive(m.model, num_samples=1)(batch)[site_name(0)]
    assert draws.shape == (1, 3, 5, 4, 5)
    assert draws[0, :, 0].flatten().unique().numel() == draws[0, :, 0].numel()


def test_lognormal_prior_event_and_batch_shaped_agree():
    batch = make_batch("next_step")
    a = _loss(_prior_model(dist.LogNormal(-0.7, 1.0)), batch, Trace_ELBO())
    b = _loss(_prior_model(dist.LogNormal(-0.7, torch.ones(5)).to_event(1)), batch, Trace_ELBO())
    assert a == pytest.approx(b, rel=1e-6)


def test_kl_is_analytic_where_torch_has_one_and_monte_carlo_otherwise():
    alpha = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    exponential = dist.Exponential(torch.tensor(2.0, dtype=torch.float64))
    kl = basis_kl(alpha, exponential)  # torch's Gamma -> Exponential KL
    # Monte Carlo check: 200k draws, seed fixed; tolerance 5 standard errors
    torch.manual_seed(0)
    q = torch.distributions.Gamma(alpha, torch.ones_like(alpha))
    u = q.sample((200_000,))
    terms = q.log_prob(u) - exponential.log_prob(u)
    se = terms.std(0) / len(terms) ** 0.5
    assert bool(((terms.mean(0) - kl).abs() < 5 * se).all())
    with pytest.raises(NotImplementedError):
        basis_kl(alpha, dist.LogNormal(0.0, 1.0))
    with pytest.raises(NotImplementedError):
        basis_kl(alpha, ProductOfExponentials(2.0, 3))


def test_a_prior_of_the_wrong_shape_is_named():
    m = _prior_model(dist.Gamma(torch.full((3,), 0.5), 1.0))
    with pytest.raises(ValueError, match=r"prior of layer 0 .* must broadcast"):
        _loss(m, make_batch("next_step"), GateMeanFieldELBO())


# ----- 4. batch_first ----------------------------------------------------------------------------
def test_batch_first_false_is_rejected_at_construction():
    with pytest.raises(ValueError, match="batch_first=True"):
        NextStepBernoulli(StochasticLSTM(3, 4), 3)
    with pytest.raises(ValueError, match="batch_first=True"):
        SequenceClassifier(StochasticLSTM(3, 4, batch_first=False), 3)


# ----- 5. loss units -----------------------------------------------------------------------------
def test_svi_reports_the_whole_data_set_and_fit_one_sequence():
    """The sequence plate scales the minibatch to the data set: at the same draws, the loss of a
    batch drawn from 10x as many sequences is 10x as large, and the same per sequence."""
    torch.manual_seed(0)
    m = make_model("next_step")
    small, large = make_batch("next_step", dataset_size=3), make_batch("next_step", dataset_size=30)
    loss_small = _loss(m, small, GateMeanFieldELBO())
    loss_large = _loss(m, large, GateMeanFieldELBO())
    assert loss_large == pytest.approx(10 * loss_small, rel=1e-5)
    assert loss_per_sequence(loss_large, large) == pytest.approx(loss_small / 3, rel=1e-5)
    assert loss_per_sequence(loss_large, 30) == loss_per_sequence(loss_large, large)
    with pytest.raises(ValueError, match="positive integer"):
        loss_per_sequence(1.0, 0)


# ----- 7. vectorised particles and parallel Predictive -----------------------------------------------
def _in_plate(fn, size):
    def wrapped(batch):
        with pyro.plate("draws", size, dim=-2):
            return fn(batch)

    return wrapped


def _per_draw_elbo(m, batch, values: dict) -> torch.Tensor:
    """``log p(y, u) - log q(u)`` of each draw, the draws given one at a time (no plate)."""
    elbos = []
    for s in range(next(iter(values.values())).shape[0]):
        given = {k: v[s] for k, v in values.items()}
        guide = pyro.poutine.trace(pyro.poutine.condition(m.guide, given)).get_trace(batch)
        model = pyro.poutine.trace(pyro.poutine.condition(m.model, given)).get_trace(batch)
        elbos.append(model.log_prob_sum() - guide.log_prob_sum())
    return torch.stack(elbos)


@pytest.mark.parametrize(
    "gate, prior",
    [("bivariate", "gamma"), ("bivariate5", "gamma"), ("bivariate", "hierarchical")],
)
def test_draws_in_a_plate_score_as_draws_one_at_a_time(float64, gate, prior):
    """Under an outer plate of S draws (what vectorised particles and Predictive(parallel=True)
    add), every draw's log-densities equal those of the same values given one at a time."""
    torch.manual_seed(0)
    m = make_model("next_step", gate=gate, prior=prior)
    batch = make_batch("next_step")
    S = 3
    guide = pyro.poutine.trace(_in_plate(m.guide, S)).get_trace(batch)
    replayed = pyro.poutine.replay(_in_plate(m.model, S), trace=guide)
    model = pyro.poutine.trace(replayed).get_trace(batch)
    latent = [n for n, site in guide.nodes.items() if site["type"] == "sample"]
    values = {n: guide.nodes[n]["value"] for n in latent if n != "sequences"}
    if prior == "hierarchical":  # its global kappa, one per draw: (S, 1, K) -> (S, K) given
        values["prior_concentration"] = values["prior_concentration"].squeeze(-2)
    assert values[site_name(0)].shape == (S, 3, 5, 4, m.family.basis_size)
    assert not torch.equal(values[site_name(0)][0], values[site_name(0)][1])  # independent
    model.compute_log_prob()
    guide.compute_log_prob()
    per_draw = sum(
        sign * site["log_prob"].sum(-1)
        for trace, sign in ((model, 1.0), (guide, -1.0))
        for site in trace.nodes.values()
        if site["type"] == "sample"
    )
    torch.testing.assert_close(per_draw, _per_draw_elbo(m, batch, values))
    # the gates of each draw are the gate map of its basis
    i, _ = m.family.gates_from_log_basis(values[site_name(1)])
    gates = model.nodes["input_gate"]["value"]
    assert gates.shape == (S, 3, 5, 2, 4)
    torch.testing.assert_close(i, gates[..., 1, :])


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_vectorised_particles_train(elbo):
    """``vectorize_particles=True``: the loss falls and every parameter moves; its value is that
    of sequential particles up to Monte Carlo noise (seeds fixed; 64 particles each, the two
    within 5% of each other)."""
    torch.manual_seed(0)
    m = make_model("next_step", gate="bivariate5")
    batch = make_batch("next_step")
    vectorised = elbo(num_particles=64, vectorize_particles=True, max_plate_nesting=1)
    sequential = elbo(num_particles=64)
    torch.manual_seed(1)
    loss_v = vectorised.loss(m.model, m.guide, batch)
    loss_s = sequential.loss(m.model, m.guide, batch)
    assert loss_v == pytest.approx(loss_s, rel=0.05)
    before = _snapshot(m)
    losses = _svi_losses(m, batch, elbo(num_particles=4, vectorize_particles=True), steps=30)
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5])
    assert all(not torch.equal(before[n], p.detach()) for n, p in m.named_parameters())


@pytest.mark.parametrize("name", sorted(TASK_CASES))
def test_parallel_predictive_for_every_task(name):
    case = TASK_CASES[name]
    m, batch = case.make_model("bivariate"), case.make_batch()
    S, L, H = 3, m.lstm.num_layers, m.lstm.hidden_size
    with evaluating(m):
        posterior = Predictive(m.model, guide=m.guide, num_samples=S, parallel=True)(batch)
        prior = Predictive(m.model, num_samples=S, parallel=True)(batch)
    for draws in (posterior, prior):
        gates = draws["input_gate"]
        assert gates.shape[:2] == (S, batch.batch_size) and gates.shape[-2:] == (L, H)
        assert draws["obs"].shape[:2] == (S, batch.batch_size)
        i, _ = m.family.gates_from_log_basis(draws[site_name(0)])
        torch.testing.assert_close(i, gates[..., 0, :])
        assert not torch.equal(gates[0], gates[1])


def test_sample_shape_says_what_to_use_instead():
    m = make_model("next_step")
    batch = make_batch("next_step")
    trace = pyro.poutine.trace(m.guide).get_trace(batch)
    with pytest.raises(NotImplementedError, match="pyro.plate"):
        trace.nodes[site_name(0)]["fn"].rsample(torch.Size([2]))
    with pytest.raises(ValueError, match="sequentially"):
        GateMeanFieldELBO(num_particles=2, vectorize_particles=True)


@pytest.mark.parametrize("name", sorted(TASK_CASES))
def test_every_task_model_traces_its_gates_and_trains_by_plain_svi(name):
    """Every registered task (captions and text included, with their front ends)."""
    case = TASK_CASES[name]
    m, batch = case.make_model("bivariate"), case.make_batch()
    draws = Predictive(m.model, guide=m.guide, num_samples=2)(batch)
    L, H = m.lstm.num_layers, m.lstm.hidden_size
    assert draws["input_gate"].shape[:2] == (2, batch.batch_size)
    assert draws["input_gate"].shape[-2:] == (L, H)
    before = _snapshot(m)
    _svi_losses(m, batch, Trace_ELBO(), steps=2)
    moved = [n for n, p in m.named_parameters() if not torch.equal(before[n], p.detach())]
    assert moved and all(n in moved for n, p in m.named_parameters() if n.startswith("lstm."))


def test_plain_svi_with_pyro_adam_trains_as_fit_does():
    """Same draws, same minibatches: ``fit`` (torch Adam on the per-sequence loss, no clipping)
    and a plain SVI loop with ``pyro.optim.Adam`` (on the whole-data-set loss) reach the same
    weights. Adam is invariant to the loss scale up to its ``eps`` (1e-8), hence rtol 1e-4."""
    from pyro_betalstm.infer import TrainConfig, fit

    from .helpers import make_dataset

    data = make_dataset(12, "next_step")
    torch.manual_seed(0)
    by_fit = make_model("next_step", gate="bivariate5")
    by_svi = copy.deepcopy(by_fit)
    config = TrainConfig(
        num_epochs=3,
        batch_size=6,
        lr=0.01,
        clip_norm=None,
        lr_rule="none",
        progress=False,
        seed=0,
        seed_globals=True,
    )
    fit(by_fit, data, config=config)

    torch.manual_seed(0)  # what seed_globals does; the minibatch order from fit's generator
    generator = torch.Generator().manual_seed(0)
    svi = SVI(by_svi.model, by_svi.guide, pyro.optim.Adam({"lr": 0.01}), GateMeanFieldELBO())
    by_svi.train()
    for _ in range(3):
        for batch in data.batches(6, shuffle=True, generator=generator, bucket=True):
            svi.step(batch)
    for (name, p), q in zip(by_fit.named_parameters(), by_svi.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)


def test_gate_sites_stay_inside_the_open_interval():
    """Concentrations near the 1e-3 floor make float32 gates round to exactly 0 or 1 (checked
    below, so the test can fail); the recorded sites stay in (0, 1)."""
    torch.manual_seed(0)
    m = make_model("next_step", gate="bivariate5")
    with torch.no_grad():
        for layer in m.lstm.layers:
            layer.input_proj.bias.fill_(-30.0)
    batch = make_batch("next_step")
    runs = m.lstm.run(batch.inputs, m.mask(batch), gate_mode="sample", record_gates=True)
    raw = torch.stack([run.gates[0] for run in runs])
    assert bool(((raw == 0) | (raw == 1)).any())
    draws = Predictive(m.model, guide=m.guide, num_samples=3)(batch)
    for name in GATE_SITES:
        assert bool(((draws[name] > 0) & (draws[name] < 1)).all())


@pytest.mark.parametrize(
    "prior",
    [
        HierarchicalGammaPrior(),
        lambda layer, x, h: dist.Gamma(torch.full((3,), 0.5), 1.0),  # float32 tensors
        lambda layer, x, h: dist.LogNormal(torch.full((3,), -0.5), 1.0),  # no log-space draw
    ],
    ids=["hierarchical", "float32-gamma", "float32-lognormal"],
)
def test_prior_draws_of_a_float64_model_are_float64(prior):
    # they came back float32 (the hierarchical prior built its hyper-prior in the default dtype)
    torch.manual_seed(0)
    m = make_model("next_step", prior=prior).to(torch.float64)
    batch = make_batch("next_step")
    batch = SequenceBatch(batch.inputs.double(), batch.targets.double(), batch.lengths, 10)
    draws = Predictive(m.model, num_samples=2)(batch)
    assert draws["forget_gate"].dtype == torch.float64
    assert draws[site_name(0)].dtype == torch.float64
