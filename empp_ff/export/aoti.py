"""Export a ``Potential`` as an AOTInductor package (``.pt2``): compiled kernels.

Route (each step is needed; see ``empp_ff/model/traceable.py`` for the e3nn part):

1. rebuild the potential without e3nn's TorchScript pieces;
2. trace energy, per-atom energies, forces (autograd) and virial with
   ``make_fx(tracing_mode="symbolic")`` (``torch.export`` cannot trace
   ``torch.autograd.grad`` itself);
3. ``torch.export.export`` the traced graph with dynamic numbers of atoms and
   edges (0 and up), then ``torch._inductor.aoti_compile_and_package``;
4. append ``extra/metadata.json`` (the TorchScript file's metadata plus what the
   package was compiled for, and the checksum) and write the file atomically.

The package's graph: ``(positions [N,3], atomic_numbers [N] int64, edge_index
[2,E] int64, shifts [E,3], n_local [] int64) -> (energy [], node_energy [N],
forces [N,3], virial [3,3])``; the virial is always computed (it costs ~1 %)
and :class:`~empp_ff.export.compiled.CompiledModel` returns it only when asked.
Kernels are single-threaded (``cpp.threads=1``): a package compiled on a
many-core machine must not start that many threads under MPI; matrix products
still follow ``torch.set_num_threads``. On x86-64 the default CPU target is
``x86-64-v3`` (AVX2), which runs on any AVX2 CPU and was faster than
``-march=native`` (AVX-512) on the project's CPUs.
"""

from __future__ import annotations

import io
import json
import platform
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from empp_ff._atomic import atomic_path
from empp_ff.export.checksum import archive_checksum, archive_root
from empp_ff.export.compiled import X86_64_V3_FLAGS, host_cpu_flags
from empp_ff.export.model_file import FORMAT_VERSION, METADATA_NAME

CPU_TARGETS = ("portable", "native")
_SUGGEST_TORCHSCRIPT = "export the TorchScript format instead (`-o model.pt`), which needs no compiler"


class CompileError(RuntimeError):
    """An AOTInductor package cannot be made here (no compiler, unsupported op, ...)."""


class ForceField(torch.nn.Module):
    """The traced computation: one structure, forces and virial, LAMMPS's ``n_local``."""

    def __init__(self, potential: torch.nn.Module):
        super().__init__()
        self.potential = potential

    def forward(self, positions, atomic_numbers, edge_index, shifts, n_local):
        num_atoms = positions.shape[0]
        batch = torch.zeros(num_atoms, dtype=torch.long, device=positions.device)
        energy_mask = torch.arange(num_atoms, device=positions.device) < n_local
        out = self.potential(positions, atomic_numbers, edge_index, shifts, batch, 1, True, True, False, energy_mask)
        return out["energy"][0], out["node_energy"], out["forces"], out["virial"][0]


def _example_inputs(species, dtype: torch.dtype, device: torch.device):
    """Fresh, contiguous tensors (a view would specialise the edge count) whose sizes
    differ from each other and from 1, 2, 3 (equal sizes would be merged)."""
    num_atoms, num_edges = 13, 57
    gen = torch.Generator().manual_seed(0)
    positions = 2.0 * torch.randn(num_atoms, 3, generator=gen, dtype=torch.float64)
    sender = torch.randint(0, num_atoms, (num_edges,), generator=gen)
    receiver = (sender + 1 + torch.randint(0, num_atoms - 1, (num_edges,), generator=gen)) % num_atoms
    numbers = torch.tensor(species)[torch.arange(num_atoms) % len(species)]
    inputs = (positions.to(dtype), numbers, torch.stack([sender, receiver]), torch.zeros(num_edges, 3, dtype=dtype),
              torch.tensor(num_atoms))
    return tuple(t.to(device).clone() for t in inputs)


def _cpu_record(cpu_target: str, device: str) -> Dict[str, Any]:
    if device != "cpu":
        return {"cpu_target": None, "cpu_flags": []}
    if cpu_target == "portable" and platform.machine() in ("x86_64", "AMD64"):
        return {"cpu_target": "x86-64-v3", "cpu_flags": list(X86_64_V3_FLAGS)}
    return {"cpu_target": "native", "cpu_flags": host_cpu_flags()}


def _inductor_configs(flat_metadata: Dict[str, str], compiled: Dict[str, Any]) -> Dict[str, Any]:
    configs: Dict[str, Any] = {"aot_inductor.metadata": flat_metadata, "cpp.threads": 1}
    if compiled["cpu_target"] == "x86-64-v3":
        configs.update({"cpp.march": "x86-64-v3", "cpp.simdlen": 256})
    return configs


def _flat_metadata(metadata: Dict[str, Any], compiled: Dict[str, Any]) -> Dict[str, str]:
    """What the LAMMPS plugin reads without a JSON parser (compiled into the package)."""
    return {
        "empp.format_version": str(metadata["format_version"]),
        "empp.r_max": repr(float(metadata["r_max"])),
        "empp.num_interactions": str(int(metadata["num_interactions"])),
        "empp.atomic_numbers": ",".join(str(z) for z in metadata["species"]),
        "empp.dtype": metadata["dtype"],
        "empp.device": compiled["device"],
        "empp.torch_version": compiled["torch"],
        "empp.machine": compiled["machine"],
        "empp.cpu_flags": " ".join(compiled["cpu_flags"]),
    }


def _preflight(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise CompileError("--device cuda needs a GPU visible to torch at export time; none is")
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as exc:
        raise CompileError(f"no working C++ compiler for AOTInductor ({exc}); install g++ (>= 9) or set CXX, "
                           f"or {_SUGGEST_TORCHSCRIPT}") from exc


def compile_package(potential: torch.nn.Module, dtype: str, flat_metadata: Dict[str, str], compiled: Dict[str, Any],
                    log: Callable[[str], None]) -> Tuple[bytes, Dict[str, float]]:
    """Trace, export and compile ``potential`` in ``dtype``; the package's bytes and the time per step."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from empp_ff.model.traceable import build_traceable_potential, tracing

    spec = dict(potential.backbone.spec_dict)
    spec["dtype"] = dtype
    device = torch.device(compiled["device"])
    traceable = build_traceable_potential(spec, potential.state_dict()).to(device)
    example = _example_inputs(spec["atomic_numbers"], next(traceable.parameters()).dtype, device)
    seconds = {}
    t0 = time.perf_counter()
    with tracing(spec):
        graph = make_fx(ForceField(traceable), tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)
    seconds["trace"] = time.perf_counter() - t0
    atoms = torch.export.Dim("num_atoms", min=0, max=1 << 24)
    edges = torch.export.Dim("num_edges", min=0, max=1 << 28)
    program = torch.export.export(graph, example, dynamic_shapes=({0: atoms}, {0: atoms}, {1: edges}, {0: edges}, None),
                                  strict=False)
    seconds["export"] = time.perf_counter() - t0 - seconds["trace"]
    log(f"traced and exported in {seconds['trace'] + seconds['export']:.0f} s; compiling C++ kernels "
        "(minutes on a small machine)")
    buffer = io.BytesIO()
    t1 = time.perf_counter()
    torch._inductor.aoti_compile_and_package(program, package_path=buffer,
                                             inductor_configs=_inductor_configs(flat_metadata, compiled))
    seconds["compile"] = time.perf_counter() - t1
    return buffer.getvalue(), seconds


def _with_metadata(package: bytes, metadata: Dict[str, Any]) -> bytes:
    """The package with ``extra/metadata.json`` (holding the package's checksum) appended."""
    metadata = dict(metadata, checksum=archive_checksum(io.BytesIO(package)))
    buffer = io.BytesIO(package)
    with zipfile.ZipFile(buffer, "a") as zf:
        root = archive_root(zf.namelist())
        zf.writestr(f"{root}extra/{METADATA_NAME}", json.dumps(metadata, indent=2))
    return buffer.getvalue()


def export_aoti(
    potential: torch.nn.Module,
    out_path: Union[str, Path],
    metadata: Dict[str, Any],
    *,
    device: Optional[str] = None,
    cpu_target: str = "portable",
    log: Callable[[str], None] = lambda s: None,
) -> Path:
    """Compile ``potential`` into an AOTInductor package at ``out_path`` (written atomically).

    ``metadata``: the TorchScript file's metadata (``build_metadata``); ``device``:
    ``"cpu"``/``"cuda"`` (default CUDA when available); ``cpu_target``: ``"portable"``
    (x86-64-v3 on x86-64) or ``"native"`` (this CPU). Raises :class:`CompileError`
    when the package cannot be made here.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if cpu_target not in CPU_TARGETS:
        raise ValueError(f"cpu_target must be one of {CPU_TARGETS}, got {cpu_target!r}")
    _preflight(device)
    compiled = {"device": device, "torch": torch.__version__,
                "machine": platform.machine(), **_cpu_record(cpu_target, device)}
    metadata = dict(metadata, format_version=FORMAT_VERSION, format="aotinductor", compiled=compiled)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing e3nn/mace repeats framework warnings by the dozen
            package, seconds = compile_package(potential, metadata["dtype"], _flat_metadata(metadata, compiled),
                                               compiled, log)
    except CompileError:
        raise
    except Exception as exc:  # Inductor/export raise many types; all mean "cannot compile this here"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompileError(f"AOTInductor could not compile the model: {type(exc).__name__}: {first[:500]}; "
                           f"{_SUGGEST_TORCHSCRIPT}") from exc
    compiled["compile_seconds"] = round(time.perf_counter() - t0, 1)  # metadata["compiled"] is this dict
    compiled["steps_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    with atomic_path(out_path) as tmp:
        Path(tmp).write_bytes(_with_metadata(package, metadata))
    return Path(out_path)
