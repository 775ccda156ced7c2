"""Every registered backbone keeps the backbone contract (``tests/backbone_contract.py``)."""

from __future__ import annotations

import pytest
from backbone_contract import BackboneContract, contract_spec

from empp_ff.model.backbone import backbone_names


class TestRegisteredBackbones(BackboneContract):
    @pytest.fixture(scope="class", params=backbone_names())
    @classmethod
    def spec(cls, request):
        return contract_spec(request.param)
