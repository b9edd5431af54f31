"""Bad input gives a ValueError whose message says what is wrong."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.data import FixedLengthSequences, SequenceDataset
from pyro_betalstm.gates import get_gate_family
from pyro_betalstm.infer.elbo import GateMeanFieldELBO
from pyro_betalstm.models import NextStepBernoulli, SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.priors import (
    BivariateBetaPrior,
    ConditionalGammaPrior,
    GammaPrior,
    GatePrior,
    HierarchicalGammaPrior,
    LearnableGammaPrior,
    get_prior,
)

from .helpers import make_batch, make_dataset, make_model


def _loss(m, batch):
    return TraceMeanField_ELBO().differentiable_loss(m.model, m.guide, batch)


def test_wrong_input_width():
    lstm = StochasticLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match="has 2 features per step; this network expects 3"):
        lstm(torch.randn(2, 5, 2))
    m = make_model()
    with pytest.raises(ValueError, match="features per step"):
        _loss(m, SequenceBatch(torch.randn(2, 5, 7), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="3-D tensor"):
        lstm(torch.randn(5, 3))


@pytest.mark.parametrize("lengths", [[5, 6], [0, 3], [-1, 2]])
def test_lengths_out_of_range(lengths):
    lstm = StochasticLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        lstm(torch.randn(2, 5, 3), lengths=torch.tensor(lengths))
    m = make_model()
    batch = SequenceBatch(torch.randn(2, 5, 3), torch.tensor([0, 1]), torch.tensor(lengths))
    with pytest.raises(ValueError, match="lengths must lie in"):
        _loss(m, batch)


@pytest.mark.parametrize(
    "lengths, message",
    [
        (torch.tensor([True, True]), "lengths must be integers.*got dtype torch.bool"),
        (["a", "b"], "lengths must be a tensor or a sequence of integers.*got list"),
    ],
)
def test_lengths_must_be_integers(lengths, message):
    """Bool lengths were taken as (1, 1); strings gave "too many dimensions 'str'"."""
    with pytest.raises(TypeError, match=message):
        StochasticLSTM(3, 4, batch_first=True)(torch.randn(2, 5, 3), lengths=lengths)
    batch = SequenceBatch(torch.randn(2, 5, 3), torch.tensor([0, 1]), torch.tensor([True, True]))
    with pytest.raises(TypeError, match="got dtype torch.bool"):
        _loss(make_model(), batch)


def test_lengths_shape_and_whole_numbers():
    lstm = StochasticLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        lstm(torch.randn(2, 5, 3), lengths=torch.tensor([5, 4, 3]))
    with pytest.raises(ValueError, match="whole numbers"):
        lstm(torch.randn(2, 5, 3), lengths=torch.tensor([5.0, 2.5]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(bad):
    x = torch.randn(2, 5, 3)
    x[1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        StochasticLSTM(3, 4, batch_first=True)(x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _loss(make_model(), SequenceBatch(x, torch.tensor([0, 1])))
    # with lengths, read together with their range and the full-length test: still named, and
    # named first when the lengths are out of range too
    for lengths in ([5, 3], [5, 9]):
        with pytest.raises(ValueError, match="NaN or infinite"):
            StochasticLSTM(3, 4, batch_first=True)(x, lengths=torch.tensor(lengths))


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_initial_state(which, bad):
    """NaN in hx spread through the outputs while NaN in the input was refused."""
    hx = [torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)]
    hx[which][0, 1, 2] = bad
    name = ("h_0", "c_0")[which]
    with pytest.raises(ValueError, match=f"hx: {name} contains NaN or infinite values"):
        StochasticLSTM(3, 4, batch_first=True)(torch.randn(2, 5, 3), tuple(hx))


def test_integer_input_is_told_to_become_the_networks_float_dtype():
    """The message offered converting the network to int64, which cannot be done."""
    lstm = StochasticLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"convert the input \(input.to\(torch.float32\)\)$"):
        lstm(torch.ones(2, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"or the network \(.to\(torch.float64\)\)"):
        lstm(torch.ones(2, 5, 3, dtype=torch.float64))  # a float input: either way works


def test_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        StochasticLSTM(3, 4, batch_first=True)(torch.randn(0, 5, 3))
    with pytest.raises(ValueError, match="empty batch"):
        StochasticLSTM(3, 4, batch_first=True)(torch.randn(2, 0, 3))
    with pytest.raises(ValueError, match="empty batch"):
        _loss(make_model(), SequenceBatch(torch.randn(0, 5, 3), torch.zeros(0, dtype=torch.long)))


def test_unknown_gate_family():
    with pytest.raises(ValueError, match="unknown gate family 'betta'; expected one of"):
        StochasticLSTM(3, 4, gate="betta")
    with pytest.raises(ValueError, match="unknown gate family"):
        get_gate_family("lstm")


def test_bad_network_sizes():
    with pytest.raises(ValueError, match="must be positive integers"):
        StochasticLSTM(3, 0)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        StochasticLSTM(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match="gate_mode='given' needs log_basis"):
        StochasticLSTM(3, 4)(torch.randn(5, 2, 3), gate_mode="given")


def test_unknown_prior_name():
    with pytest.raises(ValueError, match="unknown prior 'gama'"):
        get_prior("gama")
    with pytest.raises(ValueError, match="unknown prior"):
        make_model(prior="normal")
    with pytest.raises(ValueError, match="cannot make a gate prior"):
        get_prior(3.0)


@pytest.mark.parametrize(
    "gate, params", [("bivariate", [1.0, 1.0]), ("bivariate5", [1.0] * 3), ("beta", [1.0] * 5)]
)
def test_bivariate_beta_prior_with_wrong_number_of_params(gate, params):
    with pytest.raises(
        ValueError,
        match=rf"BivariateBetaPrior has {len(params)} parameters; the "
        rf"'{gate}' family needs",
    ):
        make_model(gate=gate, prior=BivariateBetaPrior(params))
    with pytest.raises(ValueError, match="must be a vector"):
        BivariateBetaPrior([[1.0, 1.0, 1.0]])


def test_gamma_prior_basis_size_mismatch():
    with pytest.raises(ValueError, match="basis of 3 Gammas"):
        make_model(gate="bivariate", prior=GammaPrior([0.5, 0.5]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: GammaPrior(-0.5),
        lambda: GammaPrior(0.5, rate=0.0),
        lambda: GammaPrior([0.5, float("nan"), 0.5]),
        lambda: BivariateBetaPrior([1.0, -1.0, 1.0]),
        lambda: LearnableGammaPrior(init_concentration=0.0),
    ],
)
def test_non_positive_prior_concentration(make):
    with pytest.raises(ValueError, match="must be positive and finite"):
        make()


@pytest.mark.parametrize("loc", [float("nan"), float("inf"), "a", None])
def test_hierarchical_prior_loc_must_be_a_finite_number(loc):
    # NaN was accepted and failed at the first SVI step, in a Normal, naming no prior
    with pytest.raises(ValueError, match="loc must be a finite number"):
        HierarchicalGammaPrior(loc=loc)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_kl_weight_must_be_finite_and_non_negative(weight):
    """-1 and NaN failed only at the first loss, inf gave an infinite loss."""
    with pytest.raises(ValueError, match="kl_weight must be finite and non-negative"):
        make_model(kl_weight=weight)
    m = make_model(kl_weight=0.5)
    with pytest.raises(ValueError, match="kl_weight must be finite and non-negative"):
        m.kl_weight = weight  # annealing sets the attribute: checked there too
    assert m.kl_weight == 0.5


@pytest.mark.parametrize("weight", ["a", True, None])
def test_kl_weight_must_be_a_number(weight):
    if weight is not None:  # None to the constructor means the default, 1
        with pytest.raises(TypeError, match="kl_weight must be a number"):
            make_model(kl_weight=weight)
    m = make_model()
    with pytest.raises(TypeError, match="kl_weight must be a number"):
        m.kl_weight = weight
    assert m.kl_weight == 1.0


def test_kl_weight_accepts_numbers_as_floats():
    for weight in (0, 2, 1e-3, torch.tensor(0.25)):
        assert make_model(kl_weight=weight).kl_weight == float(weight)


def test_sequence_dataset_errors():
    with pytest.raises(ValueError, match="the data set is empty"):
        SequenceDataset([])
    with pytest.raises(ValueError, match="same feature width"):
        SequenceDataset([torch.randn(3, 2), torch.randn(4, 3)])
    with pytest.raises(ValueError, match="2-D"):
        SequenceDataset([torch.randn(3)])
    with pytest.raises(ValueError, match="at least one step"):
        SequenceDataset([torch.randn(0, 2), torch.randn(3, 2)])
    with pytest.raises(ValueError, match="1 targets for 2 sequences"):
        SequenceDataset([torch.randn(3, 2), torch.randn(4, 2)], torch.tensor([1]))
    with pytest.raises(ValueError, match=r"as many steps as their inputs \(3 != 4\)"):
        SequenceDataset(
            [torch.randn(3, 2), torch.randn(4, 2)], [torch.ones(3, 1), torch.ones(3, 1)]
        )
    data = SequenceDataset([torch.randn(3, 2)], torch.tensor([0]))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(data.batches(0))


def test_sequence_dataset_takes_numpy_arrays_as_tensors():
    """NumPy sequences gave AttributeError 'numpy.ndarray' object has no attribute 'dim'."""
    xs = [np.random.default_rng(0).normal(size=(t, 2)).astype(np.float32) for t in (3, 2)]
    from_numpy = SequenceDataset(xs, np.array([0, 1]))
    tensors = SequenceDataset([torch.from_numpy(x) for x in xs], torch.tensor([0, 1]))
    for a, b in zip(from_numpy.batches(2), tensors.batches(2), strict=True):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    steps = SequenceDataset(xs, [np.ones((3, 1)), np.zeros((2, 1))])
    assert steps.batch([0, 1]).targets.shape == (2, 3, 1)
    with pytest.raises(TypeError, match="sequences must be tensors \\(or NumPy arrays\\)"):
        SequenceDataset(["abc"])


def test_classifier_targets():
    m = make_model("classifier", num_outputs=3)
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        _loss(m, SequenceBatch(x, torch.tensor([0, 3])))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        _loss(m, SequenceBatch(x, torch.tensor([-1, 0])))
    with pytest.raises(ValueError, match=r"class indices of shape \(2,\)"):
        _loss(m, SequenceBatch(x, torch.tensor([[0], [1]])))
    with pytest.raises(ValueError, match="class indices"):
        _loss(m, SequenceBatch(x, None))
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        SequenceClassifier(StochasticLSTM(3, 4, batch_first=True), 1)
    with pytest.raises(TypeError, match="num_classes must be an integer, got 2.5"):
        SequenceClassifier(StochasticLSTM(3, 4, batch_first=True), 2.5)


@pytest.mark.parametrize("size", [0, -1])
def test_next_step_output_size_must_be_positive(size):
    with pytest.raises(ValueError, match=f"output_size must be at least 1, got {size}"):
        NextStepBernoulli(StochasticLSTM(3, 4, batch_first=True), size)
    with pytest.raises(TypeError, match="output_size must be an integer"):
        NextStepBernoulli(StochasticLSTM(3, 4, batch_first=True), 4.0)


@pytest.mark.parametrize("width, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
def test_conditional_prior_width_must_be_a_positive_integer(width, error):
    with pytest.raises(error, match=f"width must be a(n| positive) integer, got {width}"):
        ConditionalGammaPrior(width)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, 1.5])
def test_output_bias_frequencies_must_lie_in_the_unit_interval(bad):
    """NaN set the bias to NaN silently; values outside [0, 1] were clamped silently."""
    m = make_model("next_step", num_outputs=4)
    before = m.output.bias.detach().clone()
    with pytest.raises(ValueError, match=rf"lie in \[0, 1\].*frequencies\[2\] = {bad}"):
        m.init_output_bias(torch.tensor([0.1, 0.5, bad, 0.2]))
    assert torch.equal(m.output.bias, before)


def test_output_bias_keeps_exact_zero_and_one_finite():
    m = make_model("next_step", num_outputs=4)
    m.init_output_bias(torch.tensor([0.0, 1.0, 0.5, 0.25]))
    expected = torch.logit(torch.tensor([1e-4, 1 - 1e-4, 0.5, 0.25]))
    assert torch.equal(m.output.bias.detach(), expected)


def test_next_step_target_shapes():
    m = make_model("next_step", num_outputs=4)
    x = torch.randn(2, 5, 3)
    for y in (torch.ones(2, 5, 3), torch.ones(2, 4, 4), torch.ones(5, 4), None):
        with pytest.raises(ValueError, match=r"targets must have shape \(2, 5, 4\)"):
            _loss(m, SequenceBatch(x, y))
    assert isinstance(m, NextStepBernoulli)


# ----- SequenceBatch ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, -5, 2])
def test_dataset_size_must_be_positive_and_at_least_the_batch(size):
    """-5 gave a negative loss, 0 was taken for "none", 2 < B shrank the likelihood."""
    x = torch.randn(3, 5, 3)
    with pytest.raises(ValueError, match=r"dataset_size must be a positive integer at least the "):
        SequenceBatch(x, torch.tensor([0, 1, 2]), dataset_size=size)


@pytest.mark.parametrize("size", [2.5, 10.0, "10", True])
def test_dataset_size_must_be_an_integer(size):
    with pytest.raises(TypeError, match="dataset_size must be an integer"):
        SequenceBatch(torch.randn(3, 5, 3), dataset_size=size)


def test_repeat_stacks_copies_of_every_per_sequence_tensor_copy_major():
    """Row k * B + b of the repeated batch is sequence b (what folded draws reshape by), for
    inputs, targets, lengths and per-sequence extras; shared extras stay as they are."""
    batch = make_batch(lengths=(5, 3, 4))
    shared = torch.arange(7)  # not one row per sequence
    batch.extras.update(images=torch.randn(3, 2, 2), table=shared)
    folded = batch.repeat(4)
    B = batch.batch_size
    for name in ("inputs", "targets", "lengths"):
        value, original = getattr(folded, name), getattr(batch, name)
        assert value.shape[0] == 4 * B
        for k in range(4):
            assert torch.equal(value[k * B : (k + 1) * B], original)
    for k in range(4):
        assert torch.equal(folded.extras["images"][k * B : (k + 1) * B], batch.extras["images"])
    assert folded.extras["table"] is shared and folded.dataset_size is None
    for times in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="times must be a positive integer"):
            batch.repeat(times)


def test_lengths_given_as_a_list_become_a_tensor():
    batch = make_batch(lengths=(5, 3, 4))
    listed = SequenceBatch(batch.inputs, batch.targets, [5, 3, 4], dataset_size=10)
    assert torch.equal(listed.lengths, batch.lengths)
    assert torch.equal(listed.step_mask(), batch.step_mask())
    assert listed.num_valid_steps() == 12 == int(batch.step_mask().sum())
    assert SequenceBatch(batch.inputs, batch.targets).num_valid_steps() == 15  # 3 x 5, no lengths
    torch.manual_seed(0)
    expected = _loss(make_model(), batch)
    torch.manual_seed(0)
    assert torch.equal(_loss(make_model(), listed), expected)
    with pytest.raises(TypeError, match="lengths must be a tensor or a sequence of integers"):
        SequenceBatch(batch.inputs, lengths=["a", "b", "c"])


# ----- LearnableGammaPrior's initial concentration ----------------------------------------------
def _learnable_concentration(init):
    prior = LearnableGammaPrior(init)
    prior.setup(get_gate_family("bivariate"), [3], 4)
    return prior


@pytest.mark.parametrize("init", [88.0, 89.0, 100.0, 1e4])
def test_learnable_prior_takes_large_initial_concentrations(init):
    """log(expm1(c)) overflowed to inf in float32 above about 88.7."""
    concentration = _learnable_concentration(init).concentration(0)
    torch.testing.assert_close(concentration, torch.full((4, 3), init + 1e-3))


@pytest.mark.parametrize("init", [5e-4, 0.01, 0.5, 2.0, 88.0])
def test_learnable_prior_start_is_unchanged_where_it_was_finite(init):
    """Where log(expm1(c)) in float32 was finite the parameter is the very one it gave."""
    raw = _learnable_concentration(init).raw_concentration[0]
    assert torch.equal(raw.detach(), torch.full((4, 3), float(torch.tensor(init).expm1().log())))


# ----- a prior must give a distribution over u > 0 or over log u --------------------------------
@pytest.mark.parametrize(
    "make, what",
    [
        (lambda: torch.ones(3), "returned Tensor"),
        (lambda: None, "returned NoneType"),
        (lambda: dist.Beta(torch.ones(3), torch.ones(3)), "is a Beta with support Interval"),
        (lambda: dist.Poisson(torch.ones(3)), "is a Poisson"),
    ],
)
def test_prior_must_be_a_distribution_over_u_or_log_u(make, what):
    """A non-distribution failed deep inside the gate sites; a Beta gave an infinite loss."""
    m = make_model(prior=lambda layer, x, h: make())
    message = rf"prior of layer 0 {what}.*a prior must return a torch Distribution whose support "
    for elbo in (GateMeanFieldELBO(), TraceMeanField_ELBO()):
        with pytest.raises(ValueError, match=message):
            elbo.differentiable_loss(m.model, m.guide, make_batch())
    with pytest.raises(ValueError, match=message):  # drawing from the prior
        m.prior_sampler(0)(0, torch.randn(3, 3), torch.randn(3, 4))


def test_the_wrong_shape_names_the_whole_basis_it_must_broadcast_to():
    # a batch dimension of 7 against a batch of 3 used to be reported as "(..., 4, 3)", which a
    # (7, 4, 3) prior does broadcast to
    m = make_model(prior=lambda layer, x, h: dist.Gamma(torch.full((7, 4, 3), 0.5), 1.0))
    with pytest.raises(ValueError, match=r"broadcast to the basis they score, \(3, 5, 4, 3\)"):
        GateMeanFieldELBO().differentiable_loss(m.model, m.guide, make_batch())


def test_a_prior_on_another_device_is_named():
    # "meta" stands in for a GPU here: a prior whose tensor stayed on one device while the
    # network moved to another (a plain attribute does not follow model.to("cuda"))
    def prior(layer, x, h):
        return dist.Gamma(torch.full((4, 3), 0.5, device="meta"), 1.0, validate_args=False)

    m = make_model(prior=prior)
    with pytest.raises(ValueError, match=r"prior of layer 0 returned a Gamma whose concentration "
                       r"is on meta, but the network runs on cpu: make such tensors on "
                       r"prev_hidden\.device"):  # fmt: skip
        GateMeanFieldELBO().differentiable_loss(m.model, m.guide, make_batch())

    # a LogNormal's parameters sit in its base Normal
    def log_normal(layer, x, h):
        with pyro.validation_enabled(False):  # its base Normal would read the meta values
            return dist.LogNormal(torch.zeros(4, 3, device="meta"), 1.0)

    m = make_model(prior=log_normal)
    with pytest.raises(ValueError, match=r"returned a Normal whose loc is on meta"):
        GateMeanFieldELBO().differentiable_loss(m.model, m.guide, make_batch())


def test_prior_mode_draws_check_the_priors_device_and_shape():
    # the model run without its guide draws every step's basis from the prior (Predictive
    # without a guide, prior gate diagnostics): the same checks as the scored path
    def on_meta(layer, x, h):
        return dist.Gamma(torch.full((4, 3), 0.5, device="meta"), 1.0, validate_args=False)

    with pytest.raises(ValueError, match=r"returned a Gamma whose concentration is on meta"):
        pyro.poutine.trace(make_model(prior=on_meta).model).get_trace(make_batch())
    wrong = make_model(prior=lambda layer, x, h: dist.Gamma(torch.full((7, 4, 3), 0.5), 1.0))
    with pytest.raises(ValueError, match=r"batch_shape \(7, 4, 3\).*broadcast to the basis"):
        pyro.poutine.trace(wrong.model).get_trace(make_batch())


class _NoDistribution(GatePrior):
    def distrib(self, layer, inputs, prev_hidden):  # misspelt
        return dist.Gamma(0.5, 1.0)


def test_a_prior_class_or_one_without_distribution_is_refused_at_once():
    with pytest.raises(ValueError, match=r"prior=GammaPrior is the class; pass an instance: "
                       r"prior=GammaPrior\(\)"):  # fmt: skip
        make_model(prior=GammaPrior)
    with pytest.raises(ValueError, match="_NoDistribution does not define distribution"):
        make_model(prior=_NoDistribution())
    with pytest.raises(NotImplementedError, match="_NoDistribution does not define distribution"):
        _NoDistribution().distribution(0, torch.zeros(1, 3), torch.zeros(1, 4))


class _GlobalWithoutGuide(GatePrior):
    def model(self):
        self.kappa = pyro.sample("my_kappa", dist.LogNormal(0.0, 1.0))

    def distribution(self, layer, inputs, prev_hidden):
        return dist.Gamma(self.kappa.expand(3), 1.0)


@pytest.mark.filterwarnings("ignore:Found vars in model but not guide")
def test_a_global_latent_without_a_guide_site_is_named():
    # it was a bare KeyError: 'my_kappa' from inside the ELBO
    m = make_model(prior=_GlobalWithoutGuide())
    with pytest.raises(ValueError, match=r"samples the latent site 'my_kappa' but the guide does "
                       r"not.*samples each of them in its guide\(\)"):  # fmt: skip
        GateMeanFieldELBO().differentiable_loss(m.model, m.guide, make_batch())


def test_a_non_positive_prior_concentration_is_named_in_full(tmp_path):
    from pyro_betalstm.infer import NonFiniteLossError, TrainConfig, fit

    prior = lambda layer, x, h: dist.Gamma(torch.tensor([0.5, -1.0, 0.5]), 1.0)  # noqa: E731
    data = make_dataset(8)
    config = TrainConfig(num_epochs=1, batch_size=4, progress=False, seed=0)
    with pytest.raises(NonFiniteLossError) as err:
        fit(make_model(prior=prior), data, None, config)
    message = str(err.value)
    assert (
        "invalid (NaN, infinite, or outside its constraint such as a Gamma concentration <= 0)"
        in message
        and "at the first step, a prior or network may give it" in message
    )
    # the cause's first line whole (it used to be cut at 200 characters, before the constraint)
    assert "to satisfy the constraint GreaterThan(lower_bound=0.0), but found invalid" in message


# ----- next-step targets, data sets ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.bool])
def test_next_step_integer_and_bool_targets_are_binary_frames(dtype):
    batch = make_batch("next_step", num_outputs=4)
    as_dtype = SequenceBatch(batch.inputs, batch.targets.to(dtype), batch.lengths, 10)
    losses = []
    for b in (batch, as_dtype):
        torch.manual_seed(0)
        losses.append(_loss(make_model("next_step", num_outputs=4), b))
    assert torch.equal(losses[1], losses[0])


def test_per_step_targets_must_share_one_width():
    """Ragged widths used to fail only when a minibatch was padded, mid-training."""
    xs = [torch.randn(3, 2), torch.randn(4, 2)]
    with pytest.raises(ValueError, match="per-step targets must all have the same feature width"):
        SequenceDataset(xs, [torch.ones(3, 2), torch.ones(4, 5)])


@pytest.mark.parametrize("labels", [[0.7, 1.0], [0.0, float("nan")]])
def test_fixed_length_labels_must_be_whole_numbers(labels):
    """.long() truncated 0.7 to 0 and turned NaN into a huge negative label."""
    with pytest.raises(ValueError, match="targets must be whole-number class labels"):
        FixedLengthSequences(torch.randn(2, 3, 4), torch.tensor(labels))
    data = FixedLengthSequences(torch.randn(2, 3, 4), torch.tensor([0.0, 2.0]))
    assert data.targets.tolist() == [0, 2]


@pytest.mark.parametrize("extra_steps", [2, -1])
def test_a_conditioned_gate_site_must_have_the_batchs_shape(extra_steps):
    """poutine.condition on a gate site with a log-basis of the wrong length: an error naming
    the shape expected, not a density summed over steps the layer never ran (or an
    IndexError inside the recurrence)."""
    from pyro import poutine

    m = make_model("classifier", "bivariate", num_layers=1)
    batch = make_batch("classifier", lengths=None)  # B 3, T 5; hidden 4, K 3
    good = torch.zeros(3, 5, 4, 3)
    conditioned = poutine.condition(m.model, {"log_gamma_basis_0": good})
    assert torch.isfinite(poutine.trace(conditioned).get_trace(batch).log_prob_sum())
    bad = torch.zeros(3, 5 + extra_steps, 4, 3)
    conditioned = poutine.condition(m.model, {"log_gamma_basis_0": bad})
    with pytest.raises(ValueError, match=r"ending in \(3, 5, 4, 3\), got \(3, "):
        poutine.trace(conditioned).get_trace(batch).log_prob_sum()
