"""Export a trained ``Potential`` to a model file: TorchScript (``.pt``) or an
AOTInductor package of compiled kernels (``.pt2``, see ``aoti.py``).

The model-file contract (the call, the attributes, ``metadata.json`` with its checksum,
the layer-wise halo entry points) is documented with the modules that implement it,
in ``wrappers.py``; the metadata is built here.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import platform
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import torch

from empp_ff._atomic import atomic_path
from empp_ff._dtypes import check_dtype_name, dtype_name
from empp_ff._versions import package_version
from empp_ff.export.checksum import archive_checksum
from empp_ff.export.model_file import (
    FORMAT_BY_SUFFIX,
    HALO_VERSION,
    METADATA_NAME,
    MODEL_FILE_KIND,
    TORCHSCRIPT_FORMAT_VERSION,
)
from empp_ff.export.wrappers import ExportedPotential, LayerwiseExportedPotential, halo_comm_dims


def _versions(backbone: str) -> Dict[str, Optional[str]]:
    """torch, the packages the backbone's networks are built from (its description's), ase, python."""
    from empp_ff.model.backbone import description

    return {"torch": torch.__version__, **{name: package_version(name) for name in description(backbone).packages},
            "ase": package_version("ase"), "python": platform.python_version()}


def _jsonable(obj: Any) -> Any:
    """Best-effort conversion of configs/metrics to JSON (tensors, paths, numpy)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def build_metadata(
    spec: Dict[str, Any],
    *,
    config: Optional[Dict[str, Any]] = None,
    val_metrics: Optional[Dict[str, Any]] = None,
    source_checkpoint: Optional[str] = None,
    used_ema: bool = False,
    epoch: Optional[int] = None,
    num_interactions: Optional[int] = None,
) -> Dict[str, Any]:
    """The model file's ``metadata.json``. ``num_interactions``: the backbone's message-passing
    steps (``Backbone.num_interactions``, which sets the full ghost shell); default the spec's."""
    from ase.data import chemical_symbols

    from empp_ff import __version__

    species = [int(z) for z in spec["atomic_numbers"]]
    r_max = float(spec["r_max"])
    num_interactions = int(spec["num_interactions"] if num_interactions is None else num_interactions)
    return {
        "kind": MODEL_FILE_KIND,
        "format_version": TORCHSCRIPT_FORMAT_VERSION,
        "format": "torchscript",
        "empp_ff_version": __version__,
        "backbone": str(spec.get("backbone", "mace")),
        "species": species,
        "elements": [chemical_symbols[z] for z in species],
        "r_max": r_max,
        "num_interactions": num_interactions,
        "ghost_cutoff": num_interactions * r_max,
        "dtype": spec["dtype"],
        "units": {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom"},
        "atomic_energies": {
            chemical_symbols[z]: float(e) for z, e in zip(species, spec["atomic_energies"])
        },
        "backbone_spec": _jsonable(spec),
        "versions": _versions(str(spec.get("backbone", "mace"))),
        "training_config": _jsonable(config or {}),
        "validation_metrics": _jsonable(val_metrics or {}),
        "source_checkpoint": source_checkpoint,
        "used_ema": bool(used_ema),
        "epoch": epoch,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def script_potential(potential: torch.nn.Module, layerwise: bool = True) -> torch.jit.ScriptModule:
    """TorchScript-compile a ``Potential`` in the one-structure wrapper (a deep copy
    is compiled; the argument is left untouched). ``layerwise=False`` leaves out
    the halo entry points, as in files written before they existed (for tests)."""
    from empp_ff.model._imports import import_e3nn_o3

    import_e3nn_o3()  # e3nn's import needs weights-only loading relaxed, only during the import
    from e3nn.util import jit as e3nn_jit

    spec = potential.backbone.spec_dict
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates TorchScript (e3nn's codegen modules jit.save/load
        # themselves on deepcopy); mace's blocks trigger annotation warnings.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
        potential = copy.deepcopy(potential).eval()
        for p in potential.parameters():
            p.requires_grad_(False)
        wrapper_cls = LayerwiseExportedPotential if layerwise else ExportedPotential
        wrapper = wrapper_cls(potential, spec["atomic_numbers"], spec["dtype"])
        # e3nn compiles the (decorated) submodules in place; then script the wrapper.
        wrapper = e3nn_jit.compile(wrapper)
        scripted = torch.jit.script(wrapper)
    return scripted


def _jit_save(scripted: torch.jit.ScriptModule, metadata: Dict[str, Any], target) -> None:
    extra = {METADATA_NAME: json.dumps(metadata, indent=2, sort_keys=False)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.jit.save(scripted, target, _extra_files=extra)


def _atomic_save(scripted: torch.jit.ScriptModule, metadata: Dict[str, Any], out_path: Path) -> Path:
    """Save with the checksum of the saved code and weights in ``metadata.json``: save once
    to memory to hash, then to the file (``torch.jit.save`` is deterministic; checked)."""
    first = io.BytesIO()
    _jit_save(scripted, metadata, first)
    metadata = dict(metadata, checksum=archive_checksum(io.BytesIO(first.getvalue())))
    with atomic_path(out_path) as tmp:
        _jit_save(scripted, metadata, tmp)
        if archive_checksum(tmp) != metadata["checksum"]:  # pragma: no cover - would be a torch change
            raise RuntimeError("torch.jit.save wrote different bytes twice; cannot record a checksum")
    return Path(out_path)


def resolve_format(out_path: Union[str, Path], format: Optional[str] = None) -> str:
    """The format of a model file to write: ``format`` if given, else by suffix
    (``.pt2``: aotinductor; anything else: torchscript). A package must end in ``.pt2``."""
    by_suffix = FORMAT_BY_SUFFIX.get(Path(out_path).suffix)
    if format is None:
        return by_suffix or "torchscript"
    if format not in FORMAT_BY_SUFFIX.values():
        raise ValueError(f"format must be 'torchscript' or 'aotinductor', got {format!r}")
    if format == "aotinductor" and by_suffix != "aotinductor":
        raise ValueError(f"an AOTInductor package must be a .pt2 file, got {out_path}")
    if format == "torchscript" and by_suffix == "aotinductor":
        raise ValueError(f"{out_path}: .pt2 is the AOTInductor package's suffix; write TorchScript to a .pt file")
    return format


def export_potential(
    potential: torch.nn.Module,
    out_path: Union[str, Path],
    *,
    metadata_extra: Optional[Dict[str, Any]] = None,
    format: Optional[str] = None,
    device: Optional[str] = None,
    cpu_target: str = "portable",
    log: Callable[[str], None] = lambda s: None,
    layerwise: bool = True,
) -> Path:
    """Export an in-memory ``Potential`` (its dtype is the file's dtype) as TorchScript or,
    for ``.pt2`` / ``format="aotinductor"``, as a compiled package (``device``,
    ``cpu_target``: see ``aoti.export_aoti``). TorchScript files carry the layer-wise
    (halo) entry points; ``layerwise=False`` leaves them out (for tests), and packages
    never have them (one compiled forward)."""
    format = resolve_format(out_path, format)
    spec = dict(potential.backbone.spec_dict)
    param = next(potential.parameters())
    spec["dtype"] = dtype_name(param.dtype)
    metadata = build_metadata(spec, num_interactions=potential.num_interactions, **(metadata_extra or {}))
    if format == "aotinductor":
        from empp_ff.export.aoti import export_aoti

        return export_aoti(potential, out_path, metadata, device=device, cpu_target=cpu_target, log=log)
    if layerwise:
        metadata["halo"] = {
            "version": HALO_VERSION,
            "comm_dims": halo_comm_dims(potential),
            "methods": ["halo_prepare", "halo_layer"],
            "ghost_cutoff": float(spec["r_max"]),
        }
    scripted = script_potential(potential, layerwise)
    return _atomic_save(scripted, metadata, Path(out_path))


def export_model(
    checkpoint_or_run_dir: Union[str, Path],
    out_path: Union[str, Path],
    dtype: Optional[str] = None,
    use_ema: bool = True,
    **export_options: Any,
) -> Path:
    """Export a checkpoint (or a run directory's best/last checkpoint) to ``out_path``.

    ``dtype`` ("float32"/"float64") overrides the training dtype; ``use_ema``
    takes the EMA weights when the checkpoint has them; ``export_options``
    (``format``, ``device``, ``cpu_target``, ``log``) go to :func:`export_potential`.
    The file is written atomically (temp file + ``os.replace``). Returns the output path.
    """
    from empp_ff.train.checkpoint import build_potential, has_ema_weights, load_checkpoint

    if dtype is not None:
        check_dtype_name(dtype)
    resolve_format(out_path, export_options.get("format"))  # a bad name fails before any work
    state = load_checkpoint(checkpoint_or_run_dir)
    used_ema = bool(use_ema and has_ema_weights(state))
    potential = build_potential(state, use_ema=use_ema, dtype=dtype)
    return export_potential(
        potential,
        out_path,
        metadata_extra=dict(
            config=state.get("config"),
            val_metrics=state.get("val_metrics"),
            source_checkpoint=str(Path(state["path"]).resolve()),
            used_ema=used_ema,
            epoch=state.get("epoch"),
        ),
        **export_options,
    )
