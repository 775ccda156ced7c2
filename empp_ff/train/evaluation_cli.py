"""``empp-ff eval``: errors of a trained model on a data file (any format)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from empp_ff.train.checkpoint import build_potential, has_ema_weights, load_checkpoint
from empp_ff.train.distributed import select_device
from empp_ff.train.evaluate import evaluate


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def run_eval(target, data: Optional[str], split: str = "auto", batch_size: int = 32, device: str = "auto",
             use_ema: bool = True, progress: bool = False) -> Dict[str, Any]:
    from empp_ff.data.conversion import convert
    from empp_ff.data.dataset import GraphDataset, make_loader
    from empp_ff.data.readers import detect_format
    from empp_ff.data.splits import load_splits
    from empp_ff.data.store import StructureStore

    state = load_checkpoint(target)
    ckpt_path = Path(state["path"])
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else None
    train_data = state["config"]["data"].get("path") or ""
    if not train_data:
        from empp_ff.data.demo import demo_data_path

        train_data = str(demo_data_path())
    data_path = Path(data) if data else Path(train_data)
    if not data_path.exists():
        raise FileNotFoundError(f"data file not found: {data_path}")

    is_training_data = _same_file(data_path, Path(train_data))
    if split == "auto":
        split = "test" if is_training_data and run_dir is not None and (run_dir / "splits.json").exists() else "all"
    indices = None
    if split != "all":
        if run_dir is None or not (run_dir / "splits.json").exists():
            raise ValueError(f"--split {split} needs a run directory with splits.json (got {target})")
        if not is_training_data:
            raise ValueError(f"--split {split} refers to the run's training data ({train_data}), not {data_path}")
        indices = load_splits(run_dir / "splits.json")[split]

    with tempfile.TemporaryDirectory() as tmp:
        fmt = detect_format(data_path)
        if fmt == "store":
            store = StructureStore(data_path)
        elif run_dir is not None and is_training_data and (run_dir / "data" / (data_path.stem + ".h5")).exists():
            store = StructureStore(run_dir / "data" / (data_path.stem + ".h5"))
        else:
            cfg_data = state["config"]["data"]
            out = Path(tmp) / "eval.h5"
            convert(data_path, out, fmt=fmt, energy_key=cfg_data.get("energy_key", "energy"),
                    forces_key=cfg_data.get("forces_key", "forces"), progress=progress)
            store = StructureStore(out)
        dev = select_device(device)
        potential = build_potential(state, use_ema=use_ema).to(dev)
        dtype = next(potential.parameters()).dtype
        unknown = sorted(set(int(z) for z in store.species()) - set(potential.backbone.spec.atomic_numbers))
        if unknown:
            from ase.data import chemical_symbols

            raise ValueError(
                f"{data_path} contains elements the model was not trained on: "
                f"{[chemical_symbols[z] for z in unknown]}; model species: "
                f"{[chemical_symbols[z] for z in potential.backbone.spec.atomic_numbers]}"
            )
        dataset = GraphDataset(store, indices, potential.r_max, dtype=dtype)
        loader = make_loader(dataset, batch_size, shuffle=False)
        metrics, acc = evaluate(potential, loader, dev, progress=progress)
        store.close()
    return {
        **metrics,
        "per_element_forces_mae_mev_per_a": acc.per_element(),
        "checkpoint": str(ckpt_path),
        "data": str(data_path),
        "split": split,
        "ema": use_ema and has_ema_weights(state),
    }
