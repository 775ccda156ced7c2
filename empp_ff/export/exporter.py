"""Export a trained ``Potential`` to a model file: TorchScript (``.pt``) or an
AOTInductor package of compiled kernels (``.pt2``, see ``aoti.py``).

The model-file contract (format version 1 for TorchScript, 2 for packages; the
call below is the same for both in Python), relied on by ``EMPPCalculator``
and the LAMMPS pair style::

    forward(positions: Tensor[N, 3], atomic_numbers: Tensor[N] int64,
            edge_index: Tensor[2, E] int64, shifts: Tensor[E, 3],
            n_local: int, compute_virial: bool) -> Dict[str, Tensor]

* ``edge_index[0]`` is the sender, ``edge_index[1]`` the receiver; the edge
  vector is ``pos[receiver] - pos[sender] + shifts`` (Cartesian, Å).
* ``energy`` (0-d, eV) sums the per-atom energies of atoms ``0..n_local-1``
  (LAMMPS passes local atoms first, then ghosts; ASE passes ``n_local = N``);
  ``node_energy`` [N]; ``forces`` [N, 3] = −∂energy/∂positions for every atom,
  ghosts included; ``virial`` [3, 3] (W = −∂E/∂ε, stress = −W/V) only when
  ``compute_virial``.
* Positions/shifts of any float dtype are cast to the model dtype; outputs are
  in the model dtype. An atomic number outside the model's species raises.
* Attributes readable from C++ with ``module.attr(name)``: ``r_max`` (float),
  ``num_interactions`` (int), ``atomic_numbers`` (List[int]), ``model_dtype``
  ("float32"/"float64"), ``format_version`` (int).
* ``metadata.json`` is stored as an extra file; its ``checksum`` (SHA-256 of
  everything else in the archive, ``checksum.py``) is verified by every reader.

Layer-wise entry points (``halo_version`` 1): every export writes them; files
exported before they existed have none, and callers run those through
``forward`` only. They let an MD engine evaluate the model one interaction at a time on
its own atoms, exchanging node features of ghost atoms between layers, so a
domain needs a ghost shell of one ``r_max`` whatever ``num_interactions`` is
(LAMMPS ``pair_style empp halo yes``)::

    halo_prepare(positions[N, 3], atomic_numbers[N], edge_index[2, E], shifts[E, 3],
                 n_local: int) -> ctx: List[Tensor]
    halo_layer(t: int, ctx, node_feats: Optional[Tensor[N, d_t]], n_local: int)
        -> (node_feats_out[n_local, d_{t+1}], node_energy_t[n_local])

* Nodes ``0..n_local-1`` are the caller's own atoms, the rest ghosts; every edge's
  receiver must be one of the own atoms (each own atom needs all its edges).
* ``halo_prepare`` validates and computes the per-edge geometry once; ``ctx`` is
  opaque and differentiable with respect to the ``positions`` passed in.
* ``halo_layer(t, ...)``: ``node_feats`` is ``None`` for t = 0 and otherwise
  layer t-1's output for *every* node, the ghost rows copied from the atoms'
  owners. Summed over t, ``node_energy_t`` is ``forward``'s ``node_energy``.
* Forces are autograd of the caller's: going down the layers, the gradient of
  ``(node_energy_t, node_feats_out)`` with respect to ``(positions, node_feats)``,
  whose ghost rows are summed into their owners before the layer below. With zero
  shifts (ghosts as explicit image atoms) the virial is ``sum x (x) f`` over own and
  ghost atoms. ``empp_ff/testing/halo.py`` is a reference driver on fake domains.
* Attributes: ``halo_version`` (int) and ``halo_comm_dims`` (List[int], length
  ``num_interactions - 1``: entry k = d_{k+1}, the numbers per atom exchanged
  before layer k+1). ``metadata.json`` repeats them under ``"halo"``.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import platform
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from empp_ff._atomic import atomic_path
from empp_ff._dtypes import check_dtype_name, dtype_name, torch_dtype
from empp_ff._elements import z_table
from empp_ff._versions import package_version
from empp_ff.export.checksum import archive_checksum
from empp_ff.export.model_file import (
    FORMAT_BY_SUFFIX,
    HALO_VERSION,
    METADATA_NAME,
    MODEL_FILE_KIND,
    TORCHSCRIPT_FORMAT_VERSION,
)


class ExportedPotential(torch.nn.Module):
    """One-structure TorchScript wrapper around ``empp_ff.model.Potential``."""

    def __init__(self, potential: torch.nn.Module, atomic_numbers: List[int], model_dtype: str):
        super().__init__()
        self.potential = potential
        self.r_max = float(potential.r_max)
        self.num_interactions = int(potential.num_interactions)
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        self.model_dtype = str(model_dtype)
        self.format_version = int(TORCHSCRIPT_FORMAT_VERSION)
        self.register_buffer("known_species", z_table(self.atomic_numbers, True, False, torch.bool))
        # A dtype carrier: ``.dtype`` of this buffer is the model dtype in TorchScript.
        self.register_buffer("dtype_ref", torch.zeros(0, dtype=torch_dtype(model_dtype)))

    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        n_local: int,
        compute_virial: bool,
    ) -> Dict[str, torch.Tensor]:
        num_atoms = positions.shape[0]
        self._check_inputs(positions, atomic_numbers, n_local)
        dtype = self.dtype_ref.dtype
        positions = positions.to(dtype)
        shifts = shifts.to(dtype)
        batch = torch.zeros(num_atoms, dtype=torch.long, device=positions.device)
        energy_mask: Optional[torch.Tensor] = None
        if n_local < num_atoms:
            energy_mask = torch.arange(num_atoms, device=positions.device) < n_local
        out = self.potential(
            positions,
            atomic_numbers,
            edge_index,
            shifts,
            batch,
            1,
            True,
            compute_virial,
            False,
            energy_mask,
        )
        result: Dict[str, torch.Tensor] = {
            "energy": out["energy"][0],
            "node_energy": out["node_energy"],
            "forces": out["forces"],
        }
        if compute_virial:
            result["virial"] = out["virial"][0]
        return result

    def _check_inputs(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, n_local: int) -> None:
        num_atoms = positions.shape[0]
        if atomic_numbers.shape[0] != num_atoms:
            raise ValueError("positions and atomic_numbers have different lengths")
        if n_local < 0 or n_local > num_atoms:
            raise ValueError("n_local must lie in [0, number of atoms]")
        if num_atoms > 0:
            z_min = int(atomic_numbers.min())
            z_max = int(atomic_numbers.max())
            if z_min < 0 or z_max >= self.known_species.shape[0]:
                raise ValueError("atomic number outside 0..118")
            if not bool(self.known_species[atomic_numbers].all()):
                raise ValueError(
                    "atomic number not in the model's species; see the atomic_numbers attribute"
                )


class LayerwiseExportedPotential(ExportedPotential):
    """``ExportedPotential`` plus the layer-wise entry points (module docstring)."""

    def __init__(self, potential: torch.nn.Module, atomic_numbers: List[int], model_dtype: str):
        super().__init__(potential, atomic_numbers, model_dtype)
        self.halo_version = int(HALO_VERSION)
        self.halo_comm_dims = halo_comm_dims(potential)

    @torch.jit.export
    def halo_prepare(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        n_local: int,
    ) -> List[torch.Tensor]:
        self._check_inputs(positions, atomic_numbers, n_local)
        if edge_index.shape[1] > 0 and int(edge_index[1].max()) >= n_local:
            raise ValueError("halo_prepare: every edge's receiver (edge_index[1]) must be one of the n_local atoms")
        dtype = self.dtype_ref.dtype
        node_attrs, edge_attrs, edge_feats, cutoff = self.potential.backbone.geometry(
            positions.to(dtype), atomic_numbers, edge_index, shifts.to(dtype)
        )
        ctx = [edge_index, node_attrs, edge_attrs, edge_feats]
        if cutoff is not None:
            ctx.append(cutoff)
        return ctx

    @torch.jit.export
    def halo_layer(
        self, t: int, ctx: List[torch.Tensor], node_feats: Optional[torch.Tensor], n_local: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if t < 0 or t >= self.num_interactions:
            raise ValueError("halo_layer: t must lie in [0, num_interactions)")
        if (t == 0) != (node_feats is None):
            raise ValueError("halo_layer: node_feats must be None for t = 0 and given for t > 0")
        cutoff: Optional[torch.Tensor] = None
        if len(ctx) > 4:
            cutoff = ctx[4]
        if node_feats is not None:
            if node_feats.shape[0] != ctx[1].shape[0]:
                raise ValueError("halo_layer: node_feats needs one row per node (own atoms, then ghosts)")
            node_feats = node_feats.to(self.dtype_ref.dtype)
        return self.potential.backbone.layer(t, ctx[1], node_feats, ctx[2], ctx[3], ctx[0], cutoff, n_local)


def halo_comm_dims(potential: torch.nn.Module) -> List[int]:
    """Numbers per atom that a halo exchange carries before layers 1..L-1."""
    return potential.backbone.layer_input_dims()[1:]


def _versions() -> Dict[str, Optional[str]]:
    return {
        "torch": torch.__version__,
        "e3nn": package_version("e3nn"),
        "mace-torch": package_version("mace-torch"),
        "ase": package_version("ase"),
        "python": platform.python_version(),
    }


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
) -> Dict[str, Any]:
    from ase.data import chemical_symbols

    from empp_ff import __version__

    species = [int(z) for z in spec["atomic_numbers"]]
    r_max = float(spec["r_max"])
    num_interactions = int(spec["num_interactions"])
    return {
        "kind": MODEL_FILE_KIND,
        "format_version": TORCHSCRIPT_FORMAT_VERSION,
        "format": "torchscript",
        "empp_ff_version": __version__,
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
        "versions": _versions(),
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
    metadata = build_metadata(spec, **(metadata_extra or {}))
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
    from empp_ff.train.checkpoint import build_potential, load_checkpoint

    if dtype is not None:
        check_dtype_name(dtype)
    resolve_format(out_path, export_options.get("format"))  # a bad name fails before any work
    state = load_checkpoint(checkpoint_or_run_dir)
    used_ema = bool(use_ema and state.get("ema_potential_state") is not None)
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
