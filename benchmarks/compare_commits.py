"""Did a change make any ``step_time.py`` ratio worse? Time two commits in alternating processes.

    python benchmarks/compare_commits.py --base 33c3917 --rounds 2 --threads 1 \\
        --out docs/results/step_time_cpu_ab.json

The base commit is checked out in a temporary git worktree; each round runs ``step_time.py``
once for the base and once for the working tree (the order alternates between rounds), each in
its own process with that checkout's package first on the path. On a shared machine the
conditions drift between runs minutes apart; alternating puts the same drift on both sides.
The JSON keeps every run's milliseconds and ratios and, per side, the median of each ratio over
the rounds; ``worse`` lists the ratios whose working-tree median exceeds the base's by more than
the run-to-run spread (max minus min over the rounds, the larger of the two sides'): a
difference the repeated runs of one commit also show is not counted as a change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import emit  # noqa: E402

from pyro_betalstm.provenance import git_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rev_parse(rev: str) -> str:
    """The full commit hash of ``rev`` in this checkout."""
    out = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout.strip()


def run_step_time(checkout: Path, step_args: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, str(checkout / "benchmarks" / "step_time.py"), *step_args]
    subprocess.run([*cmd, "--out", str(out)], cwd=checkout, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return json.loads(out.read_text())


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per side, the median over rounds of each ratio, and which got worse beyond the spread."""
    medians, spreads = {}, {}
    for side, results in runs.items():
        keys = [k for k, v in results[0]["ratios"].items() if v is not None]
        values = {k: [r["ratios"][k] for r in results] for k in keys}
        medians[side] = {k: statistics.median(v) for k, v in values.items()}
        spreads[side] = {k: max(v) - min(v) for k, v in values.items()}
    worse = sorted(
        k
        for k, base in medians["base"].items()
        if k in medians["head"]
        and medians["head"][k] > base + max(spreads["base"][k], spreads["head"][k])
    )
    return {"median_ratios": medians, "spread_ratios": spreads, "worse": worse}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the commit to compare the working tree with")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    base, head = rev_parse(args.base), rev_parse("HEAD")
    # the head side runs the working tree: whether it held uncommitted code, read before it ran
    head_dirty = git_state(ROOT)["package_dirty"]
    step_args = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    runs: dict[str, list[dict]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), base],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            for r in range(args.rounds):
                order = [("base", worktree), ("head", ROOT)]
                for side, checkout in order if r % 2 == 0 else order[::-1]:
                    out = Path(tmp) / f"{side}_{r}.json"
                    runs[side].append(run_step_time(checkout, step_args, out))
                    print(f"round {r + 1}: {side} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
    result = {
        "config": {
            **vars(args),
            "out": None,
            "base_commit": base,
            "head_commit": head,
            "head_package_dirty": head_dirty,
        },
        **summarise(runs),
        "runs": {
            side: [
                {"ms": r["ms"], "ratios": r["ratios"], "environment": r["environment"]} for r in rs
            ]
            for side, rs in runs.items()
        },  # fmt: skip
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
