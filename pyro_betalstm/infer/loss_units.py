"""The units of a loss: the whole data set (``svi.step``) or one sequence (:func:`fit`).

The Pyro model's sequence plate has the data set's size and subsamples the minibatch, so
``SVI.step(batch)``, ``elbo.loss(model, guide, batch)`` and ``differentiable_loss`` all return an
estimate of the negative ELBO of **every training sequence together**: the minibatch's terms
scaled by ``dataset_size / batch_size``. :func:`~pyro_betalstm.infer.fit` reports the same
estimate divided by ``dataset_size``: the negative ELBO **per sequence** (``train_loss`` in its
history and ``metrics.csv``), which does not grow with the data set.
"""

from __future__ import annotations

from ..batch import SequenceBatch


def loss_per_sequence(loss: float, batch: SequenceBatch | int) -> float:
    """``loss`` of a Pyro ELBO (``svi.step(batch)``'s value) per sequence, the unit of
    :func:`~pyro_betalstm.infer.fit`'s ``train_loss``.

    ``batch``: the minibatch the loss was computed on (its ``dataset_size``, or its
    ``batch_size`` when it has none: the plate's size), or that size as an integer.
    """
    if isinstance(batch, SequenceBatch):
        size = batch.dataset_size or batch.batch_size
    else:
        size = batch
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"the data set size must be a positive integer, got {size!r}")
    return float(loss) / size
