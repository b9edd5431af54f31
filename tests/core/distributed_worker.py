"""One rank of the data-parallel tests (tests/core/test_distributed.py), started the way
torchrun starts a rank: WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in the
environment. ``python distributed_worker.py SCENARIO OUT``; each rank writes what the test
checks to ``OUT/rank<r>.pt``.

Scenarios:
- ``train``: (1) one SGD step (lr 1, no clipping, float64) on a 5-sequence set split 3 + 2
  over two ranks, whose parameter change is minus the gradient of the global batch; (2) two
  epochs in ``OUT/full``; (3) one epoch in ``OUT/resumed``, then a resume to two epochs.
- ``die``: rank 1 exits abruptly after its first epoch; rank 0 must fail, not hang.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import make_dataset, make_model  # noqa: E402

from pyro_betalstm.infer import TrainConfig, fit  # noqa: E402
from pyro_betalstm.infer.distributed import current_workers  # noqa: E402

GRADIENT_SET = 5  # sequences: minibatches of 3 and 2, one per rank, make one step
TIMEOUT_S = 30.0  # a collective that waits longer for a silent rank fails


def flat_parameters(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def gradient_step_change(out: Path) -> tuple[torch.Tensor, float]:
    """The parameter change of one 2-rank SGD step (lr 1), minus the global batch gradient,
    and the step's training loss per sequence (summed over the ranks by the all-reduce)."""
    model = make_model("classifier", "sigmoid", num_layers=2, seed=0)
    data = make_dataset(GRADIENT_SET, seed=3)
    before = flat_parameters(model)
    config = TrainConfig(
        num_epochs=1,
        batch_size=3,
        optimizer="sgd",
        lr=1.0,
        clip_norm=None,
        progress=False,
        distributed_timeout_s=TIMEOUT_S,
    )
    result = fit(model, data, None, config)
    return flat_parameters(model) - before, result.history[0]["train_loss"]


def train_config(num_epochs: int) -> TrainConfig:
    return TrainConfig(
        num_epochs=num_epochs,
        batch_size=2,
        lr=1e-2,
        progress=False,
        seed=5,
        seed_globals=True,
        distributed_timeout_s=TIMEOUT_S,
    )


def trained(out: Path, epochs: list[int]) -> tuple[torch.Tensor, list[float], list[float]]:
    """Train a latent-gate model for ``epochs[0]`` epochs, then resume to each later count;
    the final parameters, training losses and validation NLLs."""
    data, valid = make_dataset(11, seed=1), make_dataset(5, seed=2)
    model = None
    for i, num_epochs in enumerate(epochs):
        pyro.clear_param_store()
        model = make_model("classifier", "bivariate", seed=0)
        result = fit(model, data, valid, train_config(num_epochs), out_dir=out, resume=i > 0)
    losses = [r["train_loss"] for r in result.history]
    return flat_parameters(model), losses, [r["valid_nll_mean_gates"] for r in result.history]


def main(scenario: str, out: Path) -> None:
    torch.set_default_dtype(torch.float64)
    pyro.enable_validation(True)
    rank = int(os.environ["RANK"])
    if scenario == "train":
        change, step_loss = gradient_step_change(out)
        full = trained(out / "full", [2])
        resumed = trained(out / "resumed", [1, 2])
        record = {"change": change, "step_loss": step_loss, "full": full, "resumed": resumed}
        record["world_size"] = current_workers().world_size
        torch.save(record, out / f"rank{rank}.pt")
    elif scenario == "die":

        def evaluate(model, data, config):
            if rank == 1:
                os._exit(3)  # no goodbye to the other rank: as if killed
            return {"nll_mean_gates": 1.0}

        model = make_model("classifier", "sigmoid", seed=0)
        fit(model, make_dataset(8), make_dataset(4), train_config(3), evaluate=evaluate)
    elif scenario == "mismatch":  # rank 1 was given another batch size (another command)
        config = train_config(2)
        if rank == 1:
            config.batch_size = 3
        fit(make_model("classifier", "sigmoid", seed=0), make_dataset(8), None, config)
    else:
        raise ValueError(f"unknown scenario {scenario!r}; expected 'train', 'die' or 'mismatch'")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
