"""The backbone interface: names, the factory, and what a spec without a name means."""

from __future__ import annotations

import dataclasses

import pytest

from empp_ff.model.backbone import backbone_class, build_backbone
from empp_ff.model.interface import Backbone
from empp_ff.model.mace import MACEBackbone
from empp_ff.model.spec import BACKBONE_FIELDS, BACKBONE_NAMES, BackboneSpec
from empp_ff.testing.models import demo_spec


def test_every_name_has_a_backbone_class():
    for name in BACKBONE_NAMES:
        assert issubclass(backbone_class(name), Backbone)
    assert backbone_class("mace") is MACEBackbone
    assert set(BACKBONE_FIELDS) == set(BACKBONE_NAMES)


def test_unknown_backbone_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="backbone must be one of mace, torchmd_et, got 'equiformer'"):
        demo_spec(backbone="equiformer")
    with pytest.raises(ValueError, match="unknown backbone 'equiformer'; known: mace, torchmd_et"):
        backbone_class("equiformer")


def test_a_spec_written_before_the_field_is_a_mace_one():
    d = demo_spec().to_dict()
    assert d["backbone"] == "mace"
    del d["backbone"]
    spec = BackboneSpec.from_dict(d)
    assert spec.backbone == "mace" and dataclasses.asdict(spec) == demo_spec().to_dict()


def test_the_factory_builds_the_named_backbone():
    backbone = build_backbone(demo_spec(num_channels=4))
    assert isinstance(backbone, MACEBackbone) and isinstance(backbone, Backbone)
    assert backbone.spec.backbone == "mace" and backbone.spec_dict["backbone"] == "mace"
    assert MACEBackbone.traceable() is not None  # MACE traces with e3nn's TorchScript parts switched off
