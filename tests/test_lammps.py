"""LAMMPS pair_style empp: build, loading, accuracy against the ASE/Python reference
(1, 2 and 4 MPI ranks, halo and full-shell modes), the ghost shell, units, errors and NVE energy conservation.

The session fixture builds the plugin once (``empp-ff lammps build``; a no-op when
an up-to-date build exists). Skipped only when the ``lammps`` package is missing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from empp_ff.testing.lammps import assert_matches_reference, run_lammps_input

from conftest import LAMMPS_TEST_MARKS

pytestmark = LAMMPS_TEST_MARKS

QE2F_REAL = 23.060549  # LAMMPS real units: eV -> kcal/mol (force.cpp)


# ---------------------------------------------------------------------------------- loading
def test_check_reports_ready(plugin):
    from empp_ff.inference.lammps.check import check_plugin

    items = check_plugin(python_module=True)
    failed = [it.line() for it in items if not it.ok and it.fatal]
    assert not failed, failed
    names = {it.name for it in items if it.ok}
    assert "plugin loads in lmp" in names
    assert "plugin loads in Python (lammps.lammps)" in names


def test_cli_check_and_path(plugin):
    proc = subprocess.run([sys.executable, "-m", "empp_ff.cli", "lammps", "check", "--no-python"],
                          text=True, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pair_style empp is ready" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "empp_ff.cli", "lammps", "path"],
                          text=True, capture_output=True, timeout=60)
    assert proc.stdout.strip() == str(plugin.parent)


def test_check_diagnoses_load_errors():
    from empp_ff.inference.lammps.check import diagnose_load_error

    msg = "Open of file /x/emppplugin.so failed: libtorch.so: cannot open shared object file"
    assert "libtorch" in diagnose_load_error(msg) and "build --force" in diagnose_load_error(msg)
    msg = ("Open of file /x/emppplugin.so failed: /x/emppplugin.so: undefined symbol: "
           "_ZN9LAMMPS_NS5Error4_allERKSsiiN3fmt")
    assert "LAMMPS version mismatch" in diagnose_load_error(msg)


def test_check_reports_torch_mismatch_and_missing_build(plugin, tmp_path, monkeypatch):
    import json
    import shutil

    from empp_ff.inference.lammps import paths as _paths
    from empp_ff.inference.lammps.check import check_plugin

    stale = tmp_path / "stale"
    stale.mkdir()
    shutil.copy(plugin, stale / plugin.name)
    info = json.loads((plugin.parent / "build_info.json").read_text())
    info["torch"] = "1.0.0"
    (stale / "build_info.json").write_text(json.dumps(info))
    monkeypatch.setenv("EMPP_FF_LAMMPS_PLUGIN_DIR", str(stale))
    items = {it.name: it for it in check_plugin(python_module=False)}
    assert not items["torch match"].ok and "build --force" in items["torch match"].detail

    monkeypatch.setattr(_paths, "candidate_dirs", lambda: [tmp_path / "nothing"])
    items = {it.name: it for it in check_plugin(python_module=False)}
    assert not items["plugin built"].ok and "empp-ff lammps build" in items["plugin built"].detail


def test_create_lammps_python_module(plugin, model64, box, box_reference, tmp_path):
    """The lammps Python module: libmpi preloaded, plugin available, same numbers."""
    from empp_ff.inference.lammps.inputs import write_data

    elements = write_data(box, tmp_path / "box.data")
    code = textwrap.dedent(f"""
        import numpy as np
        from empp_ff.inference.lammps import create_lammps
        lmp = create_lammps(["-log", "none", "-screen", "none", "-nocite"])
        assert lmp.has_style("pair", "empp")
        lmp.commands_string('''
        units metal
        atom_style atomic
        read_data {tmp_path / 'box.data'}
        pair_style empp
        pair_coeff * * {model64} {' '.join(elements)}
        run 0
        ''')
        print("PE", repr(lmp.get_thermo("pe")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pe = float(proc.stdout.split("PE ")[1].split()[0])
    assert abs(pe - box_reference["energy"]) <= 1e-8 * abs(box_reference["energy"])


def test_python_module_under_mpirun(plugin, model64, box, box_reference, tmp_path):
    """`mpirun -np 2 python script.py` with create_lammps (no LD_LIBRARY_PATH, no mpi4py)."""
    from empp_ff.inference.lammps.inputs import write_data
    from empp_ff.inference.lammps.paths import find_mpirun

    elements = write_data(box, tmp_path / "box.data")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        from empp_ff.inference.lammps import create_lammps
        lmp = create_lammps(["-log", "none", "-screen", "none", "-nocite"])
        lmp.commands_string('''
        units metal
        atom_style atomic
        read_data {tmp_path / 'box.data'}
        pair_style empp
        pair_coeff * * {model64} {' '.join(elements)}
        run 0
        ''')
        pe = lmp.get_thermo("pe")
        n = lmp.extract_setting("world_size")
        rank = lmp.extract_setting("world_rank")
        with open(f"{tmp_path}/rank{{rank}}.txt", "w") as fh:
            fh.write(f"PE {{pe!r}} NP {{n}} ")
    """))
    proc = subprocess.run([find_mpirun(), "-np", "2", sys.executable, str(script)], text=True,
                          capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = "".join((tmp_path / f"rank{r}.txt").read_text() for r in (0, 1))
    pes = [float(m) for m in re.findall(r"PE (\S+) NP 2", out)]
    assert len(pes) == 2, proc.stdout + out
    for pe in pes:
        assert abs(pe - box_reference["energy"]) <= 1e-8 * abs(box_reference["energy"])


# ---------------------------------------------------------------------------------- accuracy
MODES = {  # pair_style arguments -> ghost atom cutoff LAMMPS reports (r_max 3.5, skin 1, 2 layers)
    "halo yes": "4.5",  # default: layer by layer, node features exchanged, shell r_max + skin
    "halo no fold yes": "8",  # whole model on a num_interactions * r_max + skin shell, folded
    "halo no fold no": "8",  # same, every ghost a node
}


@pytest.mark.parametrize("np_ranks, mode", [(1, "halo yes"), (2, "halo yes"), (4, "halo yes"),
                                            (1, "halo no fold yes"), (2, "halo no fold yes"),
                                            (4, "halo no fold yes"), (1, "halo no fold no"),
                                            (2, "halo no fold no")])
def test_matches_reference_float64(model64, box, box_reference, np_ranks, mode):
    """Energy, per-atom energies, forces and the pressure tensor equal the ASE
    reference to 1e-8 on 1, 2 and 4 ranks (molecules cross the periodic and the
    domain boundaries): in halo mode (virial by f.r), with folded graphs (virial from
    the model) and with every ghost as a node (virial by f.r). 4 ranks on 2 cores:
    MPICH oversubscribes by default."""
    from empp_ff.testing.lammps import lammps_single_point

    res = lammps_single_point(model64, box, np_ranks=np_ranks, pair_args=mode)
    grid = re.search(r"(\d+) by (\d+) by (\d+) MPI processor grid", res["log"])
    assert np.prod([int(g) for g in grid.groups()]) == np_ranks
    assert f"ghost atom cutoff = {MODES[mode]}\n" in res["log"]
    assert_matches_reference(res, box_reference, 1e-8)


@pytest.mark.parametrize("np_ranks, fold", [(1, "yes"), (2, "yes"), (2, "no")])
def test_package_matches_reference_float64(compiled_model64, box, box_reference, np_ranks, fold):
    """pair_coeff * * model.pt2: the AOTInductor package of the same weights, run through
    libtorch's package loader, gives the ASE reference's energies, per-atom energies,
    forces and pressure to 1e-8, serial and with 2 MPI ranks."""
    from empp_ff.testing.lammps import lammps_single_point

    res = lammps_single_point(compiled_model64["pt2"], box, np_ranks=np_ranks, pair_args=f"fold {fold}")
    assert "(aotinductor, compiled for cpu" in res["log"]
    assert_matches_reference(res, box_reference, 1e-8)


@pytest.mark.parametrize("cell", ["box", "small cell"])
def test_plugin_graph_is_the_neighbours_module_graph(model64, box, cell):
    """Serial and folded, the pair style evaluates the N-atom periodic graph: the same
    nodes and edges as empp_ff.neighbours (which builds the training and ASE graphs),
    here counted from the plugin's log line; the energies then agree (tests above).
    The small cell (shorter than r_max) has edges to periodic images of the atom itself."""
    from empp_ff.export import read_metadata
    from empp_ff.neighbours import neighbour_graph
    from empp_ff.testing.lammps import lammps_single_point, reference
    from empp_ff.testing.structures import molecular_box

    atoms = box if cell == "box" else molecular_box(1, 3.2, molecules=("H2O",), seed=2)
    r_max = float(read_metadata(model64)["r_max"])
    edges, _ = neighbour_graph(atoms.positions, r_max, atoms.cell.array, atoms.pbc)
    if cell == "small cell":
        assert 3.2 < r_max and (edges[0] == edges[1]).any()  # self-image edges exist
    res = lammps_single_point(model64, atoms, pair_args="halo no fold yes")
    m = re.search(r"rank 0 graph: (\d+) local \+ \d+ ghost atoms -> (\d+) nodes, (\d+) edges \(folded\)", res["log"])
    assert m, res["log"][-2000:]
    assert (int(m.group(1)), int(m.group(2))) == (len(atoms), len(atoms))
    assert int(m.group(3)) == edges.shape[1]
    ref = reference(model64, atoms)
    assert abs(res["energy"] - ref["energy"]) <= 1e-8 * abs(ref["energy"])
    assert np.abs(res["forces"] - ref["forces"]).max() <= 1e-8 * np.abs(ref["forces"]).max()


def test_type_order_differs_from_model_order(model64, box, box_reference):
    """LAMMPS type 1 = O, 2 = H, 3 = C (model order H C O) maps by symbol."""
    from empp_ff.testing.lammps import lammps_single_point

    res = lammps_single_point(model64, box, elements=["O", "H", "C"])
    assert re.search(r"1 -> O\s+\(Z=8\)", res["log"]) and re.search(r"2 -> H\s+\(Z=1\)", res["log"])
    assert_matches_reference(res, box_reference, 1e-8)


@pytest.mark.parametrize("np_ranks, fold", [(2, "yes"), (1, "no"), (2, "no")])
def test_ghost_shell_too_small_is_wrong(model64, box, box_reference, np_ranks, fold):
    """Without halo exchanges, a ghost shell of one r_max (instead of
    num_interactions * r_max) silently changes energies and forces: this is what the
    automatic shell prevents. (Serial runs with folding are immune: every ghost is an
    image of a local atom.)"""
    from empp_ff.testing.lammps import lammps_single_point

    res = lammps_single_point(model64, box, np_ranks=np_ranks,
                              pair_args=f"halo no fold {fold} ghost_cutoff 4.5")
    assert "WILL BE WRONG" in res["log"]
    fscale = np.abs(box_reference["forces"]).max()
    assert np.abs(res["forces"] - box_reference["forces"]).max() > 1e-6 * fscale
    assert abs(res["energy"] - box_reference["energy"]) > 1e-7


@pytest.mark.parametrize("halo", ["yes", "no"])
def test_matches_reference_float32(model32, box, halo):
    from empp_ff.testing.lammps import NKTV2P_METAL, lammps_single_point, reference

    ref = reference(model32, box)
    res = lammps_single_point(model32, box, np_ranks=2, pair_args=f"halo {halo}")
    assert "dtype = float32" in res["log"]
    fscale = np.abs(ref["forces"]).max()
    assert abs(res["energy"] - ref["energy"]) <= 1e-6 * abs(ref["energy"])
    assert np.abs(res["forces"] - ref["forces"]).max() <= 1e-4 * fscale
    p_ref = -ref["stress"] * NKTV2P_METAL
    assert np.abs(res["pressure"] - p_ref).max() <= 1e-3 * np.abs(p_ref).max()


def test_real_units_are_converted(model64, box, box_reference):
    from empp_ff.testing.lammps import lammps_single_point

    res = lammps_single_point(model64, box, units="real")
    assert abs(res["energy"] - QE2F_REAL * box_reference["energy"]) <= 1e-8 * abs(res["energy"])
    fref = QE2F_REAL * box_reference["forces"]
    assert np.abs(res["forces"] - fref).max() <= 1e-8 * np.abs(fref).max()


# ---------------------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("fmt", ["pt", "pt2"])
def test_nve_conserves_energy(model64, fmt, request, tmp_path):
    """Short NVE runs at dt and dt/2 over the same 5 fs: the total energy is
    conserved to a small fraction of the potential-energy swing, and its error
    shrinks like dt^2 (forces are the exact gradient of the energy), for the
    TorchScript file and the compiled package."""
    from empp_ff.testing.lammps import nve_energy_ranges
    from empp_ff.testing.structures import molecular_box

    model = model64 if fmt == "pt" else request.getfixturevalue("compiled_model64")["pt2"]
    ptp = nve_energy_ranges(model, molecular_box(16, 10.0, seed=3), tmp_path)
    print("NVE ptp(pe), ptp(etot):", ptp)
    pe_swing, e_err = ptp[0.25]
    assert pe_swing > 0.5  # the system really moves
    assert e_err < 0.01 * pe_swing
    assert ptp[0.125][1] < e_err / 2.5  # ~ dt^2


# ---------------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def water_dir(tmp_path_factory):
    from ase.build import molecule

    from empp_ff.inference.lammps.inputs import write_data

    d = tmp_path_factory.mktemp("errors")
    a = molecule("H2O")
    a.cell = [12, 12, 12]
    a.pbc = True
    a.center()
    write_data(a, d / "w.data")  # types: 1 = H, 2 = O
    (d / "bad.pt").write_bytes(b"this is not a model")
    return d


BASE = "units metal\natom_style atomic\nread_data w.data\n"


@pytest.mark.parametrize(
    "case, text, expected",
    [
        ("element not in model", BASE + "pair_style empp\npair_coeff * * {model} H N\nrun 0\n",
         r"element 'N' \(atom type 2\) is not in the model .* the model knows: H C O"),
        ("not an element", BASE + "pair_style empp\npair_coeff * * {model} H Qq\nrun 0\n",
         r"'Qq' \(atom type 2\) is not a chemical element symbol"),
        ("too many elements", BASE + "pair_style empp\npair_coeff * * {model} H O C\nrun 0\n",
         r"needs exactly one element symbol per atom type: 2 atom types, got 3"),
        ("too few elements", BASE + "pair_style empp\npair_coeff * * {model} H\nrun 0\n",
         r"needs exactly one element symbol per atom type: 2 atom types, got 1"),
        ("newton off", "newton off\n" + BASE + "pair_style empp\npair_coeff * * {model} H O\nrun 0\n",
         r"requires newton pair on"),
        ("units lj", "units lj\natom_style atomic\nread_data w.data\npair_style empp\n"
                     "pair_coeff * * {model} H O\nrun 0\n",
         r"supports 'units metal' .* and 'units real' .* not 'units lj'"),
        ("per-atom virial", BASE + "pair_style empp\npair_coeff * * {model} H O\n"
                                   "compute s all stress/atom NULL\ncompute p all reduce sum c_s[1]\n"
                                   "thermo_style custom step pe c_p\nrun 0\n",
         r"does not compute per-atom virials"),
        ("corrupt model", BASE + "pair_style empp\npair_coeff * * bad.pt H O\nrun 0\n",
         r"cannot load model file 'bad.pt' as a TorchScript model"),
        ("missing model", BASE + "pair_style empp\npair_coeff * * nothere.pt H O\nrun 0\n",
         r"cannot open model file 'nothere.pt'"),
        ("cuda unavailable", BASE + "pair_style empp device cuda\npair_coeff * * {model} H O\nrun 0\n",
         r"CUDA is not available|type -> element"),
        ("bad keyword", BASE + "pair_style empp foo 1\npair_coeff * * {model} H O\nrun 0\n",
         r"Unknown pair_style empp keyword 'foo'"),
        ("ghost_cutoff in halo mode", BASE + "pair_style empp ghost_cutoff 4\npair_coeff * * {model} H O\nrun 0\n",
         r"ghost_cutoff applies to 'halo no' only"),
        ("negative min_distance", BASE + "pair_style empp min_distance -1\npair_coeff * * {model} H O\nrun 0\n",
         r"min_distance must be >= 0"),
    ],
)
def test_bad_input_errors(model64, water_dir, case, text, expected):
    proc = run_lammps_input(water_dir, text.format(model=model64))
    out = proc.stdout
    if case == "cuda unavailable":
        import torch

        if torch.cuda.is_available():  # pragma: no cover - GPU machines run it for real
            assert "ERROR" not in out, out[-2000:]
            return
    assert "ERROR" in out, out[-2000:]
    error_line = next(line for line in out.splitlines() if "ERROR" in line)
    assert re.search(expected, error_line), error_line


# ---------------------------------------------------------------------------------- examples / CLI
def test_example_aspirin_nvt_two_ranks_via_cli(model64, tmp_path):
    """md_examples/lammps/in.aspirin_nvt runs with `empp-ff lammps run --np 2`."""
    import shutil
    from pathlib import Path

    ex = Path(__file__).resolve().parents[1] / "md_examples" / "lammps"
    for name in ("in.aspirin_nvt", "aspirin.data"):
        shutil.copy(ex / name, tmp_path / name)
    proc = subprocess.run(
        [sys.executable, "-m", "empp_ff.cli", "lammps", "run", "in.aspirin_nvt", "--np", "2",
         "--var", "model", str(model64), "--var", "steps", "10"],
        cwd=tmp_path, text=True, capture_output=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    log = (tmp_path / "log.lammps").read_text()
    assert "Loop time of" in log and "on 2 procs for 10 steps with 21 atoms" in log
    assert (tmp_path / "aspirin_nvt.lammpstrj").exists()


def test_cli_md_command(model64, box, tmp_path):
    from ase.io import write

    write(tmp_path / "box.extxyz", box)
    proc = subprocess.run(
        [sys.executable, "-m", "empp_ff.cli", "lammps", "md", str(model64), str(tmp_path / "box.extxyz"),
         "--steps", "4", "--dt", "0.25", "--ensemble", "nve", "--thermo", "2", "--workdir", str(tmp_path / "run")],
        text=True, capture_output=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (tmp_path / "run" / "in.md").exists()
    assert "for 4 steps with 96 atoms" in (tmp_path / "run" / "log.lammps").read_text()
