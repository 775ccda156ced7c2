"""Cells of the accuracy grid: what one training run is, where it lives, whether it is done."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional


@dataclass(frozen=True)
class Cell:
    molecule: str
    n_train: int
    seed: int
    variant: str
    epochs: int
    n_val: int = 50
    n_test: int = 500

    @property
    def name(self) -> str:
        return f"{self.molecule}/n{self.n_train}/{self.variant}/s{self.seed}"

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def cell_dir(work: Path, cell: Cell) -> Path:
    return Path(work) / cell.molecule / f"n{cell.n_train}_e{cell.epochs}" / cell.variant / f"seed{cell.seed}"


def read_result(directory: Path) -> Optional[Dict[str, object]]:
    path = Path(directory) / "result.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def all_results(work: Path):
    for path in sorted(Path(work).rglob("result.json")):
        yield json.loads(path.read_text())
