"""Fine-tuning across element sets: weights carried by atomic number; architecture mismatches refused."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from empp_ff.model.transfer import element_index_map, transfer_weights
from empp_ff.testing.batches import collate, molecule_graph, random_molecule
from empp_ff.testing.models import demo_potential, demo_spec


def _energies(potential, batch):
    out = potential(batch.positions, batch.atomic_numbers, batch.edge_index, batch.shifts, batch.batch,
                    int(batch.num_graphs), compute_forces=True)
    return out["node_energy"].detach(), out["forces"].detach()


def test_index_map_keeps_target_order():
    assert element_index_map([1, 6, 7, 8, 9], [1, 6, 8]) == ([0, 1, 2], [0, 1, 3])
    assert element_index_map([1, 6], [1, 6, 8]) == ([0, 1], [0, 1])


@pytest.mark.parametrize("correlation", [2, 3])
@pytest.mark.slow
def test_carried_weights_reproduce_the_source_model_on_shared_elements(correlation):
    drug_like = (1, 6, 7, 8, 9, 16, 17)
    source = demo_potential(demo_spec(drug_like, correlation=correlation), seed=1, perturb=0.2)
    target = demo_potential(demo_spec((1, 6, 8), correlation=correlation), seed=2, perturb=0.2)
    g = torch.Generator().manual_seed(3)
    pos, z = random_molecule(10, [1, 6, 8], g)
    batch = collate([molecule_graph(pos, z, source.r_max)])
    e_before, _ = _energies(target, batch)
    report = transfer_weights(source, target, drug_like, (1, 6, 8))
    e_src, f_src = _energies(source, batch)
    e_tgt, f_tgt = _energies(target, batch)
    assert (e_before - e_src).abs().max() > 1e-3  # the target really changed
    # same E0s (demo table) and scale/shift: the carried model is the source model on H, C, O
    torch.testing.assert_close(e_tgt, e_src, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(f_tgt, f_src, atol=1e-10, rtol=1e-10)
    by_element = " ".join(report.by_element)
    for part in ("node_embedding", "skip_tp", "symmetric_contractions"):
        assert part in by_element
    assert report.new_elements == []


@pytest.mark.slow
def test_elements_the_source_never_saw_are_reported_and_keep_their_values():
    source = demo_potential(demo_spec((1, 6)), seed=1)
    target = demo_potential(demo_spec((1, 6, 8)), seed=2)
    emb = target.backbone.mace.node_embedding.linear.weight.detach().view(3, -1).clone()
    report = transfer_weights(source, target, (1, 6), (1, 6, 8))
    assert report.new_elements == [8]
    after = target.backbone.mace.node_embedding.linear.weight.detach().view(3, -1)
    assert torch.equal(after[2], emb[2]) and not torch.equal(after[0], emb[0])


@pytest.mark.slow
def test_different_architecture_is_an_error_naming_the_tensor():
    source = demo_potential(demo_spec((1, 6, 8), num_channels=8), seed=1)
    target = demo_potential(demo_spec((1, 6, 8), num_channels=16), seed=1)
    with pytest.raises(ValueError, match="architectures differ"):
        transfer_weights(source, target, (1, 6, 8), (1, 6, 8))


@pytest.mark.slow
def test_cli_finetune_refuses_a_different_architecture_naming_fields(tmp_path, tiny_train_overrides):
    from click.testing import CliRunner

    from empp_ff.cli import main

    def train(run, **extra):
        args = ["train"]
        for item in tiny_train_overrides(run, epochs=1, **extra):
            args += ["--set", item]
        return CliRunner().invoke(main, args)

    pre = tmp_path / "pre"
    result = train(pre, task="pretrain", **{"empp.enabled": True})
    assert result.exit_code == 0, result.output
    fine = tmp_path / "fine"
    result = train(fine, finetune_from=str(pre), **{"model.num_channels": 12, "model.correlation": 3})
    assert result.exit_code != 0
    assert "model.num_channels: 8 in the checkpoint, 12 here" in result.output
    assert "model.correlation" in result.output and "Traceback" not in result.output

    ok = tmp_path / "ok"
    result = train(ok, finetune_from=str(pre), **{"empp.enabled": True})
    assert result.exit_code == 0, result.output
    record = json.loads((ok / "finetune.json").read_text())
    assert record["source_task"] == "pretrain" and record["new_elements"] == []
    assert record["empp_loaded"], record.get("empp_note")


def _train(tiny_train_overrides, run, **extra):
    from click.testing import CliRunner

    from empp_ff.cli import main

    args = ["train"]
    for item in tiny_train_overrides(run, epochs=1, **extra):
        args += ["--set", item]
    return CliRunner().invoke(main, args)


def test_bundled_empp_weights_are_each_backbones_demo_architecture():
    from empp_ff.empp.pretrained import BUNDLED, resolve_pretrained
    from empp_ff.train.checkpoint import load_checkpoint
    from empp_ff.train.config import ConfigError, load_config
    from empp_ff.train.finetune import architecture_differences

    assert set(BUNDLED) == {"geom-drugs-demo"} and set(BUNDLED["geom-drugs-demo"]) == {"mace", "torchmd_et"}
    for backbone in ("mace", "torchmd_et"):
        demo = load_config(None, [f"model.backbone={backbone}"])
        state = load_checkpoint(resolve_pretrained("geom-drugs-demo", backbone))
        assert state["config"]["task"] == "pretrain" and "optimizer_state" not in state
        assert state["backbone_spec"].get("backbone", "mace") == backbone  # specs before the field: MACE
        assert architecture_differences(state["backbone_spec"], demo.model) == {}
        assert {1, 6, 7, 8} <= set(state["backbone_spec"]["atomic_numbers"])
    with pytest.raises(ValueError, match="bundled for the backbones mace, torchmd_et, not painn"):
        resolve_pretrained("geom-drugs-demo", "painn")
    with pytest.raises(ConfigError, match="neither a bundled name"):
        load_config(None, ["empp.enabled=true", "empp.pretrained=geom-drugs-dem"])


@pytest.mark.slow
def test_empp_pretrained_starts_the_run_and_names_itself_in_errors(tmp_path, tiny_train_overrides):
    pre = tmp_path / "pre"
    result = _train(tiny_train_overrides, pre, task="pretrain", **{"empp.enabled": True})
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = _train(tiny_train_overrides, run, **{"empp.enabled": True, "empp.pretrained": str(pre)})
    assert result.exit_code == 0, result.output
    record = json.loads((run / "finetune.json").read_text())
    assert record["initialised_by"] == "empp.pretrained" and record["loaded"] and record["source_task"] == "pretrain"
    # EMPP off: empp.pretrained is ignored like every empp.* key; the run starts from random weights
    off = tmp_path / "off"
    result = _train(tiny_train_overrides, off, **{"empp.enabled": False, "empp.pretrained": str(pre)})
    assert result.exit_code == 0, result.output
    assert not (off / "finetune.json").exists()
    # another architecture: an error naming the key and both ways out
    bad = tmp_path / "bad"
    result = _train(tiny_train_overrides, bad, **{"empp.enabled": True, "empp.pretrained": str(pre),
                                                   "model.num_channels": 12})
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "empp.pretrained=" in result.output and "model.num_channels: 8 in the checkpoint, 12 here" in result.output
    assert "--set empp.pretrained=null" in result.output
    # a name that is neither bundled nor a path fails before any work
    missing = tmp_path / "missing"
    result = _train(tiny_train_overrides, missing, **{"empp.enabled": True, "empp.pretrained": "no-such-weights"})
    assert result.exit_code != 0 and "geom-drugs-demo" in result.output and "no-such-weights" in result.output
    assert not missing.exists()


@pytest.mark.slow
def test_the_demo_trains_from_the_bundled_weights_with_fresh_element_parts(tmp_path):
    """The demo config's EMPP part (README): the start from the bundled EMPP-pre-trained
    weights with the element-dependent parts re-initialised, no auxiliary loss."""
    from click.testing import CliRunner

    from empp_ff.cli import main

    run = tmp_path / "demo"
    sets = {"run_dir": run, "data.n_train": 8, "data.n_val": 4, "data.n_test": 4, "train.max_epochs": 1,
            "train.progress": False, "train.tensorboard": False}
    result = CliRunner().invoke(main, ["train"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "finetune.json").read_text())
    assert record["initialised_by"] == "empp.pretrained" and record["checkpoint"].endswith("geom_drugs_demo.pt")
    assert record["new_elements"] == [] and record["loaded"]
    assert record["kept"] and all(any(p in n for p in ("node_embedding", "skip_tp", "symmetric_contractions"))
                                  for n in record["kept"])
    # empp.weight 0: no auxiliary pass, no EMPP columns filled
    row = next(csv.DictReader((run / "metrics.csv").open()))
    assert row["empp_loss"] == "" and float(row["train_forces_loss"]) > 0


def test_pretraining_and_the_et_demo_do_not_inherit_the_demo_start():
    from empp_ff.train.config import DEMO_CONFIG, load_config

    demo = load_config(None, [])
    assert (demo.empp.pretrained, demo.empp.pretrained_reinit, demo.empp.weight) == ("geom-drugs-demo", ["elements"], 0)
    pre = load_config(None, ["task=pretrain", "data.path=unlabelled.h5"])
    assert (pre.empp.pretrained, pre.empp.pretrained_reinit, pre.empp.weight) == (None, [], 1.0)
    asked = load_config(None, ["task=pretrain", "data.path=unlabelled.h5", "empp.pretrained=geom-drugs-demo",
                               "empp.weight=2"])
    assert (asked.empp.pretrained, asked.empp.weight) == ("geom-drugs-demo", 2.0)
    assert DEMO_CONFIG["empp"]["weight"] == 0.0  # the demo itself is untouched
    # on the torchmd_et backbone (where that start was worse on the report set): EMPP as the
    # auxiliary loss from random weights, unless the start is asked for
    et = load_config(None, ["model.backbone=torchmd_et"])
    assert (et.empp.enabled, et.empp.pretrained, et.empp.pretrained_reinit, et.empp.weight) == (True, None, [], 1.0)
    asked = load_config(None, ["model.backbone=torchmd_et", "empp.pretrained=geom-drugs-demo", "empp.weight=0"])
    assert (asked.empp.pretrained, asked.empp.pretrained_reinit, asked.empp.weight) == ("geom-drugs-demo", [], 0.0)


def test_pretraining_needs_an_empp_weight():
    from empp_ff.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="empp.weight must be > 0"):
        load_config(None, ["task=pretrain", "empp.weight=0", "data.path=unlabelled.h5"])


@pytest.mark.slow
def test_pretrained_reinit_keeps_the_fresh_values_of_the_named_parts():
    from empp_ff.empp.config import EMPPConfig

    drug_like = (1, 6, 7, 8, 9, 16, 17)
    source = demo_potential(demo_spec(drug_like), seed=1, perturb=0.2)
    target = demo_potential(demo_spec((1, 6, 8)), seed=2, perturb=0.2)
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    patterns = EMPPConfig(pretrained_reinit=["elements"]).reinit_patterns()
    report = transfer_weights(source, target, drug_like, (1, 6, 8), keep=patterns)
    element_indexed = {n for n in before if any(p in n for p in ("node_embedding", "skip_tp", "symmetric_contr"))}
    assert element_indexed and set(report.kept) == element_indexed and report.by_element == []
    src = dict(source.named_parameters())
    for name, param in target.named_parameters():
        if name in element_indexed:
            assert torch.equal(param, before[name]), name
        else:  # everything else is the source's
            assert torch.equal(param, src[name]) and not torch.equal(param, before[name]), name


def test_pretrained_reinit_names_unknown_parts():
    from empp_ff.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"pretrained_reinit: unknown parts \['embeddings'\]; known: .*'embedding'"):
        load_config(None, ["empp.pretrained_reinit=[embeddings, readouts]"])


def test_pretrained_reinit_parts_are_the_backbones_own():
    """A part one backbone has and the chosen one lacks is refused before any work,
    with the chosen backbone's parts listed."""
    from empp_ff.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"the torchmd_et backbone has no parts \['skip'\]; its parts: "
                                          r"\['elements', 'embedding', 'interactions', 'readouts'\]"):
        load_config(None, ["model.backbone=torchmd_et", "empp.pretrained_reinit=[elements, skip]"])
    assert load_config(None, ["model.backbone=torchmd_et", "empp.pretrained_reinit=[elements]"]).empp.pretrained_reinit


def test_the_demo_with_another_architecture_names_the_bundled_start_and_the_way_out(tmp_path):
    from click.testing import CliRunner

    from empp_ff.cli import main

    sets = {"run_dir": tmp_path / "run", "data.n_train": 8, "data.n_val": 4, "data.n_test": 4,
            "model.num_channels": 16, "train.progress": False}
    result = CliRunner().invoke(main, ["train"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")])
    assert result.exit_code != 0
    assert "empp.pretrained=geom-drugs-demo (" in result.output and "model.num_channels: 32 in the checkpoint" \
        in result.output and "--set empp.pretrained=null" in result.output, result.output
    assert not (tmp_path / "run" / "checkpoints").exists()
