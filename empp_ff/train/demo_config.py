"""The demo config (``empp-ff train`` without a config file) and how ``--set`` overrides of
other data, another task or another backbone adjust it (``load_config``)."""

from __future__ import annotations

from typing import Any, Dict, Set

DEMO_CONFIG: Dict[str, Any] = {
    "seed": 1,
    "run_dir": "runs/demo",
    "data": {"path": "", "n_train": 200, "n_val": 50, "n_test": 250},
    "model": {"num_channels": 32, "max_L": 1, "num_interactions": 2, "correlation": 2, "radial_mlp": [32, 32]},
    # Trained to convergence: the rate halves after 10 epochs without a validation metric
    # 0.5 % better than the best, and the run stops after 30 (max_epochs is only the cap; a
    # run that reaches it while still improving says so).
    "train": {"max_epochs": 300, "batch_size": 5, "lr": 1e-2, "warmup_epochs": 1.0, "scheduler": "plateau",
              "plateau_patience": 10, "patience": 30, "min_improvement": 0.005},
    # EMPP's part is the start from the bundled EMPP-pre-trained weights (of the run's
    # backbone) with the element-dependent parts re-initialised, without the auxiliary loss:
    # the recipe that won on the molecules of the report set (forces 0.89x, energies 0.91x
    # at 50 labelled frames; benchmarks/results/empp_generalisation_study_cpu.md). The
    # auxiliary loss at weight 1 was neutral there. `task: pretrain` does not inherit it, nor
    # model.backbone: torchmd_et, on which that start was worse (load_config).
    "empp": {"enabled": True, "pretrained": "geom-drugs-demo", "pretrained_reinit": ["elements"], "weight": 0.0},
}


#: The demo's EMPP start, which `task: pretrain` on the demo config does not inherit, nor a
#: backbone other than those it is the recipe for.
_DEMO_START_KEYS = ("pretrained", "pretrained_reinit", "weight")
_DEMO_START_BACKBONES = ("mace",)


def adjust_demo(mapping: Dict[str, Any], given: Set[str]) -> Dict[str, Any]:
    """The demo ``mapping`` (with the overrides applied; ``given``: the keys they set) without
    the parts that are the demo file's or the demo recipe's only."""
    backbone = (mapping.get("model") or {}).get("backbone", "mace")
    if mapping.get("task") == "pretrain" or backbone not in _DEMO_START_BACKBONES:
        # The demo's EMPP start (bundled weights, weight 0) is for supervised MACE runs, where it
        # won on the report set. Pre-training is EMPP alone; on the torchmd_et backbone the start
        # made forces worse on the report set (1.09x), so there the demo keeps EMPP as the
        # auxiliary loss at the default weight, from random weights, unless asked otherwise.
        mapping["empp"] = {k: v for k, v in mapping["empp"].items()
                           if k not in _DEMO_START_KEYS or f"empp.{k}" in given}
    if mapping["data"].get("path"):
        # The demo's split sizes are for the demo file: other data get the defaults (or their task's).
        for key in ("n_train", "n_val", "n_test"):
            if f"data.{key}" not in given:
                mapping["data"].pop(key, None)
    return mapping
