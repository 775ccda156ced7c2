"""Two-stage cells: EMPP self-supervised pre-training on unlabelled frames, then supervised fine-tuning.

The unlabelled set is the cell's own training structures plus further frames of the same
trajectory (``frames`` in all), never a frame of the cell's validation or test split:
the split is made by empp-ff's ``make_splits`` with the cell's sizes and seed, exactly as
the supervised stage's ``empp-ff train`` makes it. The frames are written as extended XYZ
with positions and elements only, so the pre-training cannot see an energy or a force.
Stage 1 is ``empp-ff train --set task=pretrain``, stage 2 the cell's supervised overrides
plus ``finetune_from`` (same architecture: every backbone weight is carried over).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np


def write_unlabelled_frames(source: Path, cell, out: Path, frames: int) -> tuple:
    """(path of the extended XYZ file, number of frames written)."""
    from ase import Atoms
    from ase.io import write

    from empp_ff.data.splits import make_splits

    data = np.load(source)
    z, positions = data["z"], data["R"]
    splits = make_splits(len(positions), cell.n_train, cell.n_val, cell.n_test, seed=cell.seed)
    held_out = set(int(i) for i in splits["val"]) | set(int(i) for i in splits["test"])
    train = [int(i) for i in splits["train"]]
    rest = [i for i in range(len(positions)) if i not in held_out and i not in set(train)]
    rng = np.random.default_rng(1000 + cell.seed)
    extra = rng.choice(rest, size=max(0, min(len(rest), frames - len(train))), replace=False)
    chosen = train + sorted(int(i) for i in extra)
    assert not held_out.intersection(chosen)
    path = out / "unlabelled.xyz"
    write(path, [Atoms(numbers=z, positions=positions[i]) for i in chosen], format="extxyz")
    return path, len(chosen)


def run_two_stage_cell(cell, stages: Dict[str, Dict[str, object]], data_dir: Path, out: Path,
                       run_empp_ff: Callable[..., Dict[str, object]]) -> Dict[str, object]:
    """``stages``: {"pretrain": overrides, "finetune": overrides, "frames": N}.

    ``run_empp_ff(cell, overrides, data_dir, work_dir)`` trains one stage (the harness's runner)."""
    frames = int(stages.get("frames", 1000))
    unlabelled, written = write_unlabelled_frames(Path(data_dir) / f"md17_{cell.molecule}.npz", cell, out, frames)
    pre_dir = out / "pretrain"
    n_val = int(stages["pretrain"].get("data.n_val", 50))
    pre = run_empp_ff(cell, {"task": "pretrain", "empp.enabled": True, "empp.pretrained": None, "empp.weight": 1.0,
                             "data.path": unlabelled,
                             "data.n_train": written - n_val, "data.n_test": 0,
                             **stages["pretrain"]}, data_dir, pre_dir, test_metrics=False)
    fine = run_empp_ff(cell, {**stages["finetune"], "finetune_from": pre_dir / "run"}, data_dir, out / "finetune")
    fine["pretrain"] = {"frames": frames, "command": pre["command"], "wall_time_s": pre["wall_time_s"],
                        "cpu_time_s": pre["cpu_time_s"]}
    fine["wall_time_s"] += pre["wall_time_s"]
    for point in fine["curve"]:  # the learning curve's clock starts with the pre-training
        point["wall_time_s"] += pre["wall_time_s"]
    fine["curve_includes_pretraining"] = True
    fine["cpu_time_s"] += pre["cpu_time_s"]
    return fine
