"""Issue 10, CLI cases: `--set a=1 b=2` (case 8), scientific notation (case 8), one JSON
document on stdout (case 9), file-system errors without tracebacks (case 7) and no
noise a user must learn to ignore in normal runs (case 11)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from empp_ff.cli import main

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("instance-level annotations", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "cuequivariance", "Traceback")


def _cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _sets(items):
    """One --set per pair (the form every version accepts), so each test reproduces its own case."""
    return [a for kv in items for a in ("--set", kv)]


def _dry_run(args):
    result = _cli(["train", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


# --- case 8 ----------------------------------------------------------------------------

def test_one_set_takes_several_pairs(tmp_path):
    cfg = _dry_run(["--set", "train.batch_size=4", "train.lr=0.01", "data.n_val=7"])
    assert (cfg["train"]["batch_size"], cfg["train"]["lr"], cfg["data"]["n_val"]) == (4, 0.01, 7)
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  max_epochs: 3\n")
    cfg = _dry_run(["--set", "train.batch_size=2", "train.lr=0.02", str(config), "--set", "seed=5"])
    assert (cfg["train"]["batch_size"], cfg["train"]["lr"], cfg["train"]["max_epochs"], cfg["seed"]) == (2, 0.02, 3, 5)
    # later overrides win, in command-line order
    assert _dry_run(["--set", "seed=1", "seed=2", "--set", "seed=3"])["seed"] == 3


def test_scientific_notation_is_a_number(tmp_path):
    cfg = _dry_run(_sets(["train.lr=5e-3", "train.weight_decay=1E-6", "train.max_epochs=1e2"]))
    assert cfg["train"]["lr"] == 5e-3 and cfg["train"]["weight_decay"] == 1e-6 and cfg["train"]["max_epochs"] == 100
    assert _dry_run(["--set", "train.max_atoms_per_batch=1e6"])["train"]["max_atoms_per_batch"] == 1_000_000
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lr: 5e-3\n  warmup_epochs: 1e0\n")
    cfg = _dry_run([str(config)])
    assert cfg["train"]["lr"] == 5e-3 and cfg["train"]["warmup_epochs"] == 1.0
    result = _cli(["train", "--dry-run", "--set", "train.max_epochs=1.5e0"])
    assert result.exit_code != 0 and "expected an integer, got 1.5" in result.output


# --- case 7: file-system errors ------------------------------------------------------------

def _deny(monkeypatch, root: Path, err: int):
    """Make writes under ``root`` fail with ``err`` (root may write anywhere, so
    permissions cannot be used to produce EACCES in CI)."""
    real_open, real_mkdir = os.open, os.mkdir

    def guarded(path):
        if str(os.fspath(path)).startswith(str(root)):
            raise OSError(err, os.strerror(err), os.fspath(path))

    def fake_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            guarded(path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        guarded(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.mark.parametrize("exists", [False, True], ids=["new-run-dir", "existing-run-dir"])
def test_read_only_run_dir_is_a_clear_error(tmp_path, monkeypatch, tiny_train_overrides, exists):
    ro = tmp_path / "ro"
    run_dir = ro / "run"
    if exists:
        run_dir.mkdir(parents=True)
    _deny(monkeypatch, ro, errno.EACCES)
    result = _cli(["train", *_sets(tiny_train_overrides(run_dir))])
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert "permission denied" in result.output and str(ro) in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_disk_full_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch, tiny_train_overrides):
    real_fsync = os.fsync

    def full_disk(fd):
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    run_dir = tmp_path / "run"
    result = _cli(["train", *_sets(tiny_train_overrides(run_dir, epochs=1))])
    assert result.exit_code == 1, result.output
    assert f"no space left on the device while writing {run_dir / 'checkpoints' / 'last.pt'}" in result.output
    assert not list(run_dir.rglob("*.tmp"))


# --- cases 9 and 11: --json and a quiet normal run (fresh processes) -----------------------

def _run(args, cwd, env=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    return subprocess.run([sys.executable, "-m", "empp_ff.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run trained, exported and run in fresh processes (as a user would)."""
    work = tmp_path_factory.mktemp("cli")
    sets = {"run_dir": work / "run", "data.n_train": 16, "data.n_val": 4, "data.n_test": 8,
            "train.max_epochs": 1, "train.batch_size": 4, "train.tensorboard": False,
            "empp.num_masks": 1, "empp.weight": 1, "empp.pretrained": "null",  # EMPP aux (tiny model: no bundle)
            **{f"model.{k}": v for k, v in TINY_MODEL.items()}}
    train = _run(["train", *_sets(f"{k}={v}" for k, v in sets.items())], work)
    assert train.returncode == 0, train.stdout + train.stderr
    export = _run(["export", work / "run", "-o", work / "m.pt"], work)
    assert export.returncode == 0, export.stderr
    md = _run(["md", work / "m.pt", ROOT / "md_examples" / "aspirin.xyz", "--steps", 3, "--interval", 1,
               "--no-progress", "--out", work / "md.traj"], work)
    assert md.returncode == 0, md.stderr
    return work, {"train": train, "export": export, "md": md}


@pytest.mark.slow
def test_json_output_is_exactly_one_document(trained):
    work, _ = trained
    for args in (["eval", work / "run", "--json"], ["info", work / "m.pt", "--json"],
                 ["opt", work / "m.pt", ROOT / "md_examples" / "aspirin.xyz", "--steps", 2, "--json",
                  "--out", work / "opt.xyz"]):
        proc = _run(args, work)
        assert proc.returncode in (0, 2), proc.stderr  # opt: 2 = not converged in 2 steps
        json.loads(proc.stdout)  # the whole of stdout is one JSON document
        assert proc.stdout.strip().startswith("{"), proc.stdout[:200]


def test_normal_runs_print_no_warnings_to_ignore(trained):
    _, procs = trained
    for name, proc in procs.items():
        for noise in NOISE:
            assert noise not in proc.stdout + proc.stderr, (name, noise, proc.stderr[-2000:])
        assert "Warning" not in proc.stderr, (name, proc.stderr[-2000:])


# --- issue 28: export, eval and train entry cases -------------------------------------------

def _digests(folder: Path) -> dict:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(result, *needles):
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], (needle, result.output)


@pytest.fixture
def run_with_checkpoints(tmp_path):
    from empp_ff.testing.models import demo_checkpoint

    run = tmp_path / "runs" / "x"
    demo_checkpoint(run / "checkpoints" / "best.pt", seed=3, num_interactions=1, correlation=2)
    (run / "checkpoints" / "last.pt").write_bytes((run / "checkpoints" / "best.pt").read_bytes())
    (tmp_path / "link.pt").symlink_to(run / "checkpoints" / "last.pt")
    return run


@pytest.mark.parametrize("case", ["run-dir-to-best", "run-dir-to-new-file-in-checkpoints", "checkpoint-to-itself",
                                  "checkpoint-to-other-checkpoint", "symlink-into-checkpoints"])
def test_export_over_a_checkpoint_of_its_run_is_refused(run_with_checkpoints, tmp_path, case):
    run = run_with_checkpoints
    ckpt = run / "checkpoints"
    source, output, message = {
        "run-dir-to-best": (run, ckpt / "best.pt", "is inside"),
        "run-dir-to-new-file-in-checkpoints": (run, ckpt / "model.pt", "is inside"),
        "checkpoint-to-itself": (ckpt / "best.pt", ckpt / "best.pt", "is the input SOURCE"),
        "checkpoint-to-other-checkpoint": (ckpt / "best.pt", ckpt / "last.pt", "is inside"),
        "symlink-into-checkpoints": (run, tmp_path / "link.pt", "is inside"),
    }[case]
    before = _digests(tmp_path)
    _one_line_error(_cli(["export", source, "-o", output]), "the output -o", message)
    assert _digests(tmp_path) == before


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
@pytest.mark.slow
def test_a_signal_while_export_writes_ends_cleanly(run_with_checkpoints, tmp_path, signame):
    """The signal arrives when the model file is complete under its temporary name and not yet moved
    (EMPP_FF_SIGNAL_AT at the first write window): the move is not interrupted, the command ends with
    one line and 128 + the signal, and no temporary is left."""
    import signal as signals

    from empp_ff.export import read_metadata
    from empp_ff.testing.processes import temporaries

    out = tmp_path / "out"
    out.mkdir()
    (out / "m.pt").write_bytes(b"an earlier model file")
    proc = _run(["export", run_with_checkpoints, "-o", out / "m.pt"], tmp_path,
                env={"EMPP_FF_SIGNAL_AT": f"0:{signame}"})
    assert proc.returncode == 128 + signals.Signals[signame], proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [f"Error: stopped by {signame}"], proc.stderr[-3000:]
    assert read_metadata(out / "m.pt")["elements"]  # complete, not the earlier file, not half written
    assert not temporaries(out)


def test_unknown_eval_device_is_a_one_line_error(run_with_checkpoints):
    _one_line_error(_cli(["eval", run_with_checkpoints, "--device", "gpu"]),
                    "--device 'gpu' is not a device: use auto, cpu")


@pytest.mark.parametrize("key", ["seed", "data.split_seed"])
def test_negative_seed_names_the_key(key):
    result = _cli(["train", "--dry-run", "--set", f"{key}=-1"])
    _one_line_error(result, f"{key} must be a non-negative integer, got -1")
    assert "data split" not in result.output  # was: "data split: expected non-negative integer"


@pytest.mark.slow
def test_lammps_md_takes_a_model_path_with_spaces_and_never_replaces_a_users_in_md(model64, tmp_path):
    """A model path with a space reached pair_coeff as two words ("got 5 element(s)"); `./in.md`
    was overwritten without a word. Now the path is quoted, and md replaces only its own in.md."""
    import shutil

    import ase.io

    from conftest import ethanol

    spaced = tmp_path / "my models" / "m 64.pt"
    spaced.parent.mkdir()
    shutil.copy(model64, spaced)
    ase.io.write(tmp_path / "ethanol.xyz", ethanol())
    args = ["lammps", "md", spaced, tmp_path / "ethanol.xyz", "--steps", 2, "--thermo", 1, "--ensemble", "nve"]
    users = tmp_path / "mine"
    users.mkdir()
    (users / "in.md").write_text("# my own LAMMPS input\n")
    before = _digests(tmp_path)
    proc = _run(args + ["--workdir", users], tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"Error: {users / 'in.md'} exists and was not written by `empp-ff lammps md`: not replacing it; "
        "choose an empty --workdir"]
    assert _digests(tmp_path) == before
    for _ in range(2):  # the second run replaces the first one's files
        proc = _run(args + ["--workdir", tmp_path / "w"], tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "for 2 steps with 9 atoms" in (tmp_path / "w" / "log.lammps").read_text()
    assert f'"{spaced}"' in (tmp_path / "w" / "in.md").read_text()


@pytest.mark.parametrize("case", ["structure-is-the-data-file", "dump-is-the-model"])
def test_lammps_md_never_writes_over_its_inputs(tmp_path, case):
    import ase.io

    from conftest import ethanol

    work = tmp_path / "w"
    work.mkdir()
    model = tmp_path / "m.pt"
    model.write_bytes(b"a model file")
    structure = work / "structure.data" if case == "structure-is-the-data-file" else tmp_path / "e.xyz"
    ase.io.write(structure, ethanol(), format="xyz")  # what is in it does not matter: refused before reading
    extra, message = {
        "structure-is-the-data-file": ([], "the output structure.data"),
        "dump-is-the-model": (["--dump", "../m.pt"], "the output --dump"),
    }[case]
    before = _digests(tmp_path)
    _one_line_error(_cli(["lammps", "md", model, structure, "--workdir", work, *extra]), message)
    assert _digests(tmp_path) == before


def test_sigterm_early_in_export_leaves_the_earlier_file(run_with_checkpoints, tmp_path):
    """SIGTERM as soon as export handles it (then it imports torch and reads the checkpoint, seconds
    before it writes): one line, 143, the earlier model file byte for byte, no temporary."""
    from empp_ff.testing.processes import catches, cli_process, stop_when, temporaries

    out = tmp_path / "out"
    out.mkdir()
    (out / "m.pt").write_bytes(b"an earlier model file")
    proc = cli_process(["export", run_with_checkpoints, "-o", out / "m.pt"], tmp_path)
    status, _, stderr = stop_when(proc, lambda: catches(proc))
    assert status == 143 and stderr.strip().splitlines() == ["Error: stopped by SIGTERM"], stderr[-3000:]
    assert (out / "m.pt").read_bytes() == b"an earlier model file" and not temporaries(out)
