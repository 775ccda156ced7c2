"""Fine-tuning: start a run from the weights of another run's checkpoint.

The architectures must agree (``model.*`` fields other than ``dtype``); a
difference is an error naming the fields, never a silent re-initialisation. Every
backbone parameter is carried over; the element-dependent ones (node embedding,
``skip_tp``, symmetric contractions) by atomic number, so a backbone pre-trained on
drug-like molecules (H C N O F S Cl) fine-tunes on an H C O molecule with its
chemistry intact (empp_ff/model/transfer.py). Buffers that depend on the data (E0s,
scale/shift, EMPP label statistics) keep the new run's values. EMPP weights are
carried over when both runs use EMPP with the same head. The record of what was
loaded is written to ``finetune.json`` by the trainer.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from empp_ff.model.spec import Architecture
from empp_ff.model.transfer import transfer_weights
from empp_ff.train.checkpoint import load_checkpoint
from empp_ff.train.config import ConfigError

# Fields that may differ between the pre-trained and the fine-tuned model.
_FREE_FIELDS = ("dtype",)


def architecture_differences(source: Dict[str, Any], target: Architecture) -> Dict[str, tuple]:
    """{field: (checkpoint value, this run's value)} for every architecture field that differs,
    among those the target's backbone uses (``backbone`` first: another backbone is one difference)."""
    import dataclasses

    diffs = {}
    used = target.used_fields()
    for f in dataclasses.fields(Architecture):
        if f.name in _FREE_FIELDS or f.name not in used:
            continue
        mine = getattr(target, f.name)
        theirs = source.get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        if theirs != mine:
            diffs[f.name] = (theirs, mine)
    return diffs


def load_pretrained(model, target, key: str = "finetune_from", reinit: Sequence[str] = (),
                    given: Optional[str] = None) -> Dict[str, Any]:
    """Copy the weights of checkpoint (or run directory) ``target`` into ``model``
    (a TrainingModel); return the record for ``finetune.json``. ``key``: the config
    key that asked for it, named in errors. Parameters whose names contain one of
    ``reinit`` keep their fresh values (``empp.pretrained_reinit``). ``given``: the value as
    the user wrote it (a bundled name), for errors."""
    state = load_checkpoint(target)
    source_spec = state["backbone_spec"]
    backbone = model.potential.backbone
    diffs = architecture_differences(source_spec, backbone.spec)
    if diffs:
        listed = ", ".join(f"model.{k}: {a!r} in the checkpoint, {b!r} here" for k, (a, b) in diffs.items())
        fix = " ".join(f"--set model.{k}={_yaml(a)}" for k, (a, _) in diffs.items())
        other = " or --set empp.pretrained=null (random initial weights)" if key == "empp.pretrained" else ""
        named = f"{given} ({target})" if given and given != str(target) else str(target)
        raise ConfigError(f"{key}={named}: the architecture differs from the checkpoint's ({listed}). "
                          f"Use the checkpoint's architecture, e.g. {fix}{other}")
    source = _source_module(state, backbone)
    report = transfer_weights(source, model.potential, source_spec["atomic_numbers"], backbone.spec.atomic_numbers,
                              keep=reinit)
    if reinit and not report.kept:  # a part that names nothing must not pass silently
        raise ConfigError(f"empp.pretrained_reinit: no parameter of the {backbone.spec.backbone} backbone matches "
                          f"{list(reinit)}")
    empp_record = _carry_empp(model, state, source_spec)
    return {
        "initialised_by": key, "finetune_from": str(target), "checkpoint": state["path"],
        "source_task": state["config"].get("task"),
        "source_elements": list(source_spec["atomic_numbers"]), "elements": list(backbone.spec.atomic_numbers),
        **report.as_dict(), **empp_record,
    }


def _source_module(state: Dict[str, Any], backbone):
    """The checkpoint's potential (EMA weights when it has them), rebuilt from its own spec."""
    from empp_ff.train.checkpoint import build_potential

    return build_potential(state, use_ema=True, dtype=backbone.spec.dtype)


def _carry_empp(model, state: Dict[str, Any], source_spec: Dict[str, Any]) -> Dict[str, Any]:
    if model.empp is None or not state.get("empp_state"):
        return {"empp_loaded": [], "empp_note": "no EMPP weights to carry over"}
    from empp_ff.empp.config import EMPPConfig
    from empp_ff.empp.module import EMPPModule

    source_cfg = EMPPConfig.from_dict(state["config"]["empp"])
    try:
        source = EMPPModule(source_cfg, _source_module(state, model.potential.backbone).backbone,
                            state.get("label_stats"))
        source.load_state_dict(state["empp_state"])
        report = transfer_weights(source, model.empp, source_spec["atomic_numbers"],
                                  model.potential.backbone.spec.atomic_numbers)
    except (ValueError, RuntimeError) as exc:  # a different head: EMPP restarts, the backbone does not
        return {"empp_loaded": [], "empp_note": f"EMPP head re-initialised: {exc}"}
    return {"empp_loaded": report.copied + report.by_element}


def _yaml(value) -> str:
    return str(value).replace(" ", "")
