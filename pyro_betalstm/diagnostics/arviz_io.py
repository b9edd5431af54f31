"""Everything that calls ArviZ: gate draws to ``InferenceData``, netCDF, HDI and ESS.

This is the only module of the package that imports :mod:`arviz` (a move to ArviZ 1.x, whose
containers are ``xarray.DataTree``, touches this file only). Other diagnostics modules work on
plain NumPy arrays obtained through :func:`~pyro_betalstm.diagnostics.gate_arrays`.

Layout of the ``InferenceData`` built by :func:`~pyro_betalstm.diagnostics.to_inference_data`:

* ``posterior``: ``input_gate`` and ``forget_gate`` with dims
  ``(chain, draw, sequence, time, layer, unit)``, and both as ``gates`` with a trailing
  ``gate`` dim (coords ``["input", "forget"]``); for latent gate families also ``alpha`` (the
  guide's Gamma concentrations) and ``log_basis`` (the log of the sampled Gamma basis ``u``)
  with a trailing ``basis`` dim. Draws of the amortised guide are independent, so there is one
  chain (``chain = [0]``).
* ``prior``: the same gates and ``log_basis`` drawn from the model's prior (the recurrence run
  with prior-sampled bases), for latent families only. ``alpha`` is left out: in prior mode it
  is the guide network evaluated on prior-driven states, not a prior quantity.
* ``posterior_predictive``: ``targets``, draws of the observed targets given gate draws (for a
  next-step music model, the next frames), with the dims of ``observed_data.targets``.
* ``observed_data``: ``targets`` (dims ``(sequence, time, output)`` for per-step targets,
  ``(sequence,)`` for one label per sequence).
* ``constant_data``: ``mask`` ``(sequence, time)`` (1 at valid steps) and, when given,
  ``inputs`` ``(sequence, time, input)``.
* ``sample_stats``: the training history as one chain whose draws are the **epochs** (dims
  ``(chain, draw)``, ``draw`` and the coordinate ``epoch`` hold the epoch numbers): ``elbo``
  (``-train_loss`` per training sequence: the ELBO for latent gates with KL weight 1, else the
  objective that weight gives, the log-likelihood for weight 0 or deterministic gates),
  ``train_loss`` and the other numeric
  columns of ``metrics.json`` (``valid_nll_mean_gates``, ``lr``, ``kl_weight``...). SVI has no
  per-draw sampler statistics, so the group holds the optimisation trace, in the layout
  ``az.plot_trace(idata.sample_stats, var_names=["elbo"])`` draws. Files written before this
  layout have a single ``epoch`` dim; ``history_arrays`` reads both.

Every dim has coords: integers from 0 for ``sequence``, ``time`` (the step), ``layer``,
``unit`` and ``basis``, names for ``gate``. Padded steps (beyond a sequence's length) are NaN
in every per-step variable, so ArviZ's functions see them as missing: select valid steps with
``coords={"sequence": [s], "time": [...]}``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..io import atomic_write_path

with warnings.catch_warnings():
    # ArviZ 0.2x announces its 1.x refactor on import; this module is where a move happens
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

#: Variables of the ``posterior`` group, in order, as produced by ``sample_gates``.
POSTERIOR_VARS = ("input_gate", "forget_gate", "alpha", "log_basis")
#: Variables of the ``prior`` group.
PRIOR_VARS = ("input_gate", "forget_gate", "log_basis")
GATE_VARS = ("input_gate", "forget_gate")
DRAW_DIMS = ("chain", "draw", "sequence", "time", "layer", "unit")
#: The ``gates`` variable stacks ``GATE_VARS`` on a trailing ``gate`` dim with these coords.
GATE_COORDS = ("input", "forget")


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _masked(array: np.ndarray, mask: np.ndarray, lead: int) -> np.ndarray:
    """Float copy of ``array`` with NaN where ``mask`` (sequence, time) is False; the sequence
    and time dims of ``array`` follow ``lead`` leading dims."""
    out = np.array(array, dtype=np.result_type(array.dtype, np.float32), copy=True)
    shape = (1,) * lead + mask.shape + (1,) * (out.ndim - lead - 2)
    return np.where(mask.reshape(shape), out, np.nan)


def _draw_arrays(
    draws: Mapping, names: Sequence[str], mask: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Arrays ``(chain, draw, ...)`` with NaN at padded steps, and their dims after
    ``(chain, draw)``, in the form :func:`arviz.from_dict` takes."""
    arrays, dims = {}, {}
    for name in names:
        if name not in draws:
            continue
        value = _masked(_numpy(draws[name]), mask, lead=1)[None]  # add the chain dim
        var_dims = DRAW_DIMS + (("basis",) if value.ndim == len(DRAW_DIMS) + 1 else ())
        if value.ndim != len(var_dims):
            raise ValueError(
                f"{name!r} must have dims (draw, sequence, time, layer, unit[, basis]), got "
                f"shape {value.shape[1:]}"
            )
        arrays[name] = value
        dims[name] = list(var_dims[2:])
    if all(name in arrays for name in GATE_VARS):
        # both gates on one named dim: one az.summary/plot_pair call covers the pair
        arrays["gates"] = np.stack([arrays[name] for name in GATE_VARS], axis=-1)
        dims["gates"] = [*DRAW_DIMS[2:], "gate"]
    return arrays, dims


def _target_dims(shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> list[str]:
    """Dims of targets of ``shape`` (without chain/draw): per-step targets start with
    (sequence, time), one target per sequence with (sequence,)."""
    if len(shape) >= 2 and tuple(shape[:2]) == tuple(mask_shape):
        return [
            "sequence",
            "time",
            *(f"output_{j}" if j else "output" for j in range(len(shape) - 2)),
        ]
    return ["sequence", *(f"target_{j}" for j in range(len(shape) - 1))]


def _targets(values, mask: np.ndarray, lead: int) -> tuple[np.ndarray, list[str]]:
    """Targets (after ``lead`` draw dims) as an array, NaN at padded steps, and their dims."""
    y = _numpy(values)
    dims = _target_dims(y.shape[lead:], mask.shape)
    if dims[1:2] == ["time"]:
        y = _masked(y, mask, lead=lead)
    return y, dims


def _history_dataset(history: Sequence[Mapping]) -> xr.Dataset:
    """The per-epoch records as one chain of draws (the epochs), the layout of a trace."""
    epochs = np.array([int(r.get("epoch", i + 1)) for i, r in enumerate(history)])
    keys = list(dict.fromkeys(k for r in history for k in r if k != "epoch"))
    columns = {}
    for key in keys:
        values = [r.get(key) for r in history]
        if not all(v is None or isinstance(v, int | float) for v in values):
            continue  # only numeric columns
        columns[key] = np.array([np.nan if v is None else v for v in values], float)
    if "train_loss" in columns:
        columns = {"elbo": -columns["train_loss"], **columns}
    data_vars = {key: (("chain", "draw"), values[None]) for key, values in columns.items()}
    ds = xr.Dataset(data_vars, coords={"chain": [0], "draw": epochs, "epoch": ("draw", epochs)})
    if "elbo" in ds:
        ds["elbo"].attrs["description"] = (
            "-train_loss per training sequence: the ELBO for latent gates with KL weight 1, "
            "else the log-likelihood minus kl_weight x KL (the log-likelihood for weight 0 or "
            "deterministic gates)"
        )
    return ds


def to_inference_data(
    posterior: Mapping,
    prior: Mapping | None = None,
    targets=None,
    history: Sequence[Mapping] | None = None,
    inputs=None,
    attrs: Mapping | None = None,
    posterior_predictive: Mapping | None = None,
) -> az.InferenceData:
    """Build an ``InferenceData`` from gate draws (see the module docstring for its layout).

    :param posterior: a dict as returned by :func:`pyro_betalstm.infer.sample_gates`:
        ``input_gate``, ``forget_gate`` (draw, sequence, time, layer, unit), optional ``alpha``
        and ``log_basis`` with a trailing basis dim, and ``mask`` (sequence, time). Tensors or
        arrays.
    :param prior: the same for prior draws (:func:`~pyro_betalstm.diagnostics.prior_gate_draws`).
    :param targets: the batch targets (``observed_data``).
    :param history: per-epoch records as in ``metrics.json`` (``sample_stats``).
    :param inputs: the batch inputs ``(sequence, time, input)`` (``constant_data``).
    :param attrs: string or numeric attributes stored on every group (gate family, run...).
    :param posterior_predictive: ``{"targets": draws}`` with dims ``(draw, *targets.shape)``, as
        returned by :func:`pyro_betalstm.infer.sample_posterior_predictive`.
    """
    if "mask" not in posterior:
        raise ValueError("posterior draws need a 'mask' (sequence, time) of valid steps")
    mask = _numpy(posterior["mask"]).astype(bool)
    groups, dims = {}, {}
    groups["posterior"], post_dims = _draw_arrays(posterior, POSTERIOR_VARS, mask)
    dims.update(post_dims)
    if prior is not None:
        prior_mask = _numpy(prior.get("mask", mask)).astype(bool)
        if prior_mask.shape != mask.shape or (prior_mask != mask).any():
            raise ValueError("prior and posterior draws must be on the same batch (same mask)")
        groups["prior"], prior_dims = _draw_arrays(prior, PRIOR_VARS, mask)
        dims.update(prior_dims)
    groups["constant_data"] = {"mask": mask.astype(np.int8)}
    dims["mask"] = ["sequence", "time"]
    if inputs is not None:
        groups["constant_data"]["inputs"] = _masked(_numpy(inputs), mask, lead=0)
        dims["inputs"] = ["sequence", "time", "input"]
    if targets is not None:
        y, dims["targets"] = _targets(targets, mask, lead=0)
        groups["observed_data"] = {"targets": y}
    if posterior_predictive is not None:
        if "targets" not in posterior_predictive:
            raise ValueError("posterior_predictive needs 'targets' draws (draw, *targets.shape)")
        y, pp_dims = _targets(posterior_predictive["targets"], mask, lead=1)
        if targets is not None and pp_dims != dims["targets"]:
            raise ValueError(
                f"posterior predictive targets have dims (draw, {', '.join(pp_dims)}), the "
                f"observed ones ({', '.join(dims['targets'])}): expected the same after draw"
            )
        groups["posterior_predictive"] = {"targets": y[None]}  # add the chain dim
        dims["targets"] = pp_dims
    idata = az.from_dict(**groups, dims=dims, coords=_coords(mask.shape, groups))
    if history:
        # epoch-indexed, without (chain, draw): from_dict would add those, so add it as a Dataset
        idata.add_groups(sample_stats=_history_dataset(history))
    meta = {"created_by": "pyro_betalstm.diagnostics", "arviz_version": az.__version__}
    meta.update({k: v for k, v in (attrs or {}).items() if v is not None})
    for group in idata.groups():
        getattr(idata, group).attrs.update(meta)
    return idata


def _coords(mask_shape: tuple[int, int], groups: Mapping) -> dict[str, list]:
    """Coords of every named dim: integers from 0, and the gate names."""
    coords = {"sequence": list(range(mask_shape[0])), "time": list(range(mask_shape[1]))}
    gates = groups["posterior"].get("gates")
    if gates is not None:
        *_, layers, units, _ = gates.shape
        coords.update(layer=list(range(layers)), unit=list(range(units)), gate=list(GATE_COORDS))
    return coords


def to_netcdf(idata: az.InferenceData, path: str | Path) -> Path:
    """Write ``idata`` to a netCDF file (HDF5 via h5netcdf, compressed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_path(path, lambda tmp: idata.to_netcdf(str(tmp)))


def from_netcdf(path: str | Path) -> az.InferenceData:
    """Read an ``InferenceData`` written by :func:`to_netcdf` (loaded into memory).

    A missing file raises :class:`FileNotFoundError`, an unreadable one a ValueError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"netCDF file not found: {path}")
    try:
        idata = az.from_netcdf(str(path))
    # netCDF/HDF5 readers report damage with many error types
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{path}: not a readable netCDF InferenceData ({type(err).__name__}: {err}); "
            "expected a file written by to_netcdf; it may be truncated or corrupt"
        ) from err
    for name in idata.groups():
        setattr(idata, name, getattr(idata, name).load())
    return idata


def is_inference_data(data) -> bool:
    return isinstance(data, az.InferenceData)


def gate_arrays(data, group: str = "posterior") -> dict[str, np.ndarray]:
    """Plain arrays from an ``InferenceData`` group or a draw dict (``sample_gates`` output).

    Returns ``input_gate`` and ``forget_gate`` (and ``log_basis``/``alpha`` when present) with
    dims ``(sample, sequence, time, layer, unit[, basis])`` (chain and draw flattened into
    ``sample``), NaN at padded steps, and ``mask`` ``(sequence, time)`` as booleans.
    """
    if isinstance(data, az.InferenceData):
        if group not in data.groups():
            raise ValueError(f"the InferenceData has no {group!r} group; it has {data.groups()}")
        ds = getattr(data, group)
        out = {}
        for name in POSTERIOR_VARS:
            if name in ds:
                value = ds[name].values
                out[name] = value.reshape(-1, *value.shape[2:])
        if "constant_data" in data.groups() and "mask" in data.constant_data:
            out["mask"] = data.constant_data["mask"].values.astype(bool)
        else:
            out["mask"] = ~np.isnan(out["input_gate"]).all(axis=(0, 3, 4))
        return out
    if isinstance(data, Mapping):
        if "input_gate" in data:  # a plain draw dict holds posterior draws
            if group != "posterior":
                raise ValueError(
                    f"a draw dict holds posterior draws; for {group!r} draws pass "
                    f"{{'posterior': draws, {group!r}: draws}}"
                )
        elif group in data:  # {"posterior": draws, "prior": draws}
            data = data[group]
        else:
            raise ValueError(f"no {group!r} draws: expected 'input_gate' or a {group!r} key")
        first = _numpy(data["input_gate"])
        mask = (
            _numpy(data["mask"]).astype(bool)
            if "mask" in data
            else np.ones(first.shape[1:3], dtype=bool)
        )
        return {
            **{k: _masked(_numpy(data[k]), mask, lead=1) for k in POSTERIOR_VARS if k in data},
            "mask": mask,
        }
    raise TypeError(f"expected an InferenceData or a dict of gate draws, got {type(data).__name__}")


def history_arrays(data) -> dict[str, np.ndarray]:
    """The per-epoch training history (``sample_stats``) as 1-D arrays, with ``epoch``.

    Reads the trace layout (one chain, a draw per epoch) and the older one (an ``epoch`` dim).
    """
    if not isinstance(data, az.InferenceData) or "sample_stats" not in data.groups():
        return {}
    ds = data.sample_stats
    if "epoch" in ds.dims:  # files written before the trace layout
        return {"epoch": ds["epoch"].values, **{k: ds[k].values for k in ds.data_vars}}
    if "epoch" not in ds.coords or ds.sizes.get("chain") != 1:
        return {}
    columns = {k: ds[k].values.reshape(-1) for k in ds.data_vars if ds[k].dims == ("chain", "draw")}
    return {"epoch": ds["epoch"].values, **columns}


def hdi(values: np.ndarray, prob: float = 0.94) -> tuple[float, float]:
    """Highest-density interval of 1-D ``values`` (NaN ignored); ``(nan, nan)`` if empty."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size < 2:
        return (np.nan, np.nan)
    lower, upper = az.hdi(values, hdi_prob=prob)
    return float(lower), float(upper)


def ess(draws: np.ndarray) -> np.ndarray:
    """Bulk effective sample size over the leading ``(chain, draw)`` dims of ``draws``.

    Returns an array of the trailing shape; NaN where there are fewer than 4 draws or the draws
    are constant or not finite (ESS is undefined there).
    """
    draws = np.asarray(draws, dtype=float)
    trailing = draws.shape[2:]
    out = np.full(trailing, np.nan)
    if draws.shape[1] < 4:
        return out
    flat = draws.reshape(*draws.shape[:2], -1)
    ok = np.isfinite(flat).all(axis=(0, 1)) & (np.nanstd(flat, axis=(0, 1)) > 0)
    if ok.any():
        ds = xr.Dataset({"x": (("chain", "draw", "element"), flat[:, :, ok])})
        out.reshape(-1)[ok] = az.ess(ds, method="bulk")["x"].values
    return out
