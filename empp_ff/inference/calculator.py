"""ASE calculator for exported empp-ff model files.

Inference only: this module needs torch, numpy, ase and (for periodic or large
systems) vesin. It never imports mace, e3nn, torch_geometric or the training
stack, and it never changes process-wide state (torch's default dtype, torch
thread settings, environment variables).

Neighbour lists (both from :mod:`empp_ff.neighbours`, the graphs training uses)
---------------
* Molecules (no periodic direction) up to ``all_pairs_max_atoms`` atoms: all
  pairs within ``r_max`` from a distance matrix computed with torch on the
  model's device, every call (no host work, no skin needed).
* Periodic (including mixed, e.g. slabs) or large systems: vesin on the host,
  with a Verlet skin (:class:`~empp_ff.neighbours.VerletList`): exact edges,
  candidates rebuilt only when an atom has moved more than ``skin / 2``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np
import torch
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress

from empp_ff._dtypes import check_dtype_name, torch_dtype
from empp_ff._elements import TABLE_SIZE
from empp_ff.export.model_file import default_device, load_model, read_metadata
from empp_ff.inference.guard import DEFAULT_MIN_DISTANCE, InstabilityGuard
from empp_ff.neighbours import VerletList, all_pairs_edges


def _species_text(species: List[int]) -> str:
    return ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in species)


class EMPPCalculator(Calculator):
    """Energy, per-atom energies, forces and (periodic cells) stress from an
    empp-ff model file.

    Parameters
    ----------
    model_path:
        A file written by ``empp-ff export``: TorchScript (``.pt``) or an
        AOTInductor package (``.pt2``, compiled kernels; faster, but tied to the
        device, CPU architecture and torch it was compiled for).
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: a package's own device;
        for TorchScript CUDA when available.
    dtype:
        ``"float32"``/``"float64"``; default (and only supported value) is the
        file's own dtype. Re-export with ``empp-ff export --dtype`` for another.
    min_distance:
        Atoms closer than this (Å) are an :class:`~empp_ff.inference.guard.InstabilityError`
        (a collapsed structure; default 0.3, as ``pair_style empp``). ``None``
        disables the check.
    warn_distance:
        Atoms closer than this (Å) trigger one warning per calculator (outside the
        training data). ``None`` disables the warning.
    max_bond_stretch:
        Molecules: a bond of the first structure seen stretched by more than this
        (Å) is an :class:`~empp_ff.inference.guard.InstabilityError` (``empp-ff md`` uses
        0.5). Default ``None`` (off): a calculator may be given unrelated
        structures. Non-finite energies or forces are always an error.
    skin:
        Verlet skin (Å) of the cached neighbour list for periodic/large systems.
    neighbor_list:
        ``"auto"`` (default), ``"all_pairs"`` (non-periodic only) or ``"vesin"``.
    all_pairs_max_atoms:
        Largest non-periodic system handled by the on-device all-pairs list in
        ``"auto"`` mode.
    jit_optimize:
        Run the TorchScript graph executor's profiling optimisations (fusion,
        specialisation). Default off: on CPU they bring no steady-state gain
        for these models but cost seconds of re-profiling on the first calls
        and when input shapes change (the number of edges changes during MD).
        Untested on GPU, where fusion might pay off; try ``True`` there.
        Applied with ``torch.jit.optimized_execution`` around each call
        (thread-local, restored afterwards).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model_path: Union[str, Path],
        device: Optional[Union[str, torch.device]] = None,
        dtype: Optional[str] = None,
        min_distance: Optional[float] = DEFAULT_MIN_DISTANCE,
        skin: float = 0.5,
        neighbor_list: str = "auto",
        all_pairs_max_atoms: int = 1000,
        jit_optimize: bool = False,
        warn_distance: Optional[float] = 0.5,
        max_bond_stretch: Optional[float] = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.model_path = Path(model_path)
        self.metadata = read_metadata(self.model_path)  # checks the file's integrity
        self.device = torch.device(default_device(self.metadata) if device is None else device)
        self.model = load_model(self.model_path, self.metadata, self.device)
        file_dtype = str(self.metadata["dtype"])
        if dtype is not None and check_dtype_name(dtype) != file_dtype:
            raise ValueError(
                f"{self.model_path} is a {file_dtype} model; running it as {dtype} is not "
                f"supported (constants baked into the exported code keep their dtype). "
                f"Export a {dtype} file instead: `empp-ff export RUN_DIR -o {self.model_path.name} --dtype {dtype}`"
            )
        if neighbor_list not in ("auto", "all_pairs", "vesin"):
            raise ValueError(
                f"neighbor_list must be 'auto', 'all_pairs' or 'vesin', got {neighbor_list!r}"
            )
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        self.dtype_name = file_dtype
        self.dtype = torch_dtype(file_dtype)
        self.r_max = float(self.metadata["r_max"])
        self.species = [int(z) for z in self.metadata["species"]]
        self.min_distance = min_distance
        self.warn_distance = warn_distance
        self.guard = InstabilityGuard(min_distance=min_distance, max_bond_stretch=max_bond_stretch)
        self.skin = float(skin)
        self.neighbor_list = neighbor_list
        self.all_pairs_max_atoms = int(all_pairs_max_atoms)
        self.jit_optimize = bool(jit_optimize)
        self._known = np.zeros(TABLE_SIZE, dtype=bool)
        self._known[self.species] = True
        self._warned_close = False
        self._numbers: Optional[np.ndarray] = None
        self._numbers_t: Optional[torch.Tensor] = None
        self._verlet = VerletList(self.r_max, self.skin, self.device, self.dtype)
        # The virial is computed only once someone has asked for the stress (NPT,
        # cell relaxation); from then on with every call, so a barostat never
        # makes the model run twice per step. NVE/NVT MD never pays for it.
        self._stress_wanted = False

    # -- validation -------------------------------------------------------------------
    def _check_atoms(self, atoms) -> None:
        n = len(atoms)
        if n == 0:
            raise ValueError("EMPPCalculator got an empty Atoms object (no atoms)")
        numbers = atoms.numbers
        if numbers.min() < 1 or numbers.max() >= len(self._known) or not self._known[numbers].all():
            bad = sorted({int(z) for z in numbers if z < 1 or z >= len(self._known) or not self._known[z]})
            names = ", ".join(
                f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}"
                for z in bad
            )
            raise ValueError(
                f"element(s) {names} not supported by the model {self.model_path.name}; "
                f"it was trained on: {_species_text(self.species)}"
            )
        positions = atoms.positions
        if not np.isfinite(positions).all():
            bad = np.where(~np.isfinite(positions).all(axis=1))[0]
            raise ValueError(
                f"non-finite (NaN/inf) positions for atom(s) {bad[:10].tolist()}"
                + (" ..." if len(bad) > 10 else "")
            )
        if atoms.pbc.any():
            cell = atoms.cell.array
            if not np.isfinite(cell).all():
                raise ValueError("non-finite (NaN/inf) cell")
            for axis in np.where(atoms.pbc)[0]:
                if np.linalg.norm(cell[axis]) < 1e-8:
                    raise ValueError(
                        f"periodic direction {axis} has a zero cell vector; set a cell or pbc=False"
                    )
            periodic = cell[atoms.pbc]
            if np.linalg.matrix_rank(periodic, tol=1e-8 * max(1.0, np.abs(periodic).max())) < len(periodic):
                raise ValueError(
                    f"the cell {cell.tolist()} is singular (its periodic vectors are linearly dependent, "
                    "volume 0); give a cell with independent lattice vectors"
                )

    def _numbers_tensor(self, numbers: np.ndarray) -> torch.Tensor:
        if self._numbers is None or not np.array_equal(self._numbers, numbers):
            self._numbers = numbers.copy()
            self._numbers_t = torch.as_tensor(numbers, dtype=torch.long, device=self.device)
        return self._numbers_t

    # -- neighbour lists --------------------------------------------------------------
    def _use_all_pairs(self, atoms) -> bool:
        if self.neighbor_list == "all_pairs":
            if atoms.pbc.any():
                raise ValueError("neighbor_list='all_pairs' supports non-periodic systems only")
            return True
        if self.neighbor_list == "vesin":
            return False
        return (not atoms.pbc.any()) and len(atoms) <= self.all_pairs_max_atoms

    @property
    def nl_builds(self) -> int:
        """How many host neighbour-list builds so far (for tests/diagnostics)."""
        return self._verlet.builds

    def _edges(self, atoms, pos: torch.Tensor):
        if self._use_all_pairs(atoms):
            return all_pairs_edges(pos, self.r_max)
        return self._verlet.edges(atoms.positions, atoms.cell.array, atoms.pbc, atoms.numbers, pos)

    def neighbor_edges(self, atoms):
        """(edge_index [2, E], shifts [E, 3], lengths [E]) as passed to the model."""
        return self._edges(atoms, torch.as_tensor(atoms.positions, dtype=self.dtype, device=self.device))

    def _check_geometry(self, atoms, edge_index: torch.Tensor, lengths: torch.Tensor) -> None:
        """The instability guard (collapsed pairs, broken bonds) and the close-atoms warning."""
        self.guard.check_bonds(atoms.numbers, atoms.positions, periodic=bool(atoms.pbc.any()))
        if lengths.numel() == 0 or (self.min_distance is None and (self.warn_distance is None or self._warned_close)):
            return
        k = int(torch.argmin(lengths))
        closest = float(lengths[k])
        pair = edge_index[:, k].tolist()
        self.guard.check_closest(atoms.numbers, pair[0], pair[1], closest)
        if self.warn_distance is not None and not self._warned_close and closest < self.warn_distance:
            self._warned_close = True
            warnings.warn(
                f"atoms closer than {self.warn_distance} Å (closest pair {closest:.3f} Å): "
                "the model was not trained on such geometries and its predictions "
                "there are unreliable (warned once per calculator)",
                RuntimeWarning,
                stacklevel=3,
            )

    # -- ASE interface ----------------------------------------------------------------
    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        if properties is None:
            properties = self.implemented_properties
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self._check_atoms(atoms)
        periodic = bool(atoms.pbc.all())
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                "stress is defined only for cells periodic in all three directions "
                f"(pbc={atoms.pbc.tolist()})"
            )
        pos = torch.as_tensor(atoms.positions, dtype=self.dtype, device=self.device)
        numbers = self._numbers_tensor(atoms.numbers)
        edge_index, shifts, lengths = self._edges(atoms, pos)
        self._check_geometry(atoms, edge_index, lengths)
        if "stress" in properties:
            self._stress_wanted = True
        want_virial = periodic and self._stress_wanted
        with torch.jit.optimized_execution(self.jit_optimize):
            out = self.model(pos, numbers, edge_index, shifts, len(atoms), want_virial)
        energy = float(out["energy"].detach().cpu())
        forces = out["forces"].detach().cpu().double().numpy()
        self.guard.check_results(atoms.numbers, energy, forces)
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["node_energy"].detach().cpu().double().numpy()
        self.results["forces"] = forces
        if want_virial:
            virial = out["virial"].detach().cpu().double().numpy()
            stress = -virial / atoms.get_volume()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
