"""Evaluation mode for a block of code, restoring the module's training mode afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@contextmanager
def evaluating(module: ModuleT) -> Iterator[ModuleT]:
    """Put ``module`` in evaluation mode (mean gates, no dropout) for the ``with`` block.

    On leaving, even by an exception, ``module.train(was_training)`` restores the mode it had
    on entry, for the module and all its submodules::

        with evaluating(model):
            run = model.run_network(batch)[-1]
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
