"""The package's layering, checked at run time (``lint-imports`` checks it statically in CI)."""

from __future__ import annotations

import subprocess
import sys


def _modules_after_import(module: str) -> set[str]:
    """Top-level and package modules loaded by a fresh interpreter after ``import module``."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def test_data_imports_neither_pyro_nor_the_model_stack():
    loaded = _modules_after_import("pyro_betalstm.data")
    assert "pyro" not in loaded
    assert not {m for m in loaded if m.startswith(("pyro_betalstm.models", "pyro_betalstm.nn"))}


def test_batch_module_is_a_leaf():
    loaded = _modules_after_import("pyro_betalstm.batch")
    package = {m for m in loaded if m.startswith("pyro_betalstm")}
    assert package == {"pyro_betalstm", "pyro_betalstm.batch", "pyro_betalstm.checks"}


def test_sequence_batch_keeps_its_models_name():
    from pyro_betalstm import batch, models

    assert models.SequenceBatch is batch.SequenceBatch
