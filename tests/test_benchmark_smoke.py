"""Smoke test of ``benchmarks/step_time.py``: tiny sizes, every variant, JSON keys and ratios.

Also checks that the reference variants compute the same loss and gradients as the library
(with the Gamma draws replaced by a deterministic function), so that the benchmark's bar is
the library's model and not a cheaper one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.testing.scripts import load_script

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    return load_script(BENCHMARKS / f"{name}.py", register=True)


@pytest.mark.timeout(60)
def test_step_time_smoke(tmp_path, capsys, monkeypatch):
    step_time = _load("step_time")
    out = tmp_path / "results.json"
    argv = "--batch 2 --hidden 4 --steps 3 --repeats 2 --warmup 1 --threads 1".split()
    threads = torch.get_num_threads()
    # the environment names the checkout as it was when the benchmark started (a commit made
    # while it ran used to be recorded as the code it timed): here every later read differs
    reads = iter([{"commit": "at start"}])
    monkeypatch.setattr(step_time, "git_state", lambda: next(reads, {"commit": "later"}))
    result = step_time.main([*argv, "--out", str(out)])
    assert result["environment"]["git"] == {"commit": "at start"}
    assert torch.get_num_threads() == threads  # --threads is restored

    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed == json.loads(json.dumps(result))
    cpu_variants = set(step_time.VARIANTS) - step_time.CPU_DEFAULT_EXCLUDES
    assert set(result["ms"]) == cpu_variants and step_time.CUDA_ONLY
    for name in cpu_variants:
        assert result["ms"][name] > 0
        assert len(result["timings_ms"][name]) == 2
        assert all(t > 0 for t in result["timings_ms"][name])
        assert torch.isfinite(torch.tensor(result["final_loss"][name]))
    assert set(result["ratios"]) == set(step_time.RATIOS)
    for key, (num, den, _) in step_time.RATIOS.items():  # the graph ratios need CUDA
        cpu_ratio = not step_time.CPU_DEFAULT_EXCLUDES.intersection((num, den))
        assert (result["ratios"][key] > 0) if cpu_ratio else result["ratios"][key] is None
    with pytest.raises(SystemExit, match="need --device cuda"):
        step_time.main([*argv, "--variants", "library_bivariate_svi_cuda_graph"])
    assert result["config"]["batch"] == 2 and result["config"]["hidden"] == 4
    for key in ("torch", "pyro", "device_name", "threads"):
        assert key in result["environment"]


def test_reference_variants_compute_the_library_loss(monkeypatch):
    """Same weights, deterministic 'draws': library, hand-written and per-step Pyro agree."""
    step_time = _load("step_time")
    baselines = _load("baselines")

    def draw(alpha):
        return 0.7 * alpha.log() - 0.3 * alpha

    # Every module that imported the sampler by name (the library's layout may change).
    for name, module in list(sys.modules.items()):
        if (name.startswith("pyro_betalstm") or module is baselines) and hasattr(
            module, "sample_log_gamma"
        ):
            monkeypatch.setattr(module, "sample_log_gamma", draw)
    B, T, D, H = 3, 4, 5, 6
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((B, T, D), 0.5, dtype=torch.float64), generator=g)
    y = torch.bernoulli(torch.full((B, T, D), 0.5, dtype=torch.float64), generator=g)

    torch.manual_seed(0)
    lib = step_time._library_model("bivariate", D, H).double()
    layer = lib.lstm.layers[0]
    refs = [
        baselines.HandwrittenBivariateELBO(D, H, D).double(),
        baselines.PyroPerStepSites(D, H, D).double(),
    ]
    for ref in refs:
        with torch.no_grad():
            ref.input_proj.weight.copy_(layer.input_proj.weight)
            ref.input_proj.bias.copy_(layer.input_proj.bias)
            ref.hidden_proj.weight.copy_(layer.hidden_proj.weight)
            ref.head.weight.copy_(lib.output.weight)
            ref.head.bias.copy_(lib.output.bias)
    loss = TraceMeanField_ELBO().differentiable_loss(lib.model, lib.guide, SequenceBatch(x, y))
    grad = torch.autograd.grad(loss, layer.hidden_proj.weight)[0]
    for ref in refs:
        ref_loss = ref.loss(x, y)
        torch.testing.assert_close(ref_loss, loss)
        torch.testing.assert_close(torch.autograd.grad(ref_loss, ref.hidden_proj.weight)[0], grad)

    # The sigmoid family: torch.nn.LSTM and the eager loop with the library's weights.
    torch.manual_seed(0)
    lib_sig = step_time._library_model("sigmoid", D, H).double()
    lstm = baselines.TorchLSTM(D, H, D).double()
    eager = baselines.EagerSigmoidLoop(D, H, D).double()
    sig_layer = lib_sig.lstm.layers[0]
    with torch.no_grad():
        lstm.lstm.weight_ih_l0.copy_(sig_layer.input_proj.weight)
        lstm.lstm.weight_hh_l0.copy_(sig_layer.hidden_proj.weight)
        lstm.lstm.bias_ih_l0.copy_(sig_layer.input_proj.bias)
        lstm.lstm.bias_hh_l0.zero_()
        eager.cell.weight.copy_(
            torch.cat([sig_layer.input_proj.weight, sig_layer.hidden_proj.weight], 1)
        )
        eager.cell.bias.copy_(sig_layer.input_proj.bias)
        for ref in (lstm, eager):
            ref.head.weight.copy_(lib_sig.output.weight)
            ref.head.bias.copy_(lib_sig.output.bias)
    sig_loss = TraceMeanField_ELBO().differentiable_loss(
        lib_sig.model, lib_sig.guide, SequenceBatch(x, y)
    )
    torch.testing.assert_close(lstm.loss(x, y), sig_loss)
    torch.testing.assert_close(eager.loss(x, y), sig_loss)


@pytest.mark.timeout(60)
def test_vectorised_particles_smoke(capsys):
    bench = _load("vectorised_particles")
    argv = "--particles 2 --batch 2 --steps 3 --keys 3 --hidden 4 --repeats 1".split()
    result = bench.main(bench.parse_args(argv))
    assert set(result["ms"][2]) == {"vectorised", "sequential"}
    assert result["sequential_over_vectorised"][2] > 0
    assert json.loads(capsys.readouterr().out)["settings"]["particles"] == [2]


@pytest.mark.timeout(60)
def test_profile_step_smoke(tmp_path):
    profile_step = _load("profile_step")
    out = tmp_path / "profile.json"
    argv = "--batch 2 --hidden 4 --steps-per-sequence 3 --steps 2 --warmup 1 --top 5".split()
    result = profile_step.main([*argv, "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    shares = [row["self_cpu_share"] for row in result["top"]]
    assert len(shares) == 5 and shares == sorted(shares, reverse=True)
    assert 0 < sum(shares) <= 1 + 1e-9
    assert result["config"]["profiled_steps"] == 2 and result["self_cpu_ms_per_step_total"] > 0
    # every time step of forward and backward runs several kernels (matmul, gates, cell)
    assert result["aten_ops_per_time_step"] > 10

    assert "kernel_launches_per_step" not in result  # device fields only on CUDA


@pytest.mark.gpu
@pytest.mark.timeout(180)
def test_step_time_times_the_graph_variants_on_cuda():
    step_time = _load("step_time")
    variants = "torch_lstm,library_bivariate_svi,library_bivariate_svi_cuda_graph"
    argv = (
        f"--device cuda --batch 2 --hidden 4 --steps 3 --repeats 2 --warmup 2 --variants {variants}"
    )
    result = step_time.main(argv.split())
    assert result["ratios"]["library_bivariate_svi_cuda_graph/torch_lstm"] > 0
    assert result["ratios"]["library_bivariate_svi_cuda_graph/library_bivariate_svi"] > 0


@pytest.mark.gpu
@pytest.mark.timeout(120)
def test_profile_step_counts_kernel_launches_on_cuda():
    profile_step = _load("profile_step")
    argv = "--device cuda --batch 2 --hidden 4 --steps-per-sequence 3 --steps 2 --warmup 1"
    result = profile_step.main([*argv.split(), "--threads", "1"])
    # every recurrent step launches kernels; the device did some work
    assert result["kernel_launches_per_step"] >= 3
    assert result["self_device_ms_per_step_total"] > 0 and result["top_device"]


@pytest.mark.timeout(120)
def test_gamma_path_options_smoke(tmp_path):
    options = _load("gamma_path_options")
    out = tmp_path / "gamma.json"
    result = options.main(
        ["--batch", "2", "--hidden", "4", "--steps", "3", "--repeats", "2", "--out", str(out)]
    )
    assert json.loads(out.read_text())["config"]["elements_per_step"] == 2 * 4 * 3
    assert result["exponential"]["speedup"] > 0
    assert set(result["gamma"]["ms"]) == {
        "torch_gamma_rsample",
        "marsaglia_tsang_float32",
        "marsaglia_tsang_float64",
    }
    assert "compile" not in result  # only with --compile
    floor = result["floor"]
    assert set(floor["ms"]) == {
        "gamma_draws_and_gradients",
        "gamma_kl_and_gradient",
        "eager_sigmoid_loop",
    }
    ms = floor["ms"]
    kernels = ms["gamma_draws_and_gradients"] + ms["gamma_kl_and_gradient"]
    assert floor["floor_over_eager_sigmoid_loop"] == pytest.approx(
        kernels / ms["eager_sigmoid_loop"]
    )
    assert floor["bivariate_over_eager_sigmoid_loop_at_least"] == pytest.approx(
        1.0 + floor["floor_over_eager_sigmoid_loop"]
    )


def test_marsaglia_tsang_candidate_draws_the_gamma_law():
    # The candidate the benchmark times must be a correct sampler, or its timing means nothing:
    # KS of 50k float64 draws of exp(log g) against scipy's Gamma, p > 1e-3 per shape.
    from scipy import stats

    options = _load("gamma_path_options")
    torch.manual_seed(7)
    for shape in (1.0, 1.7, 40.0):
        g = options.marsaglia_tsang_log_gamma(torch.full((50_000,), shape, dtype=torch.float64))
        assert stats.kstest(g.exp().numpy(), stats.gamma(shape).cdf).pvalue > 1e-3


def test_gpu_graphs_summary_reads_a_session_folder(tmp_path, capsys):
    summary = load_script(BENCHMARKS.parent / "docs" / "results" / "gpu_graphs_summary.py")
    step_time = {
        "environment": {"device_name": "NVIDIA H200", "git": {"commit": "abc"}},
        "ms": {"torch_lstm": 10.0, "library_bivariate_svi_cuda_graph": 30.0},
        "ratios": {"library_bivariate_svi_cuda_graph/torch_lstm": 3.0},
        "targets": {"library_bivariate_svi_cuda_graph/torch_lstm": {"target": 4.0, "met": True}},
    }
    (tmp_path / "step_time_cuda.json").write_text(json.dumps(step_time))
    for recurrence, seconds in (("eager", [30.0, 32.0, 34.0]), ("cuda_graph", [10.0, 8.0])):
        run = tmp_path / f"pmnist-pixel-bblstm5gp-{recurrence}"
        run.mkdir()
        record = {"recurrence": recurrence, "epoch_seconds": seconds,
                  "test": {"accuracy_mean_gates": 0.5}}  # fmt: skip
        (run / "results.json").write_text(json.dumps(record))
    (tmp_path / "pytest_gpu.log").write_text("...\n12 passed in 30.00s\n")
    assert "validation cost: missing" in summary.main([str(tmp_path)])
    validation = {"median_ms": {"library_bivariate_svi validation on": 40.0},
                  "off_over_on": {"library_bivariate_svi": 0.75}}  # fmt: skip
    (tmp_path / "validation_cost_cuda.json").write_text(json.dumps(validation))
    text = summary.main([str(tmp_path)])
    assert "off / on: library_bivariate_svi 0.750" in text
    assert "evaluation order: missing" in text
    order = {"datasets": {"jsb": {"best_seconds": {"file order, 64": 3.0, "shortest first, 32": 4.0},
                                  "speedup_now_over_before": 0.75}}}  # fmt: skip
    (tmp_path / "eval_order_jsb_cuda.json").write_text(json.dumps(order))
    text = summary.main([str(tmp_path)])
    assert "jsb: file order, 64 3.0 s, shortest first, 32 4.0 s; before / now 0.75x" in text
    assert "predictive fold: missing" in text
    fold = {"datasets": {"jsb": {"best_seconds": {"one draw a pass": 2.0, "folded": 0.5},
                                 "passes": {"one draw a pass": 40, "folded": 4},
                                 "speedup_folded_over_one_draw": 4.0}}}  # fmt: skip
    (tmp_path / "predictive_fold_jsb_cuda.json").write_text(json.dumps(fold))
    text = summary.main([str(tmp_path)])
    assert (
        "jsb: one draw a pass 2.00 s, folded 0.50 s (passes: one draw a pass 40, folded 4); "
        "folded 4.00x faster" in text
    )
    assert "| library_bivariate_svi_cuda_graph/torch_lstm | 3.00 | 4.0 | True |" in text
    # medians 32 s and 9 s per epoch: 60/9 over 60/32 epochs per minute
    assert f"cuda_graph / eager: {32 / 9:.2f}x" in text
    assert "12 passed" in text and "profiles" not in text.lower().split("###")[0]
    assert "- missing" in text  # no profile files in the folder
    with pytest.raises(SystemExit, match="usage"):
        summary.main([str(tmp_path / "absent")])


def test_compare_commits_flags_a_ratio_worse_beyond_the_base_spread():
    compare = _load("compare_commits")

    def run(a, b):
        return {"ratios": {"a": a, "b": b, "gpu_only": None}}

    runs = {
        "base": [run(1.0, 2.0), run(1.1, 2.0), run(1.02, 2.0)],
        "head": [run(1.15, 2.5), run(1.5, 2.5), run(1.2, 2.5)],
    }
    summary = compare.summarise(runs)
    # a: head median 1.2 <= base median 1.02 + the head's spread 0.35; b: 2.5 > 2.0 + 0.0
    assert summary["worse"] == ["b"]
    assert summary["median_ratios"]["base"]["a"] == pytest.approx(1.02)
    runs["head"][1] = run(1.16, 2.5)  # spread 0.05: a's 0.18 above the base now counts
    assert compare.summarise(runs)["worse"] == ["a", "b"]
    assert "gpu_only" not in summary["median_ratios"]["head"]


@pytest.mark.timeout(60)
def test_validation_cost_smoke(tmp_path):
    validation_cost = _load("validation_cost")
    out = tmp_path / "validation.json"
    threads = torch.get_num_threads()
    argv = "--batch 2 --hidden 4 --steps 3 --repeats 2 --warmup 1 --threads 1".split()
    result = validation_cost.main([*argv, "--out", str(out)])
    assert torch.get_num_threads() == threads
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    names = validation_cost.VARIANTS
    assert set(result["median_ms"]) == {f"{n} validation {s}" for n in names for s in ("on", "off")}
    for name in names:
        ratio = (
            result["median_ms"][f"{name} validation off"]
            / result["median_ms"][f"{name} validation on"]
        )
        assert result["off_over_on"][name] == pytest.approx(ratio)
    assert result["config"]["hidden"] == 4 and result["environment"]["device_name"]


@pytest.mark.timeout(120)
def test_eval_order_smoke(tmp_path):
    # shortest first pads less than file order and scores the same split to float32 round-off
    eval_order = _load("eval_order")
    out = tmp_path / "eval_order.json"
    result = eval_order.main(["--smoke", "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    smoke = result["datasets"]["smoke"]
    work = smoke["work"]
    before, now = "file order, 64", "shortest first, 32"
    assert work[now]["padded_rows"] < work["shortest first, 64"]["padded_rows"]
    assert work["shortest first, 64"]["padded_rows"] < work[before]["padded_rows"]
    frames = sum(x.shape[0] for x in eval_order.smoke_split(0).inputs)
    assert work[before]["frames"] == work[now]["frames"] == frames
    # relative 1e-6: the sums run in another order in float32 (about 1e-7 apart measured)
    assert smoke["nll_max_relative_difference"] < 1e-6
    assert all(len(t) == 1 and t[0] > 0 for t in smoke["seconds"].values())
    assert smoke["speedup_now_over_before"] > 0


@pytest.mark.timeout(120)
def test_predictive_fold_smoke(tmp_path):
    # folded draws run once per minibatch where the budget allows (S passes one at a time), and
    # both schemes estimate the same predictive NLL (other draws: Monte Carlo noise)
    predictive_fold = _load("predictive_fold")
    out = tmp_path / "predictive_fold.json"
    result = predictive_fold.main(
        ["--smoke", "--threads", "1", "--samples", "3", "--repeats", "1", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    smoke = result["datasets"]["smoke"]
    batches = smoke["minibatches"]
    assert smoke["passes"] == {"one draw a pass": 3 * batches, "folded": batches}
    nll = smoke["nll_predictive"]
    # about 63 nats per frame for the untrained tiny model; three draws' estimates of it,
    # measured 0.002 apart: 1% leaves room for other draws without hiding a wrong average
    assert nll["folded"] == pytest.approx(nll["one draw a pass"], rel=0.01)
    assert all(len(t) == 1 and t[0] > 0 for t in smoke["seconds"].values())
