"""Reading empp-ff model files: torch (and the standard library) only.

This module is the inference path's entry point. It must never import mace,
e3nn, torch_geometric or ``empp_ff.model``/``empp_ff.train``: an exported model
file is self-contained TorchScript plus a ``metadata.json`` extra file.

The file is a zip archive (TorchScript's container). Before handing it to
``torch.jit.load`` we look inside with :mod:`zipfile` so that the common
mistakes get a specific message instead of a C++ stack trace: a missing file,
a text file, a truncated download, a training checkpoint written by
``torch.save`` instead of an exported model, or a file from a newer,
incompatible empp-ff.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch

#: Version of the model-file contract (forward signature, attributes, metadata).
FORMAT_VERSION = 1
#: Version of the optional layer-wise ("halo") entry points (see ``exporter``): an
#: extension of format 1, so older readers ignore it; files without it have none.
HALO_VERSION = 1
METADATA_NAME = "metadata.json"
MODEL_FILE_KIND = "empp-ff-model"


class ModelFileError(ValueError):
    """The file exists but is not a usable empp-ff model file."""


def _zip_member(names, suffix: str):
    for name in names:
        if name.endswith(suffix):
            return name
    return None


def read_metadata(path: Union[str, Path]) -> Dict[str, Any]:
    """Return the ``metadata.json`` of a model file without loading the model.

    Raises ``FileNotFoundError`` for a missing path and :class:`ModelFileError`
    for anything that is not a complete empp-ff model file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a directory, not a model file; to export a run directory use "
            f"`empp-ff export {path} -o model.pt`"
        )
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            raise ModelFileError(
                f"{path} is truncated or corrupted (the archive has no end record); "
                "copy or export it again"
            )
        raise ModelFileError(
            f"{path} is not an empp-ff model file (not a TorchScript archive); "
            "model files are written by `empp-ff export`"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            meta_name = _zip_member(names, "/extra/" + METADATA_NAME)
            if meta_name is None:
                if _zip_member(names, "/data.pkl") and not _zip_member(names, "/code/"):
                    hint = (
                        "it looks like a plain torch.save file (a training checkpoint?); "
                        "export it first with `empp-ff export CHECKPOINT -o model.pt`"
                    )
                else:
                    hint = "it has no metadata.json (a TorchScript file from another package?)"
                raise ModelFileError(f"{path} is not an empp-ff model file: {hint}")
            raw = zf.read(meta_name)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is truncated or corrupted: {exc}") from exc
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: metadata.json is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict) or metadata.get("kind", MODEL_FILE_KIND) != MODEL_FILE_KIND:
        raise ModelFileError(f"{path} is not an empp-ff model file (metadata kind mismatch)")
    version = metadata.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path}: metadata.json has no integer format_version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model-file format version {version}, but this empp-ff "
            f"reads format version {FORMAT_VERSION} and older; upgrade empp-ff "
            f"(the file was written by empp-ff {metadata.get('empp_ff_version', '?')})"
        )
    return metadata


def load_model_file(
    path: Union[str, Path], device: Union[str, torch.device] = "cpu"
) -> Tuple[torch.jit.ScriptModule, Dict[str, Any]]:
    """Load an exported model: ``(scripted_module, metadata)``.

    The module is in eval mode on ``device``; see ``empp_ff.export`` for its
    forward signature. Needs torch only.
    """
    metadata = read_metadata(path)
    extra = {METADATA_NAME: ""}
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 marks TorchScript deprecated; the file format is still ours.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except RuntimeError as exc:
        raise ModelFileError(f"cannot load model file {path}: {exc}") from exc
    module.eval()
    return module, metadata
