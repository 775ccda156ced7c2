"""Running an AOTInductor model package (``.pt2``): torch only.

A package holds kernels compiled ahead of time for one device, one CPU
instruction set and one torch. Loading it elsewhere fails in unhelpful ways
(``dlopen`` errors, or a SIGILL crash at the first kernel on a CPU without the
instructions it was compiled for), so :func:`compatibility_problems` compares
what the package records (``metadata["compiled"]``) with this machine first.

The compiled graph takes tensors only and does not check them: wrong dtypes or
strides are reinterpreted silently. :class:`CompiledModel` therefore checks
and converts its inputs and gives the package the call signature and outputs
of the TorchScript model file.

A package's shared library is native code: it runs when the package is loaded (its
constructors at ``dlopen``), before any check of ours could see what it does. Only run
packages you trust (README, "Trusting model files"). What this module can do, it does:
the record names were checked before (no ``..`` or absolute paths: ``archive.py``), the
loader extracts into a private folder that is removed when the model is released or its
loading fails, and it loads the bytes the reader checked, not the file again.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from empp_ff._dtypes import torch_dtype
from empp_ff._elements import z_table
from empp_ff.export.errors import ModelFileError
from empp_ff.export.input_checks import check_model_inputs

#: CPU flags (/proc/cpuinfo names) of the ``x86-64-v3`` level that portable x86-64 packages target.
X86_64_V3_FLAGS = ("abm", "avx", "avx2", "bmi1", "bmi2", "cx16", "f16c", "fma", "movbe", "popcnt",
                   "sse4_1", "sse4_2", "ssse3", "xsave")
# Instruction-set extensions a compiler may use with -march=native (x86 /proc/cpuinfo names);
# everything else there (virtualisation, power management, bugs) says nothing about code.
_X86_ISA_PREFIXES = ("abm", "adx", "aes", "amx", "avx", "bmi", "clflushopt", "clwb", "cx16", "f16c", "fma",
                     "gfni", "lzcnt", "movbe", "movdir", "pclmul", "popcnt", "prefetchw", "rdrand", "rdseed",
                     "sha", "sse", "ssse", "tbm", "vaes", "vpclmul", "xop", "xsave")


def host_cpu_flags() -> List[str]:
    """Instruction-set flags of this CPU from /proc/cpuinfo (empty when unavailable)."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / aarch64
            flags = value.split()
            if key.strip() == "flags":
                flags = [f for f in flags if f.startswith(_X86_ISA_PREFIXES)]
            return sorted(set(flags))
    return []


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def compatibility_problems(metadata: Dict[str, Any], device: Union[str, torch.device]) -> List[str]:
    """Why the package of ``metadata`` cannot run here on ``device`` (empty: it can)."""
    compiled = metadata.get("compiled", {})
    problems = []
    want = torch.device(device).type
    built_for = compiled.get("device", "cpu")
    if want != built_for:
        problems.append(f"it was compiled for {built_for}, not {want} (a package runs only on the device "
                        f"it was compiled for; export on a {want} machine with --device {want})")
    elif built_for == "cuda" and not torch.cuda.is_available():
        problems.append("it was compiled for cuda, but CUDA is not available to this torch")
    machine = platform.machine()
    if compiled.get("machine", machine) != machine:
        problems.append(f"it was compiled for {compiled['machine']} CPUs, this machine is {machine}")
    else:
        host = host_cpu_flags()
        missing = sorted(set(compiled.get("cpu_flags", ())) - set(host)) if host else []
        if missing:
            problems.append(f"it was compiled for CPU instructions this CPU lacks: {' '.join(missing)} "
                            f"(cpu target {compiled.get('cpu_target')}; export with --cpu-target portable, "
                            "or on this machine)")
    built_torch = compiled.get("torch")
    if built_torch and _major_minor(built_torch) != _major_minor(torch.__version__):
        problems.append(f"it was compiled with torch {built_torch}, this is torch {torch.__version__} "
                        "(compiled kernels need the torch they were built with)")
    return problems


@contextlib.contextmanager
def _extracting_into(folder: str):
    """TMPDIR set to ``folder`` (where the AOTInductor loader creates its aotinductor_* folder)."""
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous


class CompiledModel:
    """An AOTInductor package with the TorchScript model file's call signature."""

    def __init__(self, path: Union[str, Path], metadata: Dict[str, Any], device: Union[str, torch.device],
                 data: Optional[bytes] = None):
        """``data``: the package's bytes as checked by the reader (default: read ``path``)."""
        self.path = Path(path)
        self.device = torch.device(device)
        problems = compatibility_problems(metadata, self.device)
        if problems:
            raise ModelFileError(
                f"cannot run the compiled model package {self.path} here: " + "; ".join(problems)
                + ". Re-export it here (`empp-ff export RUN -o model.pt2`) or use the TorchScript "
                "file (`-o model.pt`), which runs on any device and CPU"
            )
        self.r_max = float(metadata["r_max"])
        self.num_interactions = int(metadata["num_interactions"])
        self.atomic_numbers = [int(z) for z in metadata["species"]]
        self.model_dtype = str(metadata["dtype"])
        self.format_version = int(metadata["format_version"])
        self.dtype = torch_dtype(self.model_dtype)
        self._known = z_table(self.atomic_numbers, True, False, torch.bool).to(self.device)
        index = self.device.index if self.device.index is not None else -1
        workdir = tempfile.mkdtemp(prefix="empp-ff-pt2-")
        try:
            copy = Path(workdir) / "model.pt2"
            copy.write_bytes(self.path.read_bytes() if data is None else data)
            with _extracting_into(workdir):
                # The C++ loader directly: torch._inductor.aoti_load_package would import
                # torch._inductor and torch._dynamo (seconds) for a thin wrapper.
                self._runner = torch._C._aoti.AOTIModelPackageLoader(str(copy), "model", False, 1, index)
        except (RuntimeError, OSError) as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ModelFileError(f"cannot load the compiled model package {self.path}: {exc}") from exc
        # The loader removes its extraction folder when released; this removes the rest.
        self._cleanup = weakref.finalize(self, shutil.rmtree, workdir, True)

    def eval(self) -> CompiledModel:
        return self

    def _tensor(self, value: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
        if value.device != self.device:
            raise ValueError(f"{name} is on {value.device}, the compiled model runs on {self.device}")
        return value.to(dtype).contiguous()

    def __call__(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        n_local: int,
        compute_virial: bool,
    ) -> Dict[str, torch.Tensor]:
        atomic_numbers = self._tensor(atomic_numbers, torch.long, "atomic_numbers")
        check_model_inputs(positions, atomic_numbers, edge_index, shifts, int(n_local), self._known)
        inputs: Sequence[torch.Tensor] = [
            self._tensor(positions, self.dtype, "positions"),
            atomic_numbers,
            self._tensor(edge_index, torch.long, "edge_index"),
            self._tensor(shifts, self.dtype, "shifts"),
            torch.tensor(int(n_local), dtype=torch.long, device=self.device),
        ]
        energy, node_energy, forces, virial = self._runner.run(list(inputs))
        out = {"energy": energy, "node_energy": node_energy, "forces": forces}
        if compute_virial:
            out["virial"] = virial
        return out
