"""Learning-rate rules on scripted validation sequences, and their use by :func:`fit`."""

from __future__ import annotations

import pytest

from pyro_betalstm.infer import TrainConfig, fit
from pyro_betalstm.infer.lr_rules import LR_RULES, lr_rule_fires

from .helpers import make_dataset, make_model


def fired(rule: str, values: list[float], start: int) -> list[int]:
    """The epochs after which ``rule`` fires on the validation sequence ``values``."""
    return [e for e in range(1, len(values) + 1) if lr_rule_fires(rule, values[:e], start)]


# Improves until epoch 11, then: 12 above the best but below epoch 11 (no new best, not above
# the three before), 13 above each of epochs 10-12, 14 a new best, 15 above 14 only.
SCRIPT = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1.5, 1.4, 1.45, 1.6, 1.3, 1.35]


def test_authors_rule_fires_only_above_each_of_the_three_previous_epochs():
    # Song et al.: `if ep > 10 and vloss > max(vloss_list[-3:])`, i.e. start_epoch 11
    assert fired("authors", SCRIPT, start=11) == [13]


def test_no_new_best_rule_fires_on_every_epoch_without_a_new_best():
    assert fired("no_new_best", SCRIPT, start=11) == [12, 13, 15]


def test_rules_never_fire_before_the_start_epoch():
    rising = [float(v) for v in range(1, 16)]  # every epoch is worse than all before it
    assert fired("authors", rising, start=11) == list(range(11, 16))
    assert fired("no_new_best", rising, start=5) == list(range(5, 16))
    assert fired("none", rising, start=1) == []


def test_authors_rule_with_fewer_than_three_previous_epochs_uses_those_there_are():
    assert fired("authors", [1.0, 2.0], start=1) == [2]
    assert fired("authors", [3.0, 1.0, 2.0], start=1) == []  # 2 is not above 3


def test_unknown_rule_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match="expected one of .*'authors'"):
        lr_rule_fires("cosine", [1.0], 1)
    with pytest.raises(ValueError, match="unknown lr_rule"):
        fit(make_model("classifier", "sigmoid"), make_dataset(4), None, TrainConfig(lr_rule="x"))
    assert set(LR_RULES) == {"authors", "no_new_best", "none"}


def scripted(values):
    it = iter(values)

    def evaluate(model, data, config):
        return {"nll_mean_gates": next(it)}

    return evaluate


@pytest.mark.parametrize(
    "rule, expected_decays", [("authors", [13]), ("no_new_best", [12, 13, 15]), ("none", [])]
)
def test_fit_divides_the_learning_rate_after_the_epochs_the_rule_names(rule, expected_decays):
    model = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(4)
    config = TrainConfig(
        num_epochs=len(SCRIPT),
        batch_size=4,
        lr=0.1,
        lr_decay=2.0,
        lr_rule=rule,
        plateau_start_epoch=11,
        progress=False,
    )
    result = fit(model, data, data, config, evaluate=scripted(SCRIPT))
    # each record holds the lr used during its epoch: a decay after epoch e shows from e + 1
    expected, lr = [], 0.1
    for epoch in range(1, len(SCRIPT) + 1):
        expected.append(lr)
        if epoch in expected_decays:
            lr /= 2.0
    assert [r["lr"] for r in result.history] == pytest.approx(expected)


def test_fit_stops_at_the_target_metric_and_records_elapsed_time():
    model = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(4)
    config = TrainConfig(num_epochs=10, batch_size=4, target_metric=1.0, progress=False)
    result = fit(model, data, data, config, evaluate=scripted([3.0, 2.0, 1.0, 0.5]))
    assert result.stopped_on_target and len(result.history) == 3
    elapsed = [r["elapsed_s"] for r in result.history]
    assert all(b > a > 0 for a, b in zip(elapsed, elapsed[1:], strict=False))
    assert elapsed[-1] >= sum(r["seconds"] for r in result.history)  # training + validation


def test_elapsed_time_accumulates_over_a_resume(tmp_path):
    data = make_dataset(4)
    config = TrainConfig(num_epochs=2, batch_size=4, progress=False)
    fit(make_model("classifier", "sigmoid", num_layers=1), data, data, config, out_dir=tmp_path)
    config.num_epochs = 3
    result = fit(
        make_model("classifier", "sigmoid", num_layers=1),
        data,
        data,
        config,
        out_dir=tmp_path,
        resume=True,
    )
    elapsed = [r["elapsed_s"] for r in result.history]
    assert len(elapsed) == 3 and elapsed[2] > elapsed[1] > elapsed[0] > 0
