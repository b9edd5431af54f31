"""The CPU options for the Gamma basis path (issue 11), timed against what the library does.

Four questions, each answered by medians of interleaved timings in one process:

1. ``exponential``: the exponential term of ``sample_log_gamma`` from torch's
   ``Tensor.exponential_`` (the previous path) against ``standard_exponential`` (inversion of a
   float64 uniform, the library's now; the same numbers in float32).
2. ``gamma``: the Gamma draw from torch's kernel (``Gamma.rsample``, the library's) against a
   vectorised Marsaglia-Tsang sampler written in eager torch ops (value only: it would still
   need its own implicit-reparameterisation gradient).
3. ``compile`` (with ``--compile``): one bivariate layer's forward and backward over ``T`` steps,
   eager against ``torch.compile`` of the step's elementwise work (the concentration and the
   gate map plus cell update; the Gamma draw stays eager between them), with the same draws.
   With ``--device cuda`` only this question is asked (the other two concern the CPU kernels),
   and ``torch.compile(mode="reduce-overhead")`` (CUDA graphs of the compiled pieces) joins:
   issue 11's ``torch.compile`` candidate on the GPU, next to the library's whole-loop graphs
   (``step_time.py``'s ``*_cuda_graph`` variants).
4. ``floor`` (CPU): the part of a ``bivariate`` SVI step that no exact path through torch's
   public Gamma kernels avoids -- ``T`` steps of Gamma draws (``Gamma.rsample``) with their
   implicit-reparameterisation gradient, and the analytic Gamma KL with its gradient over the
   whole ``(B, T, H, K)`` basis -- against the eager sigmoid loop of ``step_time.py``, at its
   sizes. A ``bivariate`` step does an LSTM step's work as well, so ``1 + floor / loop`` bounds
   the ratio ``library_bivariate_svi / eager_sigmoid_loop`` from below on this machine.

    python benchmarks/gamma_path_options.py --threads 1 --compile --out docs/results/gamma_path_cpu.json
    python benchmarks/gamma_path_options.py --device cuda --compile --batch 64 --hidden 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.distributions import Gamma

from pyro_betalstm.distributions import gamma_kl
from pyro_betalstm.distributions.gate_algebra import STEP_BASIS_DIM
from pyro_betalstm.distributions.numerics import sample_log_gamma, standard_exponential
from pyro_betalstm.gates import get_gate_family
from pyro_betalstm.nn.step import cell_update
from pyro_betalstm.provenance import git_state

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import PRIOR_CONCENTRATION, EagerSigmoidLoop  # noqa: E402
from step_time import (  # noqa: E402
    CPU_DEFAULTS,
    device_name,
    emit,
    make_data,
    round_robin_ms,
)


def marsaglia_tsang_log_gamma(shape_param: torch.Tensor) -> torch.Tensor:
    """``log g``, ``g ~ Gamma(a, 1)`` for ``a >= 1`` (Marsaglia & Tsang, 2000), vectorised:
    every element proposes at once and the rejected ones (a few percent) propose again."""
    d = shape_param - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)
    out = torch.empty_like(shape_param)
    todo = torch.arange(shape_param.numel(), device=shape_param.device)
    d, c = d.flatten(), c.flatten()
    while todo.numel():
        x = torch.randn(todo.shape, dtype=d.dtype, device=d.device)
        w = c * x
        log_v3 = 3.0 * torch.log1p(w)
        log_uniform = torch.rand(todo.shape, dtype=d.dtype, device=d.device).log()
        accept = (w > -1.0) & (log_uniform < 0.5 * x * x + d * (1.0 - log_v3.exp() + log_v3))
        out.view(-1)[todo[accept]] = (d.log() + log_v3)[accept]
        todo, d, c = todo[~accept], d[~accept], c[~accept]
    return out


def interleaved_ms(
    candidates: dict, repeats: int, warmup: int = 2, sync=lambda: None
) -> dict[str, float]:
    """Median milliseconds of each zero-argument callable, timed round-robin as
    ``step_time.py`` times its variants (:func:`step_time.round_robin_ms`), without its
    garbage collection before each call (cold caches would dominate a kernel's timing)."""
    times = round_robin_ms(candidates, repeats, warmup, sync, collect=False)
    return {name: statistics.median(ts) for name, ts in times.items()}


def layer_loss(step_pieces, x, w_x, w_h, batch, hidden, steps, seed: int) -> torch.Tensor:
    """One bivariate layer over ``steps`` steps, forward and backward; ``step_pieces`` is
    ``(concentration, gates_and_cell)``, eager or compiled."""
    concentration, gates_and_cell = step_pieces
    k = get_gate_family("bivariate").basis_size
    torch.manual_seed(seed)
    x_steps = (x @ w_x).unbind(1)
    h, c, outputs = x.new_zeros(batch, hidden), x.new_zeros(batch, hidden), []
    for t in range(steps):
        z = torch.addmm(x_steps[t], h, w_h).view(batch, k + 2, hidden)
        log_u = sample_log_gamma(concentration(z[:, :k]))
        h, c = gates_and_cell(log_u, z[:, k], z[:, k + 1], c)
        outputs.append(h)
    loss = torch.stack(outputs, 1).square().sum()
    loss.backward()
    return loss.detach()


def _gates_and_cell(log_u, g, o, c):
    """The bivariate gates of the basis and the library's cell update (no padding)."""
    i, f = get_gate_family("bivariate").algebra.gates(log_u, STEP_BASIS_DIM)
    h, c_new, _ = cell_update(i, f, g, o, c, c, None)  # the previous h is unused without a mask
    return h, c_new


def main(argv=None) -> dict:
    git = git_state()  # the code that runs, read before it runs
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="time steps of the --compile layer")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow start)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (the compile question only)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not (torch.cuda.is_available() and args.compile):
        raise SystemExit("--device cuda needs CUDA and --compile (the question asked there)")
    torch.set_num_threads(args.threads)
    family = get_gate_family("bivariate")
    n = args.batch * args.hidden * family.basis_size  # one step's basis elements
    result: dict = {"config": {**vars(args), "out": None, "elements_per_step": n}}
    if device.type == "cpu":
        _cpu_kernels(result, n, args.repeats)
        result["floor"] = _floor_question(family, args)
    if args.compile:
        result["compile"] = _compile_question(family, args, device)
    result["environment"] = {
        "torch": torch.__version__,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "git": git,
    }
    return emit(result, args.out)


def _cpu_kernels(result: dict, n: int, repeats: int) -> None:
    """Questions 1 and 2: the exponential and Gamma kernels on the CPU."""
    torch.manual_seed(0)
    alpha = torch.rand(n) * 2.0 + 0.01  # softplus-link concentrations of a fresh model

    shape = alpha.shape
    ms = interleaved_ms(
        {
            "exponential_": lambda: torch.empty(shape).exponential_(),
            "standard_exponential": lambda: standard_exponential(shape, torch.float32),
        },
        repeats,
    )
    result["exponential"] = {"ms": ms, "speedup": ms["exponential_"] / ms["standard_exponential"]}

    boosted = alpha + 1.0  # the library draws Gamma(alpha + 1): shape parameter >= 1
    candidates = {"torch_gamma_rsample": lambda: Gamma(boosted, 1.0).rsample()}
    for dtype in (torch.float32, torch.float64):
        a = boosted.to(dtype)
        name = f"marsaglia_tsang_{str(dtype).split('.')[-1]}"
        candidates[name] = lambda a=a: marsaglia_tsang_log_gamma(a)
    ms = interleaved_ms(candidates, repeats)
    mean_check = marsaglia_tsang_log_gamma(torch.full((200_000,), 1.5, dtype=torch.float64))
    result["gamma"] = {
        "ms": ms,
        "ratio_to_torch": {k: v / ms["torch_gamma_rsample"] for k, v in ms.items()},
        "note": "value only; the Marsaglia-Tsang draw has no gradient here",
        "sanity_mean_log_gamma_1.5": [
            float(mean_check.mean()),
            float(torch.digamma(torch.tensor(1.5, dtype=torch.float64))),
        ],
    }


def _floor_question(family, args) -> dict:
    """Question 4: Gamma draws, KL and their gradients alone, against the eager sigmoid loop."""
    batch, hidden, steps = args.batch, args.hidden, args.steps
    basis = (batch, family.basis_size, hidden)  # one step's basis, the layer's (B, K, H)
    torch.manual_seed(0)
    alpha = torch.rand(basis) * 2.0 + 0.01  # as in question 2
    prior = torch.tensor(PRIOR_CONCENTRATION)
    grads = [torch.ones(basis)] * steps

    def gamma_draws_and_gradients():
        a = alpha.clone().requires_grad_()
        boosted, rate = a + 1.0, a.new_ones(())  # the library's draw (sample_log_gamma)
        draws = [Gamma(boosted, rate, validate_args=False).rsample() for _ in range(steps)]
        torch.autograd.backward(draws, grads)

    def gamma_kl_and_gradient():
        a = alpha.unsqueeze(1).expand(batch, steps, *basis[1:]).clone().requires_grad_()
        gamma_kl(a, prior).sum().backward()

    input_size = CPU_DEFAULTS["input"]
    loop = EagerSigmoidLoop(input_size, hidden, input_size)
    x, y = make_data(batch, steps, input_size, "cpu", seed=0)

    def eager_sigmoid_loop():
        loop.zero_grad(set_to_none=True)
        loop.loss(x, y).backward()

    ms = interleaved_ms(
        {
            "gamma_draws_and_gradients": gamma_draws_and_gradients,
            "gamma_kl_and_gradient": gamma_kl_and_gradient,
            "eager_sigmoid_loop": eager_sigmoid_loop,
        },
        max(3, args.repeats // 2),
    )
    floor = (ms["gamma_draws_and_gradients"] + ms["gamma_kl_and_gradient"]) / ms[
        "eager_sigmoid_loop"
    ]
    return {
        "ms": ms,
        "floor_over_eager_sigmoid_loop": floor,
        "bivariate_over_eager_sigmoid_loop_at_least": 1.0 + floor,
        "note": (
            "Gamma.rsample forward and backward at one step's (B, K, H), T times, and gamma_kl "
            "over (B, T, K, H) with its gradient: work every exact bivariate SVI step through "
            "torch's public Gamma kernels does, on top of an LSTM step's"
        ),
    }


def _compile_question(family, args, device: torch.device) -> dict:
    """Question 3: a layer's forward and backward, eager against compiled step pieces."""
    k = family.basis_size
    torch.manual_seed(0)
    w_x = torch.nn.Parameter(0.05 * torch.randn(args.hidden, (k + 2) * args.hidden, device=device))
    w_h = torch.nn.Parameter(0.05 * torch.randn(args.hidden, (k + 2) * args.hidden, device=device))
    x = torch.randn(args.batch, args.steps, args.hidden, device=device)
    variants = {"eager": (family.concentration, _gates_and_cell)}
    modes = {"compiled": "default"}
    if device.type == "cuda":
        modes["compiled_reduce_overhead"] = "reduce-overhead"
    sizes = (args.batch, args.hidden, args.steps)
    losses, first_call_s = {}, {}
    for name, mode in modes.items():
        started = time.perf_counter()
        pieces = tuple(
            torch.compile(fn, dynamic=False, mode=mode)
            for fn in (family.concentration, _gates_and_cell)
        )
        losses[name] = float(layer_loss(pieces, x, w_x, w_h, *sizes, seed=1))
        first_call_s[name] = time.perf_counter() - started
        variants[name] = pieces
    losses["eager"] = float(layer_loss(variants["eager"], x, w_x, w_h, *sizes, seed=1))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ms = interleaved_ms(
        {
            name: (lambda pieces=pieces: layer_loss(pieces, x, w_x, w_h, *sizes, seed=1))
            for name, pieces in variants.items()
        },
        max(3, args.repeats // 4),
        sync=sync,
    )
    return {
        "ms": ms,
        "compiled_over_eager": ms["compiled"] / ms["eager"],
        "over_eager": {name: ms[name] / ms["eager"] for name in ms},
        "first_call_s": first_call_s["compiled"],
        "first_call_s_by_mode": first_call_s,
        "same_draws_losses": losses,
    }


if __name__ == "__main__":
    main()
