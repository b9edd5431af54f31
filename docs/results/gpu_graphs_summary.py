"""Summarise a ``run_gpu_graphs.sh`` output folder as Markdown (printed).

    python docs/results/gpu_graphs_summary.py OUT

Reads the step-time JSON (milliseconds per step and the ratios with their targets), the two
profiles (kernel launches and device time per step), the pytest log's last line and the two
MNIST runs' ``results.json`` (epochs per minute from their epoch times: training plus
validation). Parts that did not finish are reported as missing.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def step_time_lines(out: Path) -> list[str]:
    files = sorted(out.glob("step_time_*.json"))
    lines: list[str] = []
    for path in files:
        result = _load(path)
        if result is None:
            lines.append(f"{path.name}: unreadable")
            continue
        env = result["environment"]
        lines += [
            f"### Step time, {path.name} ({env['device_name']}, commit "
            f"{(env['git'] or {}).get('commit')})",
            "",
            "| variant | ms per step |",
            "|---|---|",
        ]
        lines += [f"| `{name}` | {ms:.2f} |" for name, ms in result["ms"].items()]
        lines += ["", "| ratio | value | target | met |", "|---|---|---|---|"]
        for key, value in result["ratios"].items():
            if value is None:
                continue  # a variant this run did not time
            target = result["targets"].get(key, {})
            met = target.get("met", "")
            lines.append(f"| {key} | {value:.2f} | {target.get('target', '')} | {met} |")
        lines.append("")
    return lines or ["step time: missing"]


def profile_lines(out: Path) -> list[str]:
    lines = ["", "### Profiles (one step, B=64, H=256, T=100)", ""]
    found = False
    for path in sorted(out.glob("profile_*.json")):
        r = _load(path)
        if r is None:
            continue
        found = True
        launches = r.get("kernel_launches_per_step", "-")
        graphs = r.get("graph_launches_per_step", "-")
        device_ms = r.get("self_device_ms_per_step_total")
        device = "-" if device_ms is None else f"{device_ms:.1f}"
        lines.append(
            f"- `{r['variant']}`: {launches} kernel launches outside graphs and {graphs} graph "
            f"launches per step, {device} ms device time, "
            f"{r['self_cpu_ms_per_step_total']:.1f} ms self CPU"
        )
    return lines if found else lines + ["- missing"]


def mnist_lines(out: Path) -> list[str]:
    lines = [
        "",
        "### Permuted pixel MNIST, bBLSTM(5G+p), fixed budget",
        "",
        "| recurrence | epochs | s per epoch (median) | epochs per minute | test accuracy |",
        "|---|---|---|---|---|",
    ]
    rates = {}
    for path in sorted(out.glob("pmnist-pixel-*/results.json")):
        r = _load(path)
        if r is None:
            continue
        seconds = statistics.median(r["epoch_seconds"])
        rates[r.get("recurrence", "eager")] = 60.0 / seconds
        accuracy = r.get("test", {}).get("accuracy_mean_gates")
        shown = "-" if accuracy is None else f"{accuracy:.4f}"
        lines.append(
            f"| {r.get('recurrence', 'eager')} | {len(r['epoch_seconds'])} | {seconds:.1f} | "
            f"{60.0 / seconds:.2f} | {shown} |"
        )
    if len(rates) == 2 and "eager" in rates:
        other = next(k for k in rates if k != "eager")
        lines += ["", f"Epochs per minute, {other} / eager: {rates[other] / rates['eager']:.2f}x"]
    elif not rates:
        lines.append("| missing | | | | |")
    return lines


def compile_lines(out: Path) -> list[str]:
    r = _load(out / "compile_candidates_cuda.json")
    if r is None:
        return ["", "torch.compile candidate: missing"]
    c = r["compile"]
    shown = ", ".join(f"{name} {ms:.1f} ms" for name, ms in c["ms"].items())
    return [
        "",
        "### torch.compile candidate (one bivariate layer, forward and backward)",
        "",
        f"{shown}; first calls (compilation) {c['first_call_s_by_mode']} s",
    ]


def validation_lines(out: Path) -> list[str]:
    lines = []
    for path in sorted(out.glob("validation_cost_*.json")):
        r = _load(path)
        if r is None:
            continue
        shown = ", ".join(f"{name} {ms:.1f} ms" for name, ms in r["median_ms"].items())
        ratios = ", ".join(f"{name} {v:.3f}" for name, v in r["off_over_on"].items())
        lines += ["", f"### Pyro validation on/off ({path.name})", "", shown, f"off / on: {ratios}"]
    return lines or ["", "validation cost: missing"]


def _per_dataset_lines(out: Path, pattern: str, title: str, line, missing: str) -> list[str]:
    """A section per JSON file matching ``pattern`` with ``line(name, d)`` per data set."""
    lines = []
    for path in sorted(out.glob(pattern)):
        r = _load(path)
        if r is None:
            continue
        lines += ["", f"### {title} ({path.name})", ""]
        lines += [line(name, d) for name, d in r["datasets"].items()]
    return lines or ["", f"{missing}: missing"]


def eval_order_lines(out: Path) -> list[str]:
    def line(name: str, d: dict) -> str:
        shown = ", ".join(f"{scheme} {s:.1f} s" for scheme, s in d["best_seconds"].items())
        return f"{name}: {shown}; before / now {d['speedup_now_over_before']:.2f}x"

    return _per_dataset_lines(
        out, "eval_order_*.json", "Evaluation order", line, "evaluation order"
    )


def predictive_fold_lines(out: Path) -> list[str]:
    def line(name: str, d: dict) -> str:
        shown = ", ".join(f"{scheme} {s:.2f} s" for scheme, s in d["best_seconds"].items())
        passes = ", ".join(f"{scheme} {n}" for scheme, n in d["passes"].items())
        speedup = d["speedup_folded_over_one_draw"]
        return f"{name}: {shown} (passes: {passes}); folded {speedup:.2f}x faster"

    return _per_dataset_lines(
        out,
        "predictive_fold_*.json",
        "Posterior-predictive draws folded",
        line,
        "predictive fold",
    )


def tests_line(out: Path) -> list[str]:
    try:
        last = (out / "pytest_gpu.log").read_text().strip().splitlines()[-1]
    except (OSError, IndexError):
        last = "missing"
    return ["", f"GPU tests: {last}"]


def main(argv: list[str]) -> str:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        raise SystemExit("usage: gpu_graphs_summary.py OUT (a run_gpu_graphs.sh output folder)")
    out = Path(argv[0])
    parts = step_time_lines(out) + profile_lines(out) + mnist_lines(out) + compile_lines(out)
    parts += validation_lines(out) + eval_order_lines(out) + predictive_fold_lines(out)
    text = "\n".join(parts + tests_line(out))
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
