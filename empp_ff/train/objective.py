"""The training objective of one optimiser step, and its backward pass.

loss = supervised (energy + forces) + Σ_aux λ_aux · f_aux(progress) · L_aux [+ EMPP replay]

for the auxiliary losses the model carries (:class:`~empp_ff.auxiliary.loss.AuxiliaryLoss`:
EMPP, coordinate denoising), each with its :class:`~empp_ff.auxiliary.weighting.AuxWeighting`
(weight, schedule, gradient balancing, batch fraction). With ``grad_balance`` α set, the auxiliary's gradient on
the backbone is rescaled to α · f · ‖supervised gradient‖ (its own head and encoders
keep λ · f · their gradient), which needs one backward pass per balanced term; the
passes share no graph, so the cost equals one combined backward.

``gradient_norms`` measures what each term contributes: the norm of its gradient on
the backbone parameters, and the cosine between the force gradient and each
auxiliary's (diagnostics, ``train.grad_norm_every``).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from empp_ff.train.empp_replay import REPLAY_LOSS, REPLAY_TERM
from empp_ff.train.metrics import supervised_loss

#: The supervised loss's parts whose gradients ``gradient_norms`` measures apart.
SUPERVISED_PARTS = ("energy", "forces")


def grad_norm_key(term: str) -> str:
    """The per-step value (metrics.csv column) of the norm of ``term``'s gradient on the backbone."""
    return f"grad_norm_{term}"


def grad_cos_key(term: str) -> str:
    """The per-step value of the cosine between the force gradient and ``term``'s."""
    return f"grad_cos_forces_{term}"


class Objective:
    def __init__(self, model, step_model, cfg, scale: float, total_steps: int, supervised: bool,
                 train_forces: bool):
        self.model = model  # TrainingModel (parameters, modules)
        self.step_model = step_model  # what runs the step (the model, or its DDP wrapper)
        self.cfg = cfg
        self.scale = scale
        self.total_steps = max(1, int(total_steps))
        self.supervised = supervised
        self.train_forces = train_forces
        # The auxiliaries that are terms of the objective (EMPP at weight 0 trains by replay only).
        self.auxiliaries = {aux.name: aux for aux in model.auxiliaries if aux.enters_objective}

    @property
    def weighting(self) -> Dict[str, object]:
        """Each auxiliary term's :class:`~empp_ff.auxiliary.weighting.AuxWeighting`, by name."""
        return {name: aux.config for name, aux in self.auxiliaries.items()}

    def backbone_parameters(self) -> List[torch.nn.Parameter]:
        return [p for p in self.model.potential.parameters() if p.requires_grad]

    def _factors(self, step: int, generator: Optional[torch.Generator]) -> Dict[str, float]:
        """Schedule factor of each auxiliary at ``step``; 0 where it does not run on this batch."""
        progress = step / self.total_steps
        factors = {}
        for name, aux in self.auxiliaries.items():
            weighting = aux.config
            factor = weighting.factor(progress)
            if weighting.batch_fraction < 1.0:  # drawn whenever configured, so resumed runs replay it
                draw = float(torch.rand((), generator=generator, dtype=torch.float64))
                factor = factor if draw < weighting.batch_fraction else 0.0
            factors[name] = factor
        return factors

    def losses(self, batch, generator: Optional[torch.Generator], step: int, replay_batch=None):
        """(losses for logging, terms for the backward, model outputs) of one batch (and, with
        EMPP replay, one batch of replay structures)."""
        factors = self._factors(step, generator)
        out = self.step_model(batch, supervised=self.supervised, compute_forces=self.train_forces,
                              generator=generator, use_labels=self.supervised,
                              run=[name for name, factor in factors.items() if factor > 0], replay_batch=replay_batch)
        losses: Dict[str, torch.Tensor] = {}
        terms: Dict[str, Tuple[torch.Tensor, float]] = {}  # name -> (weighted loss, schedule factor)
        if self.supervised:
            sup = supervised_loss(out, batch, self.cfg.loss, self.scale)
            terms["supervised"] = (sup["loss"], 1.0)
            losses.update(energy_loss=sup["energy_loss"], forces_loss=sup["forces_loss"])
        for name, aux in self.auxiliaries.items():
            if aux.loss_key() in out:
                terms[name] = (aux.weighted(out[aux.loss_key()], factors[name]), factors[name])
                losses.update({k: out[k] for k in aux.outputs})
        if REPLAY_LOSS in out:
            terms[REPLAY_TERM] = (self.cfg.empp.replay_weight * out[REPLAY_LOSS], 1.0)
            losses[REPLAY_LOSS] = out[REPLAY_LOSS]
        total = batch.positions.new_zeros(())
        for value, _ in terms.values():
            total = total + value
        losses["loss"] = total
        return losses, terms, out

    def backward(self, losses: Dict[str, torch.Tensor], terms) -> None:
        balanced = [n for n, (_, f) in terms.items()
                    if n in self.auxiliaries and self.auxiliaries[n].config.grad_balance is not None and f > 0]
        if not balanced or "supervised" not in terms:
            losses["loss"].backward()
            return
        shared = self.backbone_parameters()
        plain = [v for n, (v, _) in terms.items() if n not in balanced]
        sum(plain).backward()
        reference = _norm([p.grad for p in shared])
        for name in balanced:
            value, factor = terms[name]
            before = [None if p.grad is None else p.grad.clone() for p in shared]
            for p in shared:
                p.grad = None
            value.backward()
            own = [p.grad for p in shared]
            target = self.auxiliaries[name].config.grad_balance * factor * reference
            ratio = target / _norm(own).clamp(min=1e-12)
            for p, old, new in zip(shared, before, own):
                scaled = None if new is None else new * ratio
                p.grad = _add(old, scaled)

    def gradient_norms(self, losses: Dict[str, torch.Tensor], terms) -> Dict[str, float]:
        """Norm of each term's gradient on the backbone (energy and forces separately).
        Call before ``backward``: it keeps the graphs."""
        parts = {}
        if "supervised" in terms:
            parts["energy"] = self.cfg.loss.energy_weight * losses["energy_loss"]
            parts["forces"] = self.cfg.loss.forces_weight * losses["forces_loss"]
        for name in self.auxiliaries:
            if name in terms:
                parts[name] = terms[name][0]
        shared = self.backbone_parameters()
        flat = {}
        for name, value in parts.items():
            if not value.requires_grad:
                continue
            grads = torch.autograd.grad(value, shared, retain_graph=True, allow_unused=True)
            flat[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                    for g, p in zip(grads, shared)])
        result = {grad_norm_key(name): float(v.norm()) for name, v in flat.items()}
        for name in self.auxiliaries:
            if name in flat and "forces" in flat:
                cos = torch.nn.functional.cosine_similarity(flat["forces"], flat[name], dim=0)
                result[grad_cos_key(name)] = float(cos)
        return result


def _norm(grads) -> torch.Tensor:
    squares = [g.pow(2).sum() for g in grads if g is not None]
    return torch.sqrt(sum(squares)) if squares else torch.zeros(())


def _add(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if a is None:
        return b
    return a if b is None else a + b
