"""Vectorised against sequential ELBO particles: milliseconds per loss-and-gradient evaluation.

Run ``python benchmarks/vectorised_particles.py --help``. For each number of particles ``k`` it
times ``Trace_ELBO(num_particles=k, vectorize_particles=True)`` (the ``k`` recurrences folded
into one batch of ``k * B`` sequences) and ``Trace_ELBO(num_particles=k)`` (``k`` passes one
after the other) on the same model and minibatch, interleaved round-robin so that machine noise
hits both alike, and prints one JSON object with the medians and ``sequential / vectorised``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.models import NextStepBernoulli
from pyro_betalstm.nn import StochasticLSTM


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--particles", type=int, nargs="+", default=[4, 16])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=40, help="sequence length T")
    p.add_argument("--keys", type=int, default=88, help="input and output size")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--gate", default="bivariate5")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    lstm = StochasticLSTM(args.keys, args.hidden, args.layers, gate=args.gate, batch_first=True)
    model = NextStepBernoulli(lstm, args.keys)
    frames = (torch.rand(args.batch, args.steps + 1, args.keys) < 0.1).float()
    batch = SequenceBatch(frames[:, :-1], frames[:, 1:], dataset_size=10 * args.batch)
    result = {"settings": vars(args), "ms": {}, "sequential_over_vectorised": {}}
    for k in args.particles:
        elbos = {
            "vectorised": Trace_ELBO(
                num_particles=k, vectorize_particles=True, max_plate_nesting=1
            ),
            "sequential": Trace_ELBO(num_particles=k),
        }
        times: dict[str, list[float]] = {name: [] for name in elbos}
        for repeat in range(args.repeats + 1):  # the first round warms up
            for name, elbo in elbos.items():
                model.zero_grad(set_to_none=True)
                started = time.perf_counter()
                elbo.loss_and_grads(model.model, model.guide, batch)
                if repeat:
                    times[name].append(1e3 * (time.perf_counter() - started))
        ms = {name: statistics.median(t) for name, t in times.items()}
        result["ms"][k] = ms
        result["sequential_over_vectorised"][k] = ms["sequential"] / ms["vectorised"]
    pyro.clear_param_store()
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(parse_args())
