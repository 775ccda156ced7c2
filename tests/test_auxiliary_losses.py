"""The AuxiliaryLoss interface: what training derives from each auxiliary loss (issue 27)."""

from __future__ import annotations

from empp_ff.train.auxiliaries import KNOWN, run_auxiliaries
from empp_ff.train.config import load_config
from empp_ff.train.report import METRIC_COLUMNS

#: metrics.csv's columns are a public contract: names are added, never renamed or dropped.
CONTRACT_COLUMNS = {
    "epoch", "step", "lr", "wall_time_s", "train_loss", "train_energy_loss", "train_forces_loss",
    "empp_loss", "empp_radius_kl", "empp_direction_kl", "train_energy_mae_mev", "train_forces_mae_mev_per_a",
    "val_loss", "val_energy_mae_mev", "val_energy_rmse_mev", "val_forces_mae_mev_per_a",
    "val_forces_rmse_mev_per_a", "val_empp_loss", "val_empp_radius_kl", "val_empp_direction_kl",
    "denoise_loss", "val_denoise_loss", "replay_empp_loss", "grad_norm_energy", "grad_norm_forces",
    "grad_norm_empp", "grad_norm_denoise", "grad_cos_forces_empp", "grad_cos_forces_denoise", "val_weighted_mae",
}


def test_metrics_columns_keep_their_names_and_come_from_the_auxiliaries():
    assert set(METRIC_COLUMNS) == CONTRACT_COLUMNS and len(METRIC_COLUMNS) == len(CONTRACT_COLUMNS)
    for kind in KNOWN:
        assert set(kind.outputs) | set(kind.validation_columns()) <= set(METRIC_COLUMNS)
        assert {f"grad_norm_{kind.name}", f"grad_cos_forces_{kind.name}"} <= set(METRIC_COLUMNS)


def test_a_config_turns_on_the_auxiliaries_whose_modules_it_trains():
    names = lambda sets: [a.name for a in run_auxiliaries(load_config(None, sets))]  # noqa: E731
    base = ["empp.pretrained=null", "empp.pretrained_reinit=[]"]
    assert names(base + ["empp.enabled=false"]) == []
    assert names(base + ["empp.enabled=true", "empp.weight=1", "aux.denoise.enabled=true"]) == ["empp", "denoise"]
    # EMPP at weight 0 without replay keeps only its pre-trained start: no module, no term
    assert names(base + ["empp.enabled=true", "empp.weight=0"]) == []
    cfg = load_config(None, base)
    assert [kind.section(cfg) for kind in KNOWN] == [cfg.empp, cfg.aux.denoise]
