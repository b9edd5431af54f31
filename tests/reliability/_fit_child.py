"""Child process of the kill -9 tests: trains a tiny model with :func:`fit`, optionally killing
itself with SIGKILL at a chosen point of a checkpoint write.

Usage: ``python _fit_child.py OUT_DIR NUM_EPOCHS RESUME KILL [N]`` (N training sequences,
default 6) where ``KILL`` is ``none`` or
``POINT:N`` (the N-th time POINT is reached): ``last_write`` (half of last.pt's bytes
written), ``last_replace`` (last.pt complete in its temporary file, not yet renamed),
``prev_replace`` (last.pt linked aside, not yet renamed to last.prev.pt), ``best_write``
(half of best.pt written), ``metrics_replace`` (metrics.json not yet renamed). Prints
``ready`` before training and ``saved K`` after each resume point K is complete.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from _tiny import make_config, make_data, make_model  # noqa: E402  (run as a script)

import pyro_betalstm.infer.train as train  # noqa: E402
from pyro_betalstm.infer import fit  # noqa: E402
from pyro_betalstm.infer.checkpoint import has_resume_point  # noqa: E402

counts: dict[str, int] = {}


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def reached(point: str, kill: str) -> bool:
    counts[point] = counts.get(point, 0) + 1
    return kill == f"{point}:{counts[point]}"


def install(kill: str) -> None:
    real_save, real_replace = torch.save, os.replace

    def save(obj, f, *args, **kwargs):
        target = os.readlink(f"/proc/self/fd/{f.fileno()}") if hasattr(f, "fileno") else ""
        name = Path(target).name
        for point, prefix in (("last_write", ".last.pt."), ("best_write", ".best.pt.")):
            if name.startswith(prefix) and reached(point, kill):
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
        return real_save(obj, f, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        points = {
            "last.pt": "last_replace",
            "last.prev.pt": "prev_replace",
            "metrics.json": "metrics_replace",
        }
        point = points.get(Path(dst).name)
        if point is not None and reached(point, kill):
            die()
        return real_replace(src, dst, *args, **kwargs)

    torch.save = save
    os.replace = replace


def main() -> None:
    out, num_epochs, resume, kill = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 6
    install(kill)
    real_save_point = train.save_resume_point

    def save_point(folder, state):
        path = real_save_point(folder, state)
        print(f"saved {state['epoch']}", flush=True)
        return path

    train.save_resume_point = save_point
    print("ready", flush=True)
    fit(
        make_model(),
        make_data(n),
        make_data(n),
        make_config(num_epochs=num_epochs),
        out_dir=out,
        resume=resume and has_resume_point(out),
    )
    print("done", flush=True)


if __name__ == "__main__":
    main()
