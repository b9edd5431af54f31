"""Data-parallel :func:`fit` on the CPU: two gloo processes started as torchrun starts them
(tests/core/distributed_worker.py), each with a deadline so that a hang fails the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_betalstm.data import DatasetShard
from pyro_betalstm.infer import TrainConfig, fit, load_best
from pyro_betalstm.infer.checkpoint import load_resume_point
from pyro_betalstm.infer.distributed import combine_metrics, rank_seed

from .helpers import make_dataset, make_model

WORKER = Path(__file__).with_name("distributed_worker.py")
DEADLINE_S = 120  # both ranks import torch and Pyro on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(scenario: str, out: Path, world_size: int = 2) -> list[subprocess.Popen]:
    """Start ``world_size`` ranks of the worker with torchrun's environment variables."""
    port = _free_port()
    root = str(Path(__file__).parents[2])
    procs = []
    for rank in range(world_size):
        env = dict(
            os.environ,
            WORLD_SIZE=str(world_size),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        )
        cmd = [sys.executable, str(WORKER), scenario, str(out)]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    return procs


def _wait(procs: list[subprocess.Popen], deadline_s: float) -> list[tuple[int, str, float]]:
    """Each rank's exit code, stderr and seconds to exit; kills every rank past the deadline."""
    started, results = time.monotonic(), []
    try:
        for proc in procs:
            left = max(1.0, deadline_s - (time.monotonic() - started))
            _, err = proc.communicate(timeout=left)
            results.append((proc.returncode, err, time.monotonic() - started))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"a rank did not exit within {deadline_s} s (a hang)")
    return results


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """The ``train`` scenario on two ranks: what each rank recorded, and the folder."""
    out = tmp_path_factory.mktemp("ddp")
    results = _wait(_launch("train", out), DEADLINE_S)
    for rank, (code, err, _) in enumerate(results):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"
    records = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return records, out


def test_two_rank_gradient_equals_one_process_gradient_of_the_global_batch(two_rank_run, float64):
    # one SGD step at lr 1 without clipping changes the parameters by minus the gradient; the
    # sigmoid family and no dropout make the loss deterministic, so the 2-rank step (3 + 2
    # sequences) and one process on the same 5 sequences must agree up to float64 rounding
    records, _ = two_rank_run
    model = make_model("classifier", "sigmoid", num_layers=2, seed=0)
    data = make_dataset(5, seed=3)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    config = TrainConfig(
        num_epochs=1, batch_size=5, optimizer="sgd", lr=1.0, clip_norm=None, progress=False
    )
    result = fit(model, data, None, config)
    change = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    for record in records:
        assert record["world_size"] == 2
        assert change.abs().max() > 1e-3  # a real step, not a trivial zero
        torch.testing.assert_close(record["change"], change, atol=1e-6, rtol=0)
        # the loss is summed over the ranks too: the global batch's, not a rank's share
        assert record["step_loss"] == pytest.approx(result.history[0]["train_loss"], rel=1e-9)


def test_ranks_stay_identical_and_resume_with_the_same_world_size_is_exact(two_rank_run):
    records, _ = two_rank_run
    # the gradients are summed, so both ranks hold the same weights and metrics
    torch.testing.assert_close(records[0]["full"][0], records[1]["full"][0], atol=0, rtol=0)
    assert records[0]["full"][2] == records[1]["full"][2]
    # one epoch, then a resume to two: the uninterrupted run's losses and weights
    for record in records:
        full, resumed = record["full"], record["resumed"]
        assert resumed[1] == full[1]
        torch.testing.assert_close(resumed[0], full[0], atol=0, rtol=0)


def test_a_two_rank_checkpoint_loads_in_one_process(two_rank_run, float64):
    records, out = two_rank_run
    ckpt, _ = load_resume_point(out / "full")
    assert ckpt["world_size"] == 2 and len(ckpt["rng_per_rank"]) == 2
    assert ckpt["rank_seeds"] == [5, rank_seed(5, 1)] and ckpt["rank_seeds"][1] != 5
    # the random streams of the ranks differ (their gate draws are not copies)
    assert not torch.equal(ckpt["rng_per_rank"][0]["torch"], ckpt["rng_per_rank"][1]["torch"])
    model = make_model("classifier", "bivariate", seed=1)
    model.load_state_dict(ckpt["model"])
    final = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(final, records[0]["full"][0], atol=0, rtol=0)
    load_best(make_model("classifier", "bivariate", seed=1), out / "full")
    # resuming it with another world size is refused, naming both
    config = TrainConfig(num_epochs=3, batch_size=2, lr=1e-2, progress=False, seed=5)
    with pytest.raises(ValueError, match=r"2 process\(es\) and this run has 1"):
        fit(model, make_dataset(11, seed=1), None, config, out_dir=out / "full", resume=True)


def test_when_one_rank_dies_the_other_fails_instead_of_hanging(tmp_path):
    results = _wait(_launch("die", tmp_path), DEADLINE_S)
    (code0, err0, seconds0), (code1, _, _) = results
    assert code1 == 3  # the rank that died
    assert code0 != 0, "rank 0 carried on without its peer"
    assert "Traceback" in err0  # an error, not a silent exit
    assert seconds0 < DEADLINE_S


@pytest.mark.parametrize("bucket", [True, False])
def test_ranks_split_the_minibatches_of_one_process_with_the_global_batch(bucket):
    # 2 ranks of batch 3 see, step by step, exactly the sequences of one process with batch 6
    # drawn from the same seed, also with length bucketing (each rank's minibatch used to be
    # bucketed on its own: other groups, another epoch order)
    from types import SimpleNamespace

    from pyro_betalstm.data import SequenceDataset
    from pyro_betalstm.infer.distributed import Workers
    from pyro_betalstm.infer.train import _rank_steps

    lengths = [2, 9, 4, 7, 3, 8, 5, 6, 2, 9, 4, 3, 7]  # 13 ragged sequences, index in the input
    data = SequenceDataset(
        [torch.full((n, 1), float(i)) for i, n in enumerate(lengths)], torch.zeros(13).long()
    )

    def indices(batch):
        return [] if batch is None else batch.inputs[:, 0, 0].long().tolist()

    def steps(rank):
        run = SimpleNamespace(
            config=TrainConfig(batch_size=3, bucket_by_length=bucket),
            workers=Workers(world_size=2, rank=rank),
            generator=torch.Generator().manual_seed(7),
            device=torch.device("cpu"),
        )
        return [(indices(batch), share) for batch, share in _rank_steps(run, data)]

    one = data.batch_indices(6, True, torch.Generator().manual_seed(7), bucket)
    ranks = steps(0), steps(1)
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 3
    for k, chunk in enumerate(one):
        assert ranks[0][k][0] + ranks[1][k][0] == chunk.tolist()
        assert ranks[0][k][1] + ranks[1][k][1] == pytest.approx(1.0)
    # 13 = 6 + 6 + 1: one step (the last, without bucketing) is rank 0's alone
    alone = [k for k, (batch, share) in enumerate(ranks[1]) if batch == [] and share == 0.0]
    assert len(alone) == 1 and ranks[0][alone[0]][1] == 1.0


def test_ranks_given_different_settings_both_stop_with_the_difference_named(tmp_path):
    # another batch size on one rank used to wait for the other rank until the timeout (10
    # minutes by default) and then fail with gloo's "Timed out waiting", naming nothing
    results = _wait(_launch("mismatch", tmp_path), DEADLINE_S)
    for code, err, _ in results:
        assert code != 0
        assert "config.batch_size: rank 0 2, rank 1 3" in err
        assert "every rank must run the same command" in err


def test_shards_are_disjoint_and_cover_the_data():
    data = make_dataset(7)
    shards = [DatasetShard.of_rank(data, r, 3) for r in range(3)]
    seen = sorted(i for s in shards for i in s.indices.tolist())
    assert seen == list(range(7)) and [len(s) for s in shards] == [3, 2, 2]
    batch = next(shards[1].batches(8))
    torch.testing.assert_close(batch.inputs[0, : data.inputs[1].shape[0]], data.inputs[1])
    with pytest.raises(ValueError, match="rank must lie"):
        DatasetShard.of_rank(data, 3, 3)


def test_a_shard_buckets_its_sequences_by_length():
    # evaluation reads a rank's shard shortest first, as it reads a whole data set
    data = make_dataset(12)
    shard = DatasetShard.of_rank(data, 1, 2)
    lengths = [data.inputs[int(i)].shape[0] for i in shard.indices]
    read = [n for b in shard.batches(2, bucket=True) for n in b.step_mask().sum(1).tolist()]
    assert read == sorted(lengths) and lengths != sorted(lengths)
    plain = [n for b in shard.batches(2) for n in b.step_mask().sum(1).tolist()]
    assert plain == lengths  # without bucketing: shard order
    # the two ranks' bucketed reads together take every sequence once
    taken: list[int] = []
    whole_batch = data.batch

    def recording(index):
        taken.extend(torch.as_tensor(index).tolist())
        return whole_batch(index)

    data.batch = recording
    for rank in (0, 1):
        list(DatasetShard.of_rank(data, rank, 2).batches(2, bucket=True))
    assert sorted(taken) == list(range(12))


def test_an_empty_shard_has_no_batch_and_evaluating_it_is_a_clear_error():
    # 2 sequences on 3 ranks: rank 2 holds none. It yields no minibatch (not one empty batch,
    # which padding cannot build), and each evaluation says the data are empty
    from pyro_betalstm.infer import evaluate_classifier, evaluate_nll, gate_kl_summary

    empty = DatasetShard.of_rank(make_dataset(2), 2, 3)
    assert len(empty) == 0 and list(empty.batches(4)) == [] and empty.num_batches(4) == 0
    model = make_model("classifier", "bivariate", num_layers=1)
    for evaluate in (evaluate_classifier, evaluate_nll, gate_kl_summary):
        with pytest.raises(ValueError, match="cannot evaluate on an empty data set"):
            evaluate(model, empty)


def test_metrics_combine_weighted_by_predictions():
    parts = [({"nll": 1.0, "num_predictions": 3}, 3.0), ({"nll": 2.0, "num_predictions": 1}, 1.0)]
    combined = combine_metrics([*parts, (None, 0.0)])
    assert combined == {"nll": 1.25, "num_predictions": 4}
    # a custom evaluate's numpy float32 or 0-d tensor means are means too (they were taken
    # from rank 0 alone); an integer setting is not averaged
    import numpy as np

    for one, two in ((np.float32(1.0), np.float32(2.0)), (torch.tensor(1.0), torch.tensor(2.0))):
        parts = [({"err": one, "samples": 5}, 3.0), ({"err": two, "samples": 5}, 1.0)]
        assert combine_metrics(parts) == {"err": 1.25, "samples": 5}
    with pytest.raises(ValueError, match="empty"):
        combine_metrics([(None, 0.0)])


def test_more_ranks_than_gpus_on_a_machine_is_a_clear_error(monkeypatch):
    # checked before CUDA is asked for the device (its error names no cause); stands in for
    # a 2-GPU machine on the CPU
    from pyro_betalstm.infer import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    workers = distributed.Workers(world_size=3, rank=2, local_rank=2)
    with pytest.raises(ValueError, match="LOCAL_RANK 2, but this machine has 2 CUDA device"):
        distributed._init_process_group(torch.device("cuda"), workers, 5.0)


def test_distributed_true_without_a_launch_is_refused(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = TrainConfig(num_epochs=1, progress=False, distributed=True)
    with pytest.raises(ValueError, match="torchrun"):
        fit(make_model("classifier", "sigmoid"), make_dataset(4), None, config)
