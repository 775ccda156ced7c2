"""The training loop: epochs of optimiser steps, validation, checkpoints.

The pieces around the loop have their own modules: ``data_setup`` (store,
splits, statistics), ``loaders`` (this rank's data loaders), ``resume`` (when a
run directory may be continued), ``finetune`` (weights from another run),
``tensorboard`` and ``report`` (metrics.csv columns, epoch lines, the final
test report).

Resumption is exact: everything random in epoch e is drawn from streams seeded by
(seed, e) (``train/replay.py``), and the checkpoint holds the model, optimiser,
schedule, EMA, metric history and the reference energies the run started with.
Re-running the same command on a run directory whose ``checkpoints/last.pt``
exists continues from the last completed epoch (a killed epoch is replayed from
its first batch) and ends where an uninterrupted run would, to the last digit on
CPU, also after kill -9 at any instant: ``train/rundir`` holds the run
directory's lock and write order.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from empp_ff._dtypes import torch_dtype
from empp_ff._faults import step_window
from empp_ff.empp.pretrained import initial_weights
from empp_ff.model.spec import BackboneSpec
from empp_ff.train.checkpoint import (
    Progress,
    read_progress,
    restore_training,
    start_atomic_energies,
    training_checkpoint,
)
from empp_ff.train.config import Config, ConfigError, dump_config
from empp_ff.train.data_setup import PreparedData, finite, prepare_data, with_recorded_data_path
from empp_ff.train.distributed import init_distributed
from empp_ff.train.ema import EMA
from empp_ff.train.energy_offset import refit_reference_energies
from empp_ff.train.epoch_stats import EpochStats, logged_keys
from empp_ff.train.evaluate import evaluate, validation_losses
from empp_ff.train.finetune import load_pretrained
from empp_ff.train.io import write_json
from empp_ff.train.loaders import Loaders
from empp_ff.train.metrics import ErrorAccumulator, supervised_loss
from empp_ff.train.objective import Objective
from empp_ff.train.replay import replayable_run, seed_global_generators
from empp_ff.train.report import METRIC_COLUMNS, epoch_line, final_report
from empp_ff.train.resume import check_resumable, interrupted_state
from empp_ff.train.rundir import RunDirectory
from empp_ff.train.schedule import LearningRateSchedule
from empp_ff.train.stopping import StopRule, selection_metric
from empp_ff.train.tensorboard import TensorBoardLog
from empp_ff.train.training_model import build_training_model


class Trainer:
    def __init__(self, cfg: Config, log: Callable[[str], None] = print):
        cfg = with_recorded_data_path(cfg)
        self.cfg = cfg
        self.dist, self.device = init_distributed(cfg.train.device)
        self.log = log if self.dist.is_main else (lambda msg: None)  # rank 0 alone reports
        self.run_dir = Path(cfg.run_dir)
        if cfg.train.batch_size % self.dist.world_size:
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size} must be divisible by the number of "
                f"processes ({self.dist.world_size}): it is the global batch"
            )
        self.dtype = torch_dtype(cfg.model.dtype)
        self.history: List[Dict[str, Any]] = []
        self.epoch = 0
        self.step = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.stop_best = (math.inf, 0)  # (metric, epoch) of the last improvement by train.min_improvement
        self.wall_offset = 0.0
        self.stop_rule = StopRule(cfg.train.max_epochs, cfg.train.patience, cfg.train.min_improvement)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        resume_state = self._prepare_data()
        self._build_model(resume_state)
        self.train_set = self.loaders.dataset("train")
        self.val_set = self.loaders.dataset("val")
        self._build_optimiser()
        if resume_state is not None:
            self._restore(resume_state)
            if not self._stopped():
                self.log(f"resuming {self.run_dir} after epoch {self.epoch}")
        elif (start := initial_weights(self.cfg.finetune_from, self.cfg.empp, self.cfg.model.backbone)) is not None:
            self._load_pretrained(*start)
        if not self._stopped():
            self.rundir.discard_result()  # a test_metrics.json of fewer epochs is not this run's result

    def _prepare_data(self) -> Optional[Dict[str, Any]]:
        """Run directory, data and splits; returns the state of an interrupted run, if any."""
        cfg, main = self.cfg, self.dist.is_main
        self.rundir = RunDirectory(self.run_dir, main, self.log).open()  # lock, leftover clean-up
        self.dist.barrier()
        resume_state = interrupted_state(self.run_dir)
        if resume_state is not None:
            self._check_resumable(resume_state)
        if main:  # rank 0 converts the data and writes the splits; the others then read them
            dump_config(cfg, self.run_dir / "config.yaml")
            self.data: PreparedData = prepare_data(cfg, self.run_dir, self.log, resuming=resume_state is not None)
        self.dist.barrier()
        if not main:
            self.data = prepare_data(cfg, self.run_dir, self.log, write=False)
        self.supervised = cfg.task == "supervised" and self.data.store.has_energy
        if cfg.task == "supervised" and not self.data.store.has_energy:
            if not cfg.empp.trains:
                raise ConfigError(
                    f"{self.data.source_path} has no energy labels: set task: pretrain, empp.enabled: true "
                    "and empp.weight > 0 for self-supervised pre-training"
                )
            self.log("the data have no energy labels: training with EMPP alone (self-supervised)")
        self.has_forces = self.data.store.has_forces and not cfg.data.energy_only
        self.train_forces = self.supervised and self.has_forces and cfg.loss.forces_weight > 0
        return resume_state

    def _build_model(self, resume_state: Optional[Dict[str, Any]]) -> None:
        # The one architecture object: the model and the data graphs share its r_max.
        self.spec = BackboneSpec.from_dict(resume_state["backbone_spec"]) if resume_state else self._backbone_spec()
        # The reference energies the run started with (the spec's are refitted after every epoch).
        self.start_energies = start_atomic_energies(resume_state, self.spec)
        self.model, self.step_model = build_training_model(self.cfg, self.spec, self.label_stats(), self.device,
                                                           self.dist, start_energies=self.start_energies)
        self.scale = float(self.spec.scale)
        self.loaders = Loaders(self.cfg, self.dist, self.device, self.data, self.spec.r_max, self.dtype,
                               self.has_forces)
        self.replay = None  # EMPP replay's endless batches (empp.replay_data)
        if self.cfg.empp.replays and self.supervised:
            from empp_ff.train.empp_replay import replay_stream

            self.replay = replay_stream(self.cfg, self.dist, self.run_dir, self.data.species, self.spec.r_max,
                                        self.dtype, self.loaders.rank_batch_size, self.log)

    def _build_optimiser(self) -> None:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        steps_per_epoch = max(1, len(self.loaders.loader(self.train_set, train=True, epoch=0)))
        t = cfg.train
        self.scheduler = LearningRateSchedule(
            self.optimizer, t.scheduler, warmup_steps=round(t.warmup_epochs * steps_per_epoch),
            total_steps=t.max_epochs * steps_per_epoch, min_ratio=t.min_lr_ratio, plateau_factor=t.plateau_factor,
            plateau_patience=t.plateau_patience, plateau_min_ratio=t.plateau_min_lr_ratio,
            plateau_threshold=t.min_improvement if t.plateau_min_improvement is None else t.plateau_min_improvement,
        )
        self.ema = EMA(self.model, cfg.train.ema_decay) if cfg.train.ema else None
        self.objective = Objective(self.model, self.step_model, cfg, self.scale, cfg.train.max_epochs * steps_per_epoch,
                                   self.supervised, self.train_forces)

    def _backbone_spec(self) -> BackboneSpec:
        """Architecture from ``model:``, chemistry and output scale from the training data."""
        d = self.data
        return BackboneSpec(
            atomic_numbers=d.species,
            atomic_energies=[d.e0s[z] for z in d.species],
            avg_num_neighbors=finite(d.statistics.get("avg_num_neighbors"), 1.0),
            scale=finite(d.statistics.get("rms_forces"), 1.0),
            shift=finite(d.statistics.get("mean_interaction_energy_per_atom"), 0.0) if self.supervised else 0.0,
            **self.cfg.model.architecture(),
        )

    def label_stats(self) -> Dict[str, float]:
        s = self.data.statistics
        return {
            "energy_per_atom_mean": finite(s.get("mean_interaction_energy_per_atom"), 0.0),
            "energy_per_atom_std": finite(s.get("interaction_energy_per_atom_std"), 1.0),
            "force_scale": finite(s.get("rms_force_component"), 1.0),
        }

    def _check_resumable(self, state: Dict[str, Any]) -> None:
        epochs = int(state["epoch"])
        check_resumable(state["config"], self.cfg, self.run_dir, epochs,
                        finished=self.rundir.finished_result(epochs) is not None)

    def _load_pretrained(self, key: str, target: str) -> None:
        reinit = self.cfg.empp.reinit_patterns(self.cfg.model.backbone) if key == "empp.pretrained" else ()
        given = self.cfg.empp.pretrained if key == "empp.pretrained" else None
        record = load_pretrained(self.model, target, key, reinit, given)
        if self.ema is not None:  # average the loaded weights, not the fresh ones
            self.ema = EMA(self.model, self.cfg.train.ema_decay)
        write_json(self.run_dir / "finetune.json", record)
        self.log(f"fine-tuning from {record['checkpoint']}: {len(record['loaded'])} tensors loaded, "
                 f"{len(record['loaded_by_element'])} by atomic number; elements new to the model: "
                 f"{record['new_elements'] or 'none'} (see finetune.json)")

    # ------------------------------------------------------------------ state
    def _state(self) -> Dict[str, Any]:
        progress = Progress(self.epoch, self.step, self.best_val, self.best_epoch, self.stop_best, self.history,
                            self.wall_offset)
        return training_checkpoint(config=self.cfg.to_dict(), model=self.model, start_energies=self.start_energies,
                                   optimizer=self.optimizer, scheduler=self.scheduler, ema=self.ema,
                                   progress=progress, label_stats=self.label_stats(),
                                   statistics=self.data.statistics, splits=self.data.splits)

    def _restore(self, state: Dict[str, Any]) -> None:
        restore_training(state, self.model, self.optimizer, self.scheduler, self.ema)
        p = read_progress(state, lambda history: self.stop_rule.best_epoch_of(history, self.supervised))
        self.epoch, self.step, self.best_val, self.best_epoch = p.epoch, p.step, p.best_val, p.best_epoch
        self.stop_best, self.history, self.wall_offset = p.stop_best, p.history, p.wall_time_s

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        from empp_ff.data.dataset import epoch_generator

        self.model.train()
        seed_global_generators(self.cfg.seed, epoch, self.dist.rank)
        loader = self.loaders.loader(self.train_set, train=True, epoch=epoch)
        # EMPP masks: replayable after a resume, and different on every rank.
        mask_generator = epoch_generator(self.cfg.seed + 7919 + 104729 * self.dist.rank, epoch)
        errors = ErrorAccumulator()
        stats = EpochStats(logged_keys(self.model, self.supervised, bool(self.cfg.train.grad_norm_every),
                                       replay=self.replay is not None))
        replay = self.replay.epoch(epoch) if self.replay is not None else None
        bar = None
        if self.cfg.train.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{self.cfg.train.max_epochs}",
                       leave=False, dynamic_ncols=True)
        for batch in loader:
            step_window(self.step)
            batch = batch.to(self.device)
            replay_batch = next(replay).to(self.device) if replay is not None else None
            losses, terms, out = self.objective.losses(batch, mask_generator, self.step, replay_batch)
            if not torch.isfinite(losses["loss"]):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch + 1}, step {self.step}: {losses['loss'].item()} "
                    "(lower train.lr or check the data)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            every = self.cfg.train.grad_norm_every
            measured = self.objective.gradient_norms(losses, terms) if every and self.step % every == 0 else {}
            self.objective.backward(losses, terms)
            if self.cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update()
            self.step += 1
            stats.add({**{k: v.item() for k, v in losses.items()}, **measured})
            if self.supervised:
                errors.add({k: v.detach() for k, v in out.items() if k in ("energy", "forces")}, batch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss'].item():.4g}")
        if bar is not None:
            bar.close()
        result = stats.means(self.dist, self.device)
        if self.supervised:
            errors.all_reduce(self.dist, self.device)
            summary = errors.summary()
            result["train_energy_mae_mev"] = summary["energy_mae_mev"]
            result["train_forces_mae_mev_per_a"] = summary["forces_mae_mev_per_a"]
        return result

    def validate(self) -> Dict[str, float]:
        result: Dict[str, float] = {}
        context = self.ema.applied() if self.ema is not None else contextlib.nullcontext()
        with context:
            if self.supervised and self.cfg.train.refit_e0s:
                refit_reference_energies(self.model.potential, self.loaders.refit_loader(), self.device)
            if self.supervised:
                loader = self.loaders.loader(self.val_set, train=False)
                # val_loss is the training objective on the validation split, as train_loss is on the training one
                metrics, _ = evaluate(self.model.potential, loader, self.device, dist=self.dist,
                                      loss_fn=lambda pred, batch: supervised_loss(pred, batch, self.cfg.loss,
                                                                                  self.scale)["loss"])
                result.update({f"val_{k}": v for k, v in metrics.items() if k != "n_structures"})
            for aux in self.model.auxiliaries:
                result.update(validation_losses(self.model, aux, self.loaders.loader(self.val_set, train=False),
                                                self.cfg.seed, self.supervised, self.device, self.dist))
        progress = self.step / self.objective.total_steps
        for aux in self.model.auxiliaries:  # with each weight as scheduled at this step
            if aux.counts_in_val_loss:
                loss = result[aux.validation_columns()[0]]
                result["val_loss"] = result.get("val_loss", 0.0) + aux.weighted(loss, aux.config.factor(progress))
        if self.supervised:
            # Model selection as in Equiformer's MD17 protocol: weighted MAEs.
            e = result["val_energy_per_atom_mae_mev"]
            f = result["val_forces_mae_mev_per_a"] if self.train_forces else 0.0
            f = f if math.isfinite(f) else 0.0
            result["val_weighted_mae"] = self.cfg.loss.energy_weight * e + self.cfg.loss.forces_weight * f
        return result

    # ------------------------------------------------------------------ main
    def fit(self) -> Dict[str, Any]:
        cfg = self.cfg
        tensorboard = TensorBoardLog(self.run_dir, cfg.train.tensorboard and self.dist.is_main, self.epoch + 1,
                                     self.log)
        start = time.perf_counter() - self.wall_offset
        try:
            while not self._stopped():
                row = {"epoch": self.epoch + 1}
                row.update(self.train_epoch(self.epoch))
                row.update(self.validate())
                self.epoch += 1
                self.wall_offset = time.perf_counter() - start
                row.update(step=self.step, lr=self.optimizer.param_groups[0]["lr"], wall_time_s=self.wall_offset)
                self.history.append(row)
                selection = row[selection_metric(self.supervised)]
                improved = selection < self.best_val or not math.isfinite(self.best_val)
                if improved:
                    self.best_val, self.best_epoch = selection, self.epoch
                if self.stop_rule.improves(selection, self.stop_best[0]):
                    self.stop_best = (selection, self.epoch)
                if self.scheduler.epoch_end(selection):
                    self.log(f"validation plateau: learning rate lowered to {self.optimizer.param_groups[0]['lr']:.2e}")
                self._save(improved)
                tensorboard.write(row, self.epoch)
                self.log(epoch_line(row, improved, cfg.train.max_epochs, self.supervised))
            self.log(self.stop_rule.summary(self.epoch, self.best_epoch, self.stop_best[1]))
        finally:
            tensorboard.close()
        return self.finish()

    def _stopped(self) -> bool:
        return self.stop_rule.stopped(self.epoch, self.stop_best[1])

    def _save(self, improved: bool) -> None:
        """Rank 0 writes best.pt (when ``improved``), metrics.csv, then last.pt (train/rundir/protocol.py)."""
        if self.dist.is_main:
            self.rundir.commit_epoch(self._state(), improved, self.history, METRIC_COLUMNS)
        self.dist.barrier()

    def finish(self) -> Dict[str, Any]:
        """Evaluate the best checkpoint on the test split; write plots and test_metrics.json."""
        if not self.dist.is_main:  # rank 0 alone evaluates the test set and reports
            return {}
        has_test = len(self.data.splits["test"]) > 0
        test_set = self.loaders.dataset("test") if self.supervised and has_test else None
        return final_report(self.rundir, self.history, test_set, trained_epochs=self.epoch,
                            stopping=self.stop_rule.record(self.epoch, self.best_epoch, self.wall_offset,
                                                           self.stop_best[1]),
                            supervised=self.supervised, potential=self.model.potential,
                            batch_size=self.cfg.train.eval_batch_size, device=self.device,
                            progress=self.cfg.train.progress, log=self.log)


def run_training(cfg: Config, log: Callable[[str], None] = print) -> Dict[str, Any]:
    previous_threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    trainer = None
    try:
        trainer = Trainer(cfg, log)
        with replayable_run(trainer.device):
            trainer.setup()
            return trainer.fit()
    finally:
        torch.set_num_threads(previous_threads)
        if trainer is not None:
            if hasattr(trainer, "rundir"):
                trainer.rundir.close()
            trainer.dist.shutdown()
