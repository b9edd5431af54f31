"""Milliseconds per training step (forward + backward) of the library against reference code.

Run ``python benchmarks/step_time.py --help``; see ``benchmarks/README.md``. Prints one JSON
object (and writes it to ``--out``).

What one "training step" is, for every variant alike: set every gradient to None
(``zero_grad(set_to_none=True)``), compute the loss on the same minibatch, ``backward()``. No
optimiser step is taken (it would add the same small cost to each variant and change the
parameters between repeats). Timings are wall-clock, one step per sample, with the variants
interleaved round-robin (the starting variant rotates every round) so that machine noise hits
all of them alike; ``gc.collect()`` runs before each timed step, outside the timing. On CUDA the
device is synchronised before and after each step. The medians of ``--repeats`` steps after
``--warmup`` rounds are reported, all in one process.

Pyro's validation stays at its default (on, unless Python runs with ``-O``) so the numbers are
what a user running ``SVI`` gets; ``--no-validation`` turns it off for all variants.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import pyro
import torch
from torch import nn

from pyro_betalstm.infer import GateMeanFieldELBO
from pyro_betalstm.io import atomic_write_text
from pyro_betalstm.provenance import cpu_model, git_state

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import (  # noqa: E402
    EagerSigmoidLoop,
    HandwrittenBivariateELBO,
    PyroPerStepSites,
    TorchLSTM,
    library_functions_swapped,
    previous_gamma_kl,
    previous_sample_log_gamma,
)

from pyro_betalstm.batch import SequenceBatch  # noqa: E402
from pyro_betalstm.models import NextStepBernoulli  # noqa: E402
from pyro_betalstm.nn import StochasticLSTM, set_recurrence  # noqa: E402

VARIANTS = (
    "torch_lstm",
    "torch_lstm_strict_fp32",
    "eager_sigmoid_loop",
    "library_sigmoid",
    "library_bivariate_svi",
    "library_bivariate_svi_previous_gamma_path",
    "library_bivariate5_svi",
    "handwritten_bivariate_elbo",
    "pyro_per_step_sites",
    "library_sigmoid_cuda_graph",
    "library_bivariate_svi_cuda_graph",
    "library_bivariate5_svi_cuda_graph",
    "library_bivariate_svi_compiled_cell",
    "library_sigmoid_cuda_graph_compiled_cell",
    "library_bivariate_svi_cuda_graph_compiled_cell",
)
#: variants that run only on CUDA (the recurrence replayed from CUDA graphs, issue 11)
CUDA_ONLY = frozenset(name for name in VARIANTS if "_cuda_graph" in name)
#: left out of the default list on the CPU: the CUDA-only ones, and the compiled step (tens of
#: seconds of compilation, measured slower on the CPU: gamma_path_options.py)
CPU_DEFAULT_EXCLUDES = CUDA_ONLY | {
    "library_bivariate_svi_compiled_cell",
    "torch_lstm_strict_fp32",  # TF32 is a GPU question: on the CPU the same as torch_lstm
}

#: ``name: (numerator, denominator, target or None)``; a ratio meets its target when ``<=``.
RATIOS = {
    "library_bivariate_svi/handwritten_bivariate_elbo": (
        "library_bivariate_svi",
        "handwritten_bivariate_elbo",
        1.15,
    ),
    "library_bivariate_svi/pyro_per_step_sites": (
        "library_bivariate_svi",
        "pyro_per_step_sites",
        0.75,
    ),
    "library_sigmoid/eager_sigmoid_loop": ("library_sigmoid", "eager_sigmoid_loop", 1.3),
    # Issue 11's CPU work on the Gamma path, before/after in the same process (target: faster).
    "library_bivariate_svi/library_bivariate_svi_previous_gamma_path": (
        "library_bivariate_svi",
        "library_bivariate_svi_previous_gamma_path",
        1.0,
    ),
    # Issue 11's CPU stretch goal: the latent-gate step within 3x of the eager sigmoid loop.
    "library_bivariate_svi/eager_sigmoid_loop": (
        "library_bivariate_svi",
        "eager_sigmoid_loop",
        3.0,
    ),
    "library_bivariate_svi/torch_lstm": ("library_bivariate_svi", "torch_lstm", None),
    # Issue 11's GPU target: the bivariate SVI step within 4x of cuDNN (stretch: 2x), and the
    # graphs against the eager loop in the same process.
    "library_bivariate_svi_cuda_graph/torch_lstm": (
        "library_bivariate_svi_cuda_graph",
        "torch_lstm",
        4.0,
    ),
    "library_bivariate_svi_cuda_graph/library_bivariate_svi": (
        "library_bivariate_svi_cuda_graph",
        "library_bivariate_svi",
        1.0,
    ),
    "library_bivariate5_svi_cuda_graph/torch_lstm": (
        "library_bivariate5_svi_cuda_graph",
        "torch_lstm",
        None,
    ),
    "library_sigmoid_cuda_graph/torch_lstm": ("library_sigmoid_cuda_graph", "torch_lstm", None),
    # cuDNN may use TF32 tensor cores by default, the library's step does not: the same ratio
    # against cuDNN in full float32
    "library_bivariate_svi_cuda_graph/torch_lstm_strict_fp32": (
        "library_bivariate_svi_cuda_graph",
        "torch_lstm_strict_fp32",
        None,
    ),
    # the graphs with each step's elementwise work compiled (fewer kernels per replayed step)
    "library_bivariate_svi_cuda_graph_compiled_cell/torch_lstm": (
        "library_bivariate_svi_cuda_graph_compiled_cell",
        "torch_lstm",
        None,
    ),
    "library_bivariate_svi_cuda_graph_compiled_cell/library_bivariate_svi_cuda_graph": (
        "library_bivariate_svi_cuda_graph_compiled_cell",
        "library_bivariate_svi_cuda_graph",
        None,
    ),
    "library_bivariate_svi_compiled_cell/library_bivariate_svi": (
        "library_bivariate_svi_compiled_cell",
        "library_bivariate_svi",
        None,
    ),
}

CPU_DEFAULTS = {"batch": 32, "input": 32, "hidden": 128, "steps": 100}
GPU_DEFAULTS = {"batch": 64, "input": 32, "hidden": 256, "steps": 100}


class Variant:
    """A module and a zero-argument loss; :meth:`step` is what gets timed."""

    def __init__(
        self,
        module: nn.Module,
        loss: Callable[[], torch.Tensor],
        context: Callable[[], AbstractContextManager] = nullcontext,
    ):
        self.module = module
        self.loss = loss
        self.context = context

    def step(self) -> torch.Tensor:
        with self.context():
            self.module.zero_grad(set_to_none=True)
            loss = self.loss()
            loss.backward()
        return loss.detach()


def previous_gamma_path() -> AbstractContextManager:
    """The library with its Gamma path as it was before issue 11's CPU work (baselines.py)."""
    return library_functions_swapped(
        sample_log_gamma=previous_sample_log_gamma, gamma_kl=previous_gamma_kl
    )


@contextmanager
def cudnn_without_tf32() -> Iterator[None]:
    """cuDNN in full float32 (``torch.backends.cudnn.allow_tf32`` off) for one step."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


def make_data(batch: int, steps: int, size: int, device, seed: int):
    """Random binary input and target frames ``(batch, steps, size)``, float32."""
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((batch, steps, size), 0.5), generator=g)
    y = torch.bernoulli(torch.full((batch, steps, size), 0.5), generator=g)
    return x.to(device), y.to(device)


def _library_model(family: str, input_size: int, hidden: int) -> NextStepBernoulli:
    lstm = StochasticLSTM(input_size, hidden, num_layers=1, gate=family, batch_first=True)
    return NextStepBernoulli(lstm, output_size=input_size)  # default prior: Gamma(0.5, 1)


def build_variants(names, batch, input_size, hidden, x, y, device, seed) -> dict[str, Variant]:
    """Every variant's parameters, freshly created (seeded) on ``device``, float32."""
    variants: dict[str, Variant] = {}
    sequences = SequenceBatch(inputs=x, targets=y)
    for name in names:
        torch.manual_seed(seed)
        if name == "torch_lstm_strict_fp32":
            module = TorchLSTM(input_size, hidden, input_size).to(device)
            variants[name] = Variant(module, lambda m=module: m.loss(x, y), cudnn_without_tf32)
        elif name in ("torch_lstm", "eager_sigmoid_loop", "handwritten_bivariate_elbo"):
            cls = {
                "torch_lstm": TorchLSTM,
                "eager_sigmoid_loop": EagerSigmoidLoop,
                "handwritten_bivariate_elbo": HandwrittenBivariateELBO,
            }[name]
            module = cls(input_size, hidden, input_size).to(device)
            variants[name] = Variant(module, lambda m=module: m.loss(x, y))
        elif name == "pyro_per_step_sites":
            module = PyroPerStepSites(input_size, hidden, input_size).to(device)
            variants[name] = Variant(module, lambda m=module: m.loss(x, y))
        elif name.startswith("library_"):
            compiled = name.endswith("_compiled_cell")
            graphs = "_cuda_graph" in name
            family = {
                "library_sigmoid": "sigmoid",
                "library_bivariate_svi": "bivariate",
                "library_bivariate_svi_previous_gamma_path": "bivariate",
                "library_bivariate5_svi": "bivariate5",
            }[name.removesuffix("_compiled_cell").removesuffix("_cuda_graph")]
            module = _library_model(family, input_size, hidden).to(device)
            module.train()
            # graphs are captured (and steps compiled) in the warm-up rounds
            set_recurrence(module, "cuda_graph" if graphs else "eager", compile_cell=compiled)
            elbo = GateMeanFieldELBO()  # the ELBO fit() uses: TraceMeanField_ELBO, lazier

            def loss(m=module, elbo=elbo):
                return elbo.differentiable_loss(m.model, m.guide, sequences)

            previous = name.endswith("_previous_gamma_path")
            variants[name] = Variant(module, loss, previous_gamma_path if previous else nullcontext)
        else:
            raise ValueError(f"unknown variant {name!r}; expected some of {VARIANTS}")
    return variants


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def round_robin_ms(
    calls: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    sync=lambda: None,
    collect: bool = True,
) -> dict[str, list[float]]:
    """Milliseconds of each zero-argument call, ``repeats`` times after ``warmup`` untimed
    rounds, run round-robin (each round starts one call later, so no call always follows the
    same one) with ``sync()`` (``torch.cuda.synchronize`` on a GPU) before and after each
    timed call. ``collect``: a garbage collection before each call (for training steps, whose
    garbage would otherwise be collected inside another's timing; not for sub-millisecond
    kernels, which it would time with cold caches)."""
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if collect:
                gc.collect()
            sync()
            start = time.perf_counter()
            calls[name]()
            sync()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(1e3 * elapsed)
    return times


def time_variants(variants: dict[str, Variant], repeats: int, warmup: int, device) -> dict:
    """Round-robin timing; returns per-variant lists of ms (after warm-up) and last losses."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    losses: dict[str, torch.Tensor] = {}

    def step(name: str) -> Callable[[], None]:
        def call() -> None:
            losses[name] = variants[name].step()

        return call

    times = round_robin_ms({name: step(name) for name in variants}, repeats, warmup, sync)
    return {"times": times, "losses": {name: float(loss) for name, loss in losses.items()}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    for key in ("batch", "input", "hidden", "steps"):
        p.add_argument(
            f"--{key}",
            type=int,
            default=None,
            help=f"default {CPU_DEFAULTS[key]} on CPU, {GPU_DEFAULTS[key]} on CUDA",
        )
    p.add_argument(
        "--gpu-defaults",
        action="store_true",
        help="use the CUDA default sizes on any device (given sizes still win)",
    )
    p.add_argument("--repeats", type=int, default=10, help="timed steps per variant (>= 1)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated subset of: "
        + ", ".join(VARIANTS)
        + " (default: all; on the CPU all but the CUDA-only *_cuda_graph ones and the"
        " compiled step)",
    )
    p.add_argument("--no-validation", action="store_true", help="pyro.enable_validation(False)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run the benchmark; print and return the result dict (``argv`` as for argparse)."""
    git = git_state()  # the code that runs, read before it runs
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.repeats < 1 or args.warmup < 0:
        raise SystemExit("--repeats must be >= 1 and --warmup >= 0")
    if args.variants is None:
        names = [n for n in VARIANTS if device.type == "cuda" or n not in CPU_DEFAULT_EXCLUDES]
    else:
        names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; expected some of {list(VARIANTS)}")
    if device.type != "cuda" and CUDA_ONLY.intersection(names):
        raise SystemExit(f"variants {sorted(CUDA_ONLY.intersection(names))} need --device cuda")
    defaults = GPU_DEFAULTS if (device.type == "cuda" or args.gpu_defaults) else CPU_DEFAULTS
    sizes = {
        k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()
    }
    threads_before = torch.get_num_threads()
    validation_before = pyro.infer.util.is_validation_enabled()
    pyro.enable_validation(not args.no_validation)
    try:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
        x, y = make_data(sizes["batch"], sizes["steps"], sizes["input"], device, args.seed)
        variants = build_variants(
            names, sizes["batch"], sizes["input"], sizes["hidden"], x, y, device, args.seed
        )
        torch.manual_seed(args.seed)
        measured = time_variants(variants, args.repeats, args.warmup, device)
    finally:
        pyro.enable_validation(validation_before)
        torch.set_num_threads(threads_before)

    times = measured["times"]
    median = {n: statistics.median(ts) for n, ts in times.items()}
    ratios, targets = {}, {}
    for key, (num, den, target) in RATIOS.items():
        ratios[key] = median[num] / median[den] if num in median and den in median else None
        if target is not None:
            met = None if ratios[key] is None else ratios[key] <= target
            targets[key] = {"target": target, "met": met}
    result = {
        "config": {
            **sizes,
            "output": sizes["input"],
            "layers": 1,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "device": str(device),
            "dtype": "float32",
            "step": "zero_grad(set_to_none) + loss + backward; no optimizer step",
            "loss": "sum over batch/time/keys (negative ELBO for latent-gate variants)",
            "elbo": "GateMeanFieldELBO (TraceMeanField_ELBO without unused log-densities), prior Gamma(0.5, 1), analytic KL",
            "pyro_validation": not args.no_validation,
            "order": "round-robin, rotating start",
        },
        "environment": {
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "python": platform.python_version(),
            "device_name": device_name(device),
            "threads": threads,
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.version.cuda if device.type == "cuda" else None,
            # cuDNN's LSTM may use TF32 tensor cores (torch's default); the library's matrix
            # products follow the matmul flag: the baseline's precision, written down
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "git": git,
        },
        "ms": median,
        "ratios": ratios,
        "targets": targets,
        "stats": {
            n: {
                "median": median[n],
                "min": min(ts),
                "max": max(ts),
                "mean": statistics.fmean(ts),
                "stdev": statistics.stdev(ts) if len(ts) > 1 else 0.0,
            }
            for n, ts in times.items()
        },
        "timings_ms": times,
        "final_loss": measured["losses"],
    }
    return emit(result, args.out)


def emit(result: dict, out: Path | None) -> dict:
    """Print ``result`` as JSON and write it atomically to ``out`` (when given)."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        atomic_write_text(out, text + "\n")
    return result


if __name__ == "__main__":
    main()
