"""Carry trained weights between two models whose element sets differ, by atomic number.

Fine-tuning a pre-trained backbone on data with other elements (GEOM-like drugs,
H C N O F S Cl, then an MD17 molecule, H C O) must not throw away the
element-dependent weights. Every module whose parameters are indexed by the species list
says which, and how, with ``element_indexed_parameters()`` (a backbone: see
``empp_ff.model.interface.Backbone``; an auxiliary module may do the same). Like
mace-torch's foundation-model fine-tuning, the rows of the elements both models know are
copied; elements only the target knows keep their fresh values.

e3nn normalises an ``o3.Linear`` or a tensor product by 1/sqrt(fan-in), and the
element one-hot's fan-in is the number of elements, so copied element slices of such a
module (``normalised``) are multiplied by sqrt(n_target / n_source): the copied function is
then identical for the shared elements (tested against the source model's energies).

Every other tensor must have the same shape in both models; a tensor that does not
is an architecture mismatch and raises, naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch


@dataclass
class TransferReport:
    copied: List[str] = field(default_factory=list)  # same shape, copied as is
    by_element: List[str] = field(default_factory=list)  # element slices copied
    kept: List[str] = field(default_factory=list)  # parameters that keep the target's own value
    new_elements: List[int] = field(default_factory=list)  # target elements the source never saw

    def as_dict(self) -> Dict[str, object]:
        return {"loaded": self.copied, "loaded_by_element": self.by_element, "kept": self.kept,
                "new_elements": self.new_elements}


class ElementLayout(NamedTuple):
    """How a parameter is indexed by element: one (flat slice, view shape, element axis) per
    weight block, and whether its module divides by sqrt(fan-in) (e3nn), so that copied slices
    need rescaling."""

    blocks: List[Tuple[slice, tuple, int]]
    normalised: bool = False


def whole_tensor_layout(tensor: torch.Tensor, axis: int) -> ElementLayout:
    """A plain tensor with one row (``axis``) per element, e.g. a ``Linear`` on the one-hot."""
    return ElementLayout([(slice(0, tensor.numel()), tuple(tensor.shape), axis)])


def e3nn_weight_layout(module: torch.nn.Module, axis: int) -> ElementLayout:
    """The ``weight`` of an e3nn ``o3.Linear`` or tensor product with the element one-hot as
    input ``axis`` (0: the only input; 1: the second input of a tensor product): one block per
    weighted path, normalised by e3nn."""
    blocks, offset = [], 0
    for ins in module.instructions:
        if getattr(ins, "has_weight", True):
            size = math.prod(ins.path_shape)
            blocks.append((slice(offset, offset + size), tuple(ins.path_shape), axis))
            offset += size
    return ElementLayout(blocks, True)


def element_layouts(model: torch.nn.Module) -> Dict[str, ElementLayout]:
    """{full parameter name: layout} over every submodule that declares its element-indexed
    parameters."""
    layouts = {}
    for prefix, module in model.named_modules():
        declare = getattr(module, "element_indexed_parameters", None)
        if callable(declare):
            for name, layout in declare().items():
                layouts[f"{prefix}.{name}" if prefix else name] = layout
    return layouts


def element_index_map(source_z: Sequence[int], target_z: Sequence[int]) -> Tuple[List[int], List[int]]:
    """(target positions, source positions) of the elements both know, in target order."""
    where = {int(z): i for i, z in enumerate(source_z)}
    pairs = [(t, where[int(z)]) for t, z in enumerate(target_z) if int(z) in where]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _source_blocks(blocks, n_source: int):
    """The same blocks laid out for the source's element count (flat offsets shift)."""
    out, offset = [], 0
    for _, shape, axis in blocks:
        src_shape = list(shape)
        src_shape[axis] = n_source
        size = math.prod(src_shape)
        out.append((slice(offset, offset + size), tuple(src_shape), axis))
        offset += size
    return out


def transfer_weights(source: torch.nn.Module, target: torch.nn.Module, source_z: Sequence[int],
                     target_z: Sequence[int], keep: Sequence[str] = ()) -> TransferReport:
    """Copy ``source``'s parameters into ``target`` (same architecture), mapping
    element-indexed weights by atomic number. Parameters whose names contain any of
    ``keep`` keep the target's values."""
    report = TransferReport(new_elements=[int(z) for z in target_z if int(z) not in set(map(int, source_z))])
    target_pos, source_pos = element_index_map(source_z, target_z)
    n_src, n_tgt = len(source_z), len(target_z)
    scale = math.sqrt(n_tgt / n_src)
    src_modules = dict(source.named_modules())
    layouts = element_layouts(target)
    mismatched = []
    with torch.no_grad():
        for mod_name, module in target.named_modules():
            src_module = src_modules.get(mod_name)
            # Parameters only: buffers are data-dependent (E0s, scale/shift, element tables) or
            # constants of the architecture, which the target already has.
            for name, dst in module.named_parameters(recurse=False):
                full = f"{mod_name}.{name}" if mod_name else name
                if any(k in full for k in keep):
                    report.kept.append(full)
                    continue
                src = None if src_module is None else _local_tensor(src_module, name)
                if src is None:
                    mismatched.append(f"{full} (absent in the source)")
                    continue
                blocks, normalised = layouts.get(full, ElementLayout([]))
                if blocks and list(source_z) != list(target_z):
                    _copy_blocks(src, dst, _source_blocks(blocks, n_src), blocks, target_pos, source_pos,
                                 scale if normalised else 1.0)
                    report.by_element.append(full)
                elif src.shape == dst.shape:
                    dst.copy_(src.to(dst.dtype))
                    report.copied.append(full)
                else:
                    mismatched.append(f"{full} (source {tuple(src.shape)}, target {tuple(dst.shape)})")
    if mismatched:
        raise ValueError("cannot carry the weights over, the architectures differ: " + "; ".join(mismatched[:6]))
    return report


def _local_tensor(module: torch.nn.Module, name: str):
    tensors = dict(module.named_parameters(recurse=False))
    tensors.update(dict(module.named_buffers(recurse=False)))
    return tensors.get(name)


def _copy_blocks(src, dst, src_blocks, dst_blocks, target_pos, source_pos, scale: float) -> None:
    src_flat, dst_flat = src.reshape(-1), dst.reshape(-1)
    i_t = torch.tensor(target_pos, dtype=torch.long, device=dst.device)
    i_s = torch.tensor(source_pos, dtype=torch.long, device=src.device)
    for (s_slice, s_shape, axis), (d_slice, d_shape, _) in zip(src_blocks, dst_blocks):
        s = src_flat[s_slice].view(s_shape)
        d = dst_flat[d_slice].clone().view(d_shape)
        d.index_copy_(axis, i_t, s.index_select(axis, i_s).to(d.dtype) * scale)
        dst_flat[d_slice] = d.reshape(-1)
    dst.copy_(dst_flat.view(dst.shape))
