"""TorchScript export and the model-file contract (see ``exporter.py``).

``load_model_file``/``read_metadata`` need torch only; ``export_model`` imports
the training stack when called.
"""

from empp_ff.export.exporter import (
    ExportedPotential,
    LayerwiseExportedPotential,
    export_model,
    export_potential,
)
from empp_ff.export.model_file import (
    FORMAT_VERSION,
    HALO_VERSION,
    ModelFileError,
    load_model_file,
    read_metadata,
)

__all__ = [
    "FORMAT_VERSION",
    "HALO_VERSION",
    "ExportedPotential",
    "LayerwiseExportedPotential",
    "ModelFileError",
    "export_model",
    "export_potential",
    "load_model_file",
    "read_metadata",
]
