"""The registry of backbones (``empp_ff.model.backbone``), and what adding one takes.

A toy third backbone, defined here and registered by a fixture, keeps the backbone contract
(``tests/backbone_contract.py``) and trains, exports and evaluates through the normal paths
(``empp-ff train``, ``export``, ``eval``, ``info``, the ASE calculator). Shipping it would be
this module's ``ToyBackbone``, ``ToyArchitecture`` and ``DESCRIPTION`` in
``empp_ff/model/toy.py``, its tests, and its line in the registry::

    --- a/empp_ff/model/backbone.py
    +++ b/empp_ff/model/backbone.py
    -from empp_ff.model import mace, torchmd_et
    +from empp_ff.model import mace, torchmd_et, toy
     _SHIPPED = (
         mace.DESCRIPTION,
         torchmd_et.DESCRIPTION,
    +    toy.DESCRIPTION,
     )

Its architecture's fields then join the ``model.*`` config keys and the JSON spec
(``test_a_registered_backbones_fields_join_the_record``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import torch
from backbone_contract import BackboneContract, contract_spec

from empp_ff._dtypes import torch_dtype
from empp_ff._elements import z_table
from empp_ff.model._imports import import_e3nn_o3
from empp_ff.model.architecture import BackboneArchitecture
from empp_ff.model.backbone import (
    backbone_class,
    backbone_names,
    build_backbone,
    description,
    descriptions,
    register,
    unregister,
)
from empp_ff.model.description import BackboneDescription
from empp_ff.model.interface import Backbone
from empp_ff.model.mace import MACEBackbone
from empp_ff.model.spec import Architecture, BackboneSpec, record_fields
from empp_ff.model.transfer import ElementLayout, whole_tensor_layout
from empp_ff.testing.models import demo_spec


# ----------------------------------------------------------------------------- the toy backbone
@dataclass
class ToyArchitecture(BackboneArchitecture):
    """``num_interactions`` message-passing steps over ``num_channels`` scalars, with
    ``num_rbf`` Gaussian radial functions (the ET's key, shared: same default)."""

    num_interactions: int = 2
    num_rbf: int = 32

    def checks(self) -> List[Tuple[bool, str]]:
        return super().checks() + [(self.num_interactions >= 1, "num_interactions must be >= 1"),
                                   (self.num_rbf >= 2, "num_rbf must be >= 2")]

    def describe(self) -> str:
        return f"toy {self.num_channels}ch, {self.num_interactions} layers"


class ToyLayer(torch.nn.Module):
    """Scalars x [N, C] in; new scalars of the receivers (with the squared norms of their
    vector messages) and the vectors [n, 3, C] out."""

    def __init__(self, channels: int, num_rbf: int, dtype: torch.dtype):
        super().__init__()
        self.radial = torch.nn.Linear(num_rbf, 2 * channels, dtype=dtype)
        self.update = torch.nn.Linear(2 * channels, channels, dtype=dtype)

    def forward(self, x: torch.Tensor, edges: torch.Tensor, unit: torch.Tensor, rbf: torch.Tensor,
                cutoff: torch.Tensor, n_receivers: int) -> Tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        w = self.radial(rbf) * cutoff[:, None]
        xs = x.index_select(0, edges[0])
        m = torch.zeros(n_receivers, c, dtype=x.dtype, device=x.device).index_add(0, edges[1], w[:, :c] * xs)
        v = torch.zeros(n_receivers, 3, c, dtype=x.dtype, device=x.device).index_add(
            0, edges[1], unit[:, :, None] * (w[:, c:] * xs)[:, None, :])
        update = self.update(torch.cat([m, (v * v).sum(dim=1)], dim=1))
        return x[:n_receivers] + torch.nn.functional.silu(update), v


class ToyBackbone(Backbone):
    """A minimal equivariant message-passing network: species one-hot -> scalars; each step
    sums radial-weighted scalar and vector messages; energy E0 + shift + scale · readout."""

    def __init__(self, spec):
        super().__init__(spec)
        dtype = torch_dtype(spec.dtype)
        self.channels = int(spec.num_channels)
        self.r_max = float(spec.r_max)
        self.num_interactions = int(spec.num_interactions)
        self.num_elements = len(spec.atomic_numbers)
        self.width = float(spec.r_max) / spec.num_rbf
        self.register_buffer("z_to_index", z_table(spec.atomic_numbers, torch.arange(self.num_elements), -1,
                                                   torch.long), persistent=False)
        self.register_buffer("centres", torch.linspace(0.0, self.r_max, spec.num_rbf, dtype=dtype))
        self.embedding = torch.nn.Linear(self.num_elements, self.channels, bias=False, dtype=dtype)
        self.layers = torch.nn.ModuleList(ToyLayer(self.channels, spec.num_rbf, dtype)
                                          for _ in range(self.num_interactions))
        self.readout = torch.nn.Linear(self.channels, 1, dtype=dtype)
        self.register_buffer("atomic_energies", torch.tensor(list(spec.atomic_energies), dtype=dtype))
        self.register_buffer("scale", torch.tensor(float(spec.scale), dtype=dtype))
        self.register_buffer("shift", torch.tensor(float(spec.shift), dtype=dtype))

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n = positions.shape[0]
        unit, rbf, cutoff = self.geometry(positions, edge_index, shifts)
        x = self.embedding(self._one_hot(atomic_numbers, positions.dtype))
        v = torch.zeros(n, 3, self.channels, dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, v = layer(x, edge_index, unit, rbf, cutoff, n)
        energy = self._reference(atomic_numbers) + self.scale * self.readout(x)[:, 0]
        return energy, torch.cat([x, v.transpose(1, 2).reshape(n, 3 * self.channels)], dim=1)

    def geometry(self, positions: torch.Tensor, edge_index: torch.Tensor,
                 shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unit vectors, Gaussian radial features and a cutoff smooth to second order."""
        vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + shifts
        lengths = torch.linalg.norm(vectors, dim=-1)
        u = lengths / self.r_max
        cutoff = torch.where(u < 1.0, (1.0 - u * u) ** 3, torch.zeros_like(u))
        rbf = torch.exp(-(((lengths[:, None] - self.centres[None, :]) / self.width) ** 2))
        return vectors / lengths[:, None], rbf, cutoff

    def _one_hot(self, atomic_numbers: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.z_to_index[atomic_numbers], self.num_elements).to(dtype)

    def _reference(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return self.atomic_energies[self.z_to_index[atomic_numbers]] + self.shift

    def halo_context(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                     shifts: torch.Tensor) -> List[torch.Tensor]:
        unit, rbf, cutoff = self.geometry(positions, edge_index, shifts)
        return [edge_index, atomic_numbers[:, None], unit, rbf, cutoff]

    def halo_layer(self, t: int, ctx: List[torch.Tensor], node_feats: Optional[torch.Tensor],
                   n_local: int) -> Tuple[torch.Tensor, torch.Tensor]:
        edges, numbers = ctx[0], ctx[1][:, 0]
        x = self.embedding(self._one_hot(numbers, ctx[2].dtype)) if node_feats is None else node_feats
        out = x[:n_local]
        for i, layer in enumerate(self.layers):
            if i == t:  # TorchScript cannot index a ModuleList with a variable
                out, _ = layer(x, edges, ctx[2], ctx[3], ctx[4], n_local)
        # every step's energy stays in the autograd graph (the halo drivers differentiate it)
        energy = self.scale * self.readout(out)[:, 0] if t == self.num_interactions - 1 else 0.0 * out.sum(dim=1)
        if t == 0:
            energy = energy + self._reference(numbers[:n_local])
        return out, energy

    @torch.jit.unused
    def feature_irreps(self):
        return import_e3nn_o3().Irreps(f"{self.channels}x0e+{self.channels}x1o")

    @torch.jit.unused
    def message_irreps(self) -> list:
        return [import_e3nn_o3().Irreps(f"{self.channels}x0e") for _ in self.layers]

    @torch.jit.unused
    def layer_input_dims(self) -> list:
        return [1] + [self.channels] * (self.num_interactions - 1)

    @torch.jit.unused
    def set_reference_energies(self, energies) -> None:
        self._write_reference_energies(self.atomic_energies, energies)

    @torch.jit.unused
    def element_indexed_parameters(self) -> Dict[str, ElementLayout]:
        return {"embedding.weight": whole_tensor_layout(self.embedding.weight, axis=1)}

    @torch.jit.unused
    @contextlib.contextmanager
    def conditioning(self, per_layer: Sequence[Optional[torch.Tensor]], batch: torch.Tensor) -> Iterator[None]:
        if len(per_layer) != len(self.layers):
            raise ValueError(f"conditioning needs one entry per layer ({len(self.layers)}), got {len(per_layer)}")
        handles = []
        try:
            for layer, vectors in zip(self.layers, per_layer):
                if vectors is not None:
                    node_vectors = vectors[batch]
                    handles.append(layer.register_forward_pre_hook(
                        lambda _m, args, add=node_vectors: (args[0] + add,) + tuple(args[1:])))
            yield
        finally:
            for handle in handles:
                handle.remove()


DESCRIPTION = BackboneDescription(
    name="toy",
    architecture=ToyArchitecture,
    network=ToyBackbone,
    packages=(),
    reinit_parts={"elements": ("backbone.embedding.",), "readouts": ("backbone.readout.",),
                  "interactions": ("backbone.layers.",)},
)


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    """The toy backbone, registered for this module's tests only."""
    register(DESCRIPTION)
    yield DESCRIPTION
    unregister(DESCRIPTION.name)


class TestToyBackbone(BackboneContract):
    @pytest.fixture(scope="class")
    @classmethod
    def spec(cls, toy_registered):
        return contract_spec("toy", num_rbf=8)


@pytest.mark.slow
def test_the_toy_trains_exports_and_evaluates_through_the_normal_paths(tmp_path, tiny_train_overrides):
    from click.testing import CliRunner

    from empp_ff import EMPPCalculator
    from empp_ff.cli import main

    from conftest import ethanol

    run = tmp_path / "toy"
    sets = tiny_train_overrides(run, epochs=2, **{"model.backbone": "toy", "model.num_rbf": 8,
                                                  "empp.enabled": True, "empp.num_masks": 2})
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "--set", *sets])
    assert trained.exit_code == 0, trained.output
    assert "backbone: toy" in (run / "config.yaml").read_text()
    assert json.loads((run / "test_metrics.json").read_text())["epochs_run"] == 2
    model = tmp_path / "toy.pt"
    exported = runner.invoke(main, ["export", str(run), "-o", str(model)])
    assert exported.exit_code == 0, exported.output
    info = runner.invoke(main, ["info", str(model)])
    assert info.exit_code == 0 and "toy 8ch, 2 layers" in info.output
    evaluated = runner.invoke(main, ["eval", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    atoms = ethanol()
    atoms.calc = EMPPCalculator(str(model))
    assert atoms.get_potential_energy() < 0 and atoms.get_forces().shape == (len(atoms), 3)


# ----------------------------------------------------------------------------- the registry
def test_the_registry_names_every_backbone_and_builds_it():
    assert backbone_names()[:2] == ("mace", "torchmd_et") and "toy" in backbone_names()
    for entry in descriptions():
        assert issubclass(entry.network, Backbone) and backbone_class(entry.name) is entry.network
    spec = demo_spec(num_channels=4, correlation=2)
    backbone = build_backbone(spec)
    assert isinstance(backbone, MACEBackbone) and backbone.spec.backbone == "mace"
    assert backbone.spec_dict == spec.to_dict()
    assert MACEBackbone.traceable() is not None  # MACE traces with e3nn's TorchScript parts switched off


def test_unknown_and_duplicate_backbones_are_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="backbone must be one of mace, torchmd_et, toy, got 'equiformer'"):
        demo_spec(backbone="equiformer")
    with pytest.raises(ValueError, match="unknown backbone 'equiformer'; known: mace, torchmd_et, toy"):
        description("equiformer")
    with pytest.raises(ValueError, match="'mace' is already registered"):
        register(description("mace"))


def test_a_spec_written_before_the_field_is_a_mace_one():
    d = demo_spec().to_dict()
    del d["backbone"]
    spec = BackboneSpec.from_dict(d)
    assert spec.backbone == "mace" and dataclasses.asdict(spec) == demo_spec().to_dict()


def test_the_record_is_every_backbones_fields_in_the_order_files_have_always_had():
    """The ``model:`` keys and the JSON spec: a public contract (config.yaml, checkpoints,
    model files), the same whatever the backbone."""
    assert [f.name for f in dataclasses.fields(Architecture)] == [
        "backbone", "r_max", "num_channels", "max_L", "num_interactions", "correlation", "max_ell", "num_bessel",
        "num_polynomial_cutoff", "radial_mlp", "mlp_irreps", "num_heads", "num_rbf", "distance_influence", "dtype"]
    assert Architecture().used_fields() == ("backbone", "r_max", "num_channels", "dtype", "max_L",
                                            "num_interactions", "correlation", "max_ell", "num_bessel",
                                            "num_polynomial_cutoff", "radial_mlp", "mlp_irreps")
    et = Architecture(backbone="torchmd_et").used_fields()
    assert "max_L" not in et and {"num_heads", "num_rbf", "distance_influence"} <= set(et)


def test_a_registered_backbones_fields_join_the_record():
    @dataclass
    class WithAField(ToyArchitecture):
        envelope_power: int = 6

    entry = dataclasses.replace(DESCRIPTION, name="toy2", architecture=WithAField)
    names = [name for name, _, _ in record_fields(descriptions() + (entry,))]
    assert names[-2:] == ["envelope_power", "dtype"] and names[0] == "backbone"
    @dataclass
    class Clash(ToyArchitecture):
        num_rbf: int = 16  # the ET's key with another default: one key cannot have two

    clash = dataclasses.replace(entry, architecture=Clash)
    with pytest.raises(ValueError, match="the default of num_rbf differs"):
        record_fields(descriptions() + (clash,))


def test_a_backbone_validates_its_own_fields_only():
    demo_spec(backbone="torchmd_et", num_heads=2, max_L=-1, correlation=0)  # MACE's fields: not the ET's
    demo_spec(num_heads=0, distance_influence="nowhere")  # the ET's fields: not MACE's
    with pytest.raises(ValueError, match="max_L must be >= 0"):
        demo_spec(max_L=-1)
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be a multiple of num_heads \(4\)"):
        demo_spec(backbone="torchmd_et", num_channels=6, num_heads=4)
    with pytest.raises(ValueError, match="num_rbf must be >= 2"):
        demo_spec(backbone="toy", num_rbf=1)


def test_each_backbone_describes_itself_in_one_line():
    """What ``empp-ff info`` prints under "architecture"."""
    assert description("mace").describe(demo_spec(num_channels=8)) == "MACE 8ch L=1 correlation 3 max_ell 3"
    assert (description("torchmd_et").describe({"num_channels": 8, "num_interactions": 2, "num_heads": 2})
            == "torchmd_et (torchmd-net Equivariant Transformer) 8ch, 2 attention layers, 2 heads")


def test_a_description_names_its_element_indexed_parts():
    for entry in descriptions():
        assert entry.reinit_fragments(["elements"])
    with pytest.raises(ValueError, match="must name its element-indexed parts 'elements'"):
        dataclasses.replace(DESCRIPTION, reinit_parts={"readouts": ("backbone.readout.",)})
