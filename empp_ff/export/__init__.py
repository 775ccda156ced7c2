"""Model-file export (TorchScript ``.pt``, AOTInductor ``.pt2``) and the model-file
contract (see ``wrappers.py``, ``aoti.py``).

``load_model_file``/``read_metadata`` need torch only; ``export_model`` imports
the training stack (and, for ``.pt2``, torch's compiler) when called.
"""

from empp_ff.export.exporter import export_model, export_potential
from empp_ff.export.model_file import (
    FORMAT_VERSION,
    HALO_VERSION,
    TORCHSCRIPT_FORMAT_VERSION,
    ModelFileError,
    load_model_file,
    read_metadata,
)
from empp_ff.export.wrappers import ExportedPotential, LayerwiseExportedPotential

__all__ = [
    "FORMAT_VERSION",
    "TORCHSCRIPT_FORMAT_VERSION",
    "HALO_VERSION",
    "ExportedPotential",
    "LayerwiseExportedPotential",
    "ModelFileError",
    "export_model",
    "export_potential",
    "load_model_file",
    "read_metadata",
]
