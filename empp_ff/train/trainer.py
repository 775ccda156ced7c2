"""The training loop: set-up, epochs, validation, checkpoints, resume, final report.

Resumption is exact: the data order and the EMPP masks of epoch e come from
generators seeded by (seed, e), and the checkpoint holds the model, optimiser,
schedule, EMA and metric history. Re-running the same command on a run
directory whose ``checkpoints/last.pt`` exists continues from the last completed
epoch (also after kill -9: checkpoints are written atomically) and ends where an
uninterrupted run would.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch

from empp_ff._dtypes import torch_dtype
from empp_ff.model.backbone import build_backbone
from empp_ff.model.potential import Potential
from empp_ff.model.spec import BackboneSpec
from empp_ff.train.checkpoint import load_checkpoint, save_checkpoint
from empp_ff.train.config import Config, ConfigError, dump_config
from empp_ff.train.data_setup import PreparedData, finite, prepare_data
from empp_ff.train.distributed import EpochShardSampler, init_distributed, reduce_mean_dict
from empp_ff.train.ema import EMA
from empp_ff.train.evaluate import evaluate, format_error_table
from empp_ff.train.io import write_csv, write_json
from empp_ff.train.metrics import ErrorAccumulator, supervised_loss
from empp_ff.train.schedule import warmup_cosine
from empp_ff.train.training_model import TrainingModel

METRIC_COLUMNS = [
    "epoch", "step", "lr", "wall_time_s",
    "train_loss", "train_energy_loss", "train_forces_loss",
    "empp_loss", "empp_radius_kl", "empp_direction_kl",
    "train_energy_mae_mev", "train_forces_mae_mev_per_a",
    "val_loss", "val_energy_mae_mev", "val_energy_rmse_mev",
    "val_forces_mae_mev_per_a", "val_forces_rmse_mev_per_a",
    "val_empp_loss", "val_empp_radius_kl", "val_empp_direction_kl",
]

# Config keys that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"train.max_epochs", "train.progress", "train.device", "train.threads",
                      "train.tensorboard", "data.num_workers"}


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("e0s",):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a clear error for unusable CUDA."""
    from empp_ff.train.distributed import _device

    return _device(name, None)


class Trainer:
    def __init__(self, cfg: Config, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.dist, self.device = init_distributed(cfg.train.device)
        self.log = log if self.dist.is_main else (lambda msg: None)  # rank 0 alone reports
        self.run_dir = Path(cfg.run_dir)
        if cfg.train.batch_size % self.dist.world_size:
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size} must be divisible by the number of "
                f"processes ({self.dist.world_size}): it is the global batch"
            )
        self.rank_batch_size = cfg.train.batch_size // self.dist.world_size
        self.dtype = torch_dtype(cfg.model.dtype)
        self.history: List[Dict[str, Any]] = []
        self.epoch = 0
        self.step = 0
        self.best_val = math.inf
        self.wall_offset = 0.0

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        cfg = self.cfg
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        last = self.run_dir / "checkpoints" / "last.pt"
        resume_state = load_checkpoint(last) if last.exists() else None
        if resume_state is not None:
            self._check_resumable(resume_state["config"])
        if main:  # rank 0 converts the data and writes the splits; the others then read them
            dump_config(cfg, self.run_dir / "config.yaml")
            self.data: PreparedData = prepare_data(cfg, self.run_dir, self.log)
        self.dist.barrier()
        if not main:
            self.data = prepare_data(cfg, self.run_dir, self.log, write=False)
        self.supervised = cfg.task == "supervised" and self.data.store.has_energy
        if cfg.task == "supervised" and not self.data.store.has_energy:
            if not cfg.empp.enabled:
                raise ConfigError(
                    f"{self.data.source_path} has no energy labels: set task: pretrain and empp.enabled: true "
                    "for self-supervised pre-training"
                )
            self.log("the data have no energy labels: training with EMPP alone (self-supervised)")
        self.has_forces = self.data.store.has_forces and not cfg.data.energy_only
        self.train_forces = self.supervised and self.has_forces and cfg.loss.forces_weight > 0

        torch.manual_seed(cfg.seed)  # weight initialisation
        if resume_state is not None:
            spec = BackboneSpec.from_dict(resume_state["backbone_spec"])
        else:
            spec = self._backbone_spec()
        self.spec = spec  # the one architecture object: the model and the data graphs share its r_max
        potential = Potential(build_backbone(spec))
        empp = self._build_empp(potential) if cfg.empp.enabled else None
        self.model = TrainingModel(potential, empp).to(self.device)
        self.step_model = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # EMPP's force encoder is idle on batches without forces: allow unused parameters.
            self.step_model = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=empp is not None,
            )
        self.scale = float(spec.scale)

        self.train_set = self._dataset("train")
        self.val_set = self._dataset("val")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        steps_per_epoch = max(1, len(self._loader(self.train_set, shuffle=True, epoch=0, train=True)))
        self.scheduler = warmup_cosine(
            self.optimizer,
            warmup_steps=round(cfg.train.warmup_epochs * steps_per_epoch),
            total_steps=cfg.train.max_epochs * steps_per_epoch,
            min_ratio=cfg.train.min_lr_ratio,
        )
        self.ema = EMA(self.model, cfg.train.ema_decay) if cfg.train.ema else None

        if resume_state is not None:
            self._restore(resume_state)
            self.log(f"resuming {self.run_dir} after epoch {self.epoch}")
        elif cfg.finetune_from:
            self._load_pretrained(cfg.finetune_from)

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

    def _build_empp(self, potential: Potential):
        from empp_ff.empp.module import EMPPModule

        # Built in the backbone dtype; its label statistics stay float64 buffers.
        return EMPPModule(self.cfg.empp, potential.backbone, self.label_stats())

    def _dataset(self, split: str):
        from empp_ff.data.dataset import GraphDataset

        return GraphDataset(self.data.store, self.data.splits[split], self.spec.r_max, dtype=self.dtype,
                            use_forces=self.has_forces)

    def _loader(self, dataset, shuffle: bool, epoch: int, train: bool):
        """This rank's loader: training batches are 1/W of the global batch and
        padded to equal length over ranks; evaluation shards are not padded."""
        from torch_geometric.loader import DataLoader

        cfg, d = self.cfg, self.dist
        common = dict(num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda",
                      persistent_workers=False)
        if train and cfg.train.max_atoms_per_batch:
            from empp_ff.data.batching import make_budget_loader

            return make_budget_loader(dataset, cfg.train.max_atoms_per_batch, shuffle=shuffle, seed=cfg.seed,
                                      epoch=epoch, num_workers=cfg.data.num_workers,
                                      num_replicas=d.world_size, rank=d.rank)
        sampler = EpochShardSampler(len(dataset), cfg.seed, epoch, d.rank, d.world_size,
                                    shuffle=shuffle, pad=train)
        batch_size = self.rank_batch_size if train else cfg.train.eval_batch_size
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **common)

    def _check_resumable(self, saved: Dict[str, Any]) -> None:
        # A key that did not exist when the run started (newer empp-ff) had its default then.
        defaults = _flatten(Config().to_dict())
        old, new = {**defaults, **_flatten(saved)}, _flatten(self.cfg.to_dict())
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in _RESUMABLE_CHANGES)
        if changed:
            details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:8])
            raise ConfigError(
                f"{self.run_dir} holds an interrupted run with a different config ({details}). "
                "Resume with the same config, or choose another run_dir."
            )

    # ------------------------------------------------------------------ state
    def _state(self) -> Dict[str, Any]:
        potential = self.model.potential
        ema_potential = None
        if self.ema is not None:
            averaged = self.ema.averaged_state_dict()
            ema_potential = {k[len("potential."):]: v for k, v in averaged.items() if k.startswith("potential.")}
        return {
            "config": self.cfg.to_dict(),
            "backbone_spec": potential.backbone.spec.to_dict(),
            "potential_state": potential.state_dict(),
            "ema_potential_state": ema_potential,
            "empp_state": self.model.empp.state_dict() if self.model.empp is not None else None,
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "ema_state": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "best_val": self.best_val,
            "val_metrics": self.history[-1] if self.history else {},
            "history": self.history,
            "wall_time_s": self.wall_offset,
            "label_stats": self.label_stats(),
            "statistics": self.data.statistics,
            "splits_sizes": {k: int(len(v)) for k, v in self.data.splits.items()},
        }

    def _restore(self, state: Dict[str, Any]) -> None:
        self.model.potential.load_state_dict(state["potential_state"])
        if self.model.empp is not None and state.get("empp_state") is not None:
            self.model.empp.load_state_dict(state["empp_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.scheduler.load_state_dict(state["scheduler_state"])
        if self.ema is not None and state.get("ema_state") is not None:
            self.ema.load_state_dict(state["ema_state"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.best_val = float(state["best_val"])
        self.history = list(state.get("history", []))
        self.wall_offset = float(state.get("wall_time_s", 0.0))

    def _load_pretrained(self, target: str) -> None:
        """Fine-tuning: copy backbone (and EMPP) weights whose names and shapes match.

        Data-dependent buffers (E0s, scale/shift) and anything whose shape differs
        (e.g. element tables when the species differ) keep their fresh values.
        """
        state = load_checkpoint(target)
        source = state.get("ema_potential_state") or state["potential_state"]
        own = self.model.potential.state_dict()
        skip_buffers = ("atomic_energies_fn.", "scale_shift.")
        loaded, reinitialised = [], []
        for name, value in own.items():
            src = source.get(name)
            if src is not None and src.shape == value.shape and not any(s in name for s in skip_buffers):
                own[name] = src.to(value.dtype)
                loaded.append(name)
            else:
                reinitialised.append(name)
        self.model.potential.load_state_dict(own)
        empp_loaded: List[str] = []
        if self.model.empp is not None and state.get("empp_state"):
            empp_own = self.model.empp.state_dict()
            for name, value in empp_own.items():
                src = state["empp_state"].get(name)
                if src is not None and src.shape == value.shape and "label" not in name:
                    empp_own[name] = src.to(value.dtype)
                    empp_loaded.append(name)
            self.model.empp.load_state_dict(empp_own)
        if self.ema is not None:
            self.ema = EMA(self.model, self.cfg.train.ema_decay)
        record = {
            "finetune_from": str(target), "checkpoint": state["path"],
            "loaded": loaded, "reinitialised": reinitialised, "empp_loaded": empp_loaded,
            "source_task": state["config"].get("task"),
        }
        write_json(self.run_dir / "finetune.json", record)
        self.log(f"fine-tuning from {state['path']}: {len(loaded)} tensors loaded, "
                 f"{len(reinitialised)} re-initialised (see finetune.json)")

    # ------------------------------------------------------------------ epochs
    def _batch_losses(self, batch, generator) -> Dict[str, torch.Tensor]:
        out = self.step_model(batch, supervised=self.supervised, compute_forces=self.train_forces,
                         generator=generator, use_labels=self.supervised)
        losses: Dict[str, torch.Tensor] = {}
        total = batch.positions.new_zeros(())
        if self.supervised:
            sup = supervised_loss(out, batch, self.cfg.loss, self.scale)
            total = total + sup["loss"]
            losses.update(energy_loss=sup["energy_loss"], forces_loss=sup["forces_loss"])
        if "empp_loss" in out:
            total = total + self.cfg.empp.weight * out["empp_loss"]
            losses.update(empp_loss=out["empp_loss"], empp_radius_kl=out["empp_radius_kl"],
                          empp_direction_kl=out["empp_direction_kl"])
        losses["loss"] = total
        return losses, out

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        from empp_ff.data.dataset import epoch_generator

        self.model.train()
        loader = self._loader(self.train_set, shuffle=True, epoch=epoch, train=True)
        # EMPP masks: replayable after a resume, and different on every rank.
        mask_generator = epoch_generator(self.cfg.seed + 7919 + 104729 * self.dist.rank, epoch)
        errors = ErrorAccumulator()
        sums: Dict[str, float] = {}
        count = 0
        bar = None
        if self.cfg.train.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{self.cfg.train.max_epochs}",
                       leave=False, dynamic_ncols=True)
        for batch in loader:
            batch = batch.to(self.device)
            losses, out = self._batch_losses(batch, mask_generator)
            if not torch.isfinite(losses["loss"]):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch + 1}, step {self.step}: {losses['loss'].item()} "
                    "(lower train.lr or check the data)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if self.cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update()
            self.step += 1
            count += 1
            losses = {k: v.detach() for k, v in losses.items()}
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            if self.supervised:
                errors.add({k: v.detach() for k, v in out.items() if k in ("energy", "forces")}, batch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss'].item():.4g}")
        if bar is not None:
            bar.close()
        means = reduce_mean_dict(self.dist, sums, count, self.device)
        result = {("train_" + k if not k.startswith("empp") else k): v for k, v in means.items()}
        if self.supervised:
            errors.all_reduce(self.dist, self.device)
            summary = errors.summary()
            result["train_energy_mae_mev"] = summary["energy_mae_mev"]
            result["train_forces_mae_mev_per_a"] = summary["forces_mae_mev_per_a"]
        return result

    def _val_empp(self) -> Dict[str, float]:
        from empp_ff.data.dataset import epoch_generator

        generator = epoch_generator(self.cfg.seed + 104729, 0)  # same masks every epoch
        sums, count = {}, 0
        self.model.eval()
        loader = self._loader(self.val_set, shuffle=False, epoch=0, train=False)
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(self.device)
                out = self.model.empp(self.model.potential.backbone, batch, generator, use_labels=self.supervised)
                for k in ("loss", "radius_kl", "direction_kl"):
                    sums[k] = sums.get(k, 0.0) + float(out[k])
                count += 1
        return {f"val_empp_{k}": v for k, v in reduce_mean_dict(self.dist, sums, count, self.device).items()}

    def validate(self) -> Dict[str, float]:
        result: Dict[str, float] = {}
        context = self.ema.applied() if self.ema is not None else _nullcontext()
        with context:
            if self.supervised:
                loader = self._loader(self.val_set, shuffle=False, epoch=0, train=False)
                metrics, _ = evaluate(self.model.potential, loader, self.device, dist=self.dist)
                result.update({f"val_{k}": v for k, v in metrics.items() if k != "n_structures"})
            if self.model.empp is not None:
                result.update(self._val_empp())
        if self.supervised:
            # Model selection as in Equiformer's MD17 protocol: weighted MAEs.
            e = result["val_energy_per_atom_mae_mev"]
            f = result["val_forces_mae_mev_per_a"] if self.train_forces else 0.0
            result["val_loss"] = self.cfg.loss.energy_weight * e + self.cfg.loss.forces_weight * (f if math.isfinite(f) else 0.0)
        else:
            result["val_loss"] = result.get("val_empp_loss", float("nan"))
        return result

    # ------------------------------------------------------------------ main
    def fit(self) -> Dict[str, Any]:
        cfg = self.cfg
        writer = self._tensorboard()
        start = time.perf_counter() - self.wall_offset
        try:
            while self.epoch < cfg.train.max_epochs:
                row = {"epoch": self.epoch + 1}
                row.update(self.train_epoch(self.epoch))
                row.update(self.validate())
                self.epoch += 1
                self.wall_offset = time.perf_counter() - start
                row.update(step=self.step, lr=self.optimizer.param_groups[0]["lr"], wall_time_s=self.wall_offset)
                self.history.append(row)
                improved = row["val_loss"] < self.best_val or not math.isfinite(self.best_val)
                if improved:
                    self.best_val = row["val_loss"]
                if self.dist.is_main:
                    state = self._state()
                    save_checkpoint(state, self.run_dir / "checkpoints" / "last.pt")
                    if improved:
                        save_checkpoint(state, self.run_dir / "checkpoints" / "best.pt")
                    write_csv(self.run_dir / "metrics.csv", self.history, METRIC_COLUMNS)
                self.dist.barrier()
                if writer is not None:
                    for key, value in row.items():
                        if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                            writer.add_scalar(key, value, self.epoch)
                    writer.flush()
                self.log(self._epoch_line(row, improved))
        finally:
            if writer is not None:
                writer.close()
        return self.finish()

    def _tensorboard(self):
        if not self.cfg.train.tensorboard or not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but do not fail a run over logging
            self.log("tensorboard is not installed: no TensorBoard logs")
            return None
        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=self.epoch + 1)

    def _epoch_line(self, row: Dict[str, Any], improved: bool) -> str:
        parts = [f"epoch {row['epoch']:>4}/{self.cfg.train.max_epochs}", f"lr {row['lr']:.2e}"]
        if self.supervised:
            parts += [f"val E MAE {row['val_energy_mae_mev']:.1f} meV",
                      f"F MAE {row['val_forces_mae_mev_per_a']:.1f} meV/Å"]
        if "empp_loss" in row:
            parts.append(f"EMPP {row['empp_loss']:.3f} (val {row.get('val_empp_loss', float('nan')):.3f})")
        parts.append(f"{row['wall_time_s']:.0f} s")
        return "  ".join(parts) + ("  *" if improved else "")

    def finish(self) -> Dict[str, Any]:
        """Evaluate the best checkpoint on the test split; write plots and test_metrics.json."""
        from empp_ff.train.checkpoint import build_potential
        from empp_ff.train.plots import learning_curves, parity_plots

        if not self.dist.is_main:  # rank 0 alone evaluates the test set and reports
            return {}
        plots = self.run_dir / "plots"
        if self.history:
            learning_curves(self.history, plots)
        best = load_checkpoint(self.run_dir / "checkpoints" / "best.pt")
        result: Dict[str, Any] = {"checkpoint": "checkpoints/best.pt", "epoch": int(best["epoch"]),
                                  "ema": best.get("ema_potential_state") is not None}
        test_idx = self.data.splits.get("test", np.zeros(0, dtype=np.int64))
        if self.supervised and len(test_idx):
            potential = build_potential(best, use_ema=True).to(self.device)
            from empp_ff.data.dataset import GraphDataset

            test_set = GraphDataset(self.data.store, test_idx, potential.r_max, dtype=self.dtype,
                                    use_forces=self.has_forces)
            from torch_geometric.loader import DataLoader

            loader = DataLoader(test_set, batch_size=self.cfg.train.eval_batch_size, shuffle=False)
            metrics, acc = evaluate(potential, loader, self.device, keep_predictions=True,
                                    progress=self.cfg.train.progress, desc="test")
            parity_plots(acc.stacked_predictions(), plots)
            result.update(metrics)
            result["per_element_forces_mae_mev_per_a"] = acc.per_element()
            self.log(format_error_table(metrics, acc.per_element(), title=f"Test set ({self.run_dir})"))
        elif self.history:
            result.update({k: v for k, v in best.get("val_metrics", {}).items() if k.startswith("val_empp")})
            self.log(f"self-supervised run: best val EMPP loss {self.best_val:.4f}")
        write_json(self.run_dir / "test_metrics.json", result)
        return result


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def run_training(cfg: Config, log: Callable[[str], None] = print) -> Dict[str, Any]:
    previous_threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    trainer = None
    try:
        trainer = Trainer(cfg, log)
        trainer.setup()
        return trainer.fit()
    finally:
        torch.set_num_threads(previous_threads)
        if trainer is not None:
            trainer.dist.shutdown()
