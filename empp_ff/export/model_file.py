"""Reading empp-ff model files: torch (and the standard library) only.

This module is the inference path's entry point. It must never import mace,
e3nn, torch_geometric or ``empp_ff.model``/``empp_ff.train``: an exported model
file is self-contained (TorchScript, or an AOTInductor package of compiled
kernels) plus a ``metadata.json`` extra file.

Two formats, both zip archives, told apart by their records (not the suffix):

* ``torchscript`` (``.pt``, format version 1): TorchScript code and weights;
* ``aotinductor`` (``.pt2``, format version 2): a PT2 archive holding a shared
  library compiled by ``torch._inductor`` for one device and CPU architecture.

Before anything is loaded we look inside with :mod:`zipfile` so that the common
mistakes get a specific message instead of a C++ stack trace: a missing file,
a text file, a truncated download, a training checkpoint written by
``torch.save`` instead of an exported model, a file from a newer, incompatible
empp-ff, or a file whose weights or code changed after export (the checksum in
``metadata.json``, see :mod:`empp_ff.export.checksum`).

Model files are programs. The archive is read as bounded data first
(:mod:`empp_ff.export.archive`: no record names leaving the folder, no zip bombs, a
capped metadata.json), and a TorchScript file whose code calls anything no
``empp-ff export`` emits is refused before ``torch.jit.load`` compiles it
(:mod:`empp_ff.export.code_scan`); :func:`load_model` loads the very bytes it scanned.
With ``EMPP_FF_TRUSTED_MODELS`` set, only files on that list are read at all
(:mod:`empp_ff.export.trust`).
A ``.pt2`` package's shared library is native code that runs when it is loaded: only
load packages from people you trust (README, "Trusting model files").
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from empp_ff.export.archive import MAX_METADATA_BYTES, archive_root, read_record, record_names
from empp_ff.export.checksum import archive_checksum
from empp_ff.export.code_scan import scan_torchscript
from empp_ff.export.errors import ModelFileError
from empp_ff.export.trust import check_trusted

#: The newest model-file format version this empp-ff reads (and the version of .pt2 packages).
FORMAT_VERSION = 2
#: TorchScript files keep format version 1 (their contract is unchanged).
TORCHSCRIPT_FORMAT_VERSION = 1
#: Version of the optional layer-wise ("halo") entry points of TorchScript files (see
#: ``exporter``): an extension of format 1, so older readers ignore it; files without it
#: have none, and .pt2 packages carry the whole-model forward only.
HALO_VERSION = 1
METADATA_NAME = "metadata.json"
MODEL_FILE_KIND = "empp-ff-model"
#: Format names (``metadata["format"]``, ``empp-ff export --format``) by file suffix.
FORMAT_BY_SUFFIX = {".pt": "torchscript", ".pt2": "aotinductor"}


def _zip_member(names, suffix: str):
    for name in names:
        if name.endswith(suffix):
            return name
    return None


def _check_archive(path: Path) -> None:
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
            f"{path} is not an empp-ff model file (not a TorchScript archive or AOTInductor package); "
            "model files are written by `empp-ff export`"
        )


def _archive_format(zf: zipfile.ZipFile, names) -> str:
    member = _zip_member(names, "/archive_format")
    if member is not None and read_record(zf, member, 64, "archive_format").strip() == b"pt2":
        return "aotinductor"
    return "torchscript"


def _parse_metadata(raw: bytes, path: Path) -> Dict[str, Any]:
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


def _not_a_model_hint(names) -> str:
    if _zip_member(names, "/data.pkl") and not any("/code/" in name for name in names):
        return (
            "it looks like a plain torch.save file (a training checkpoint?); "
            "export it first with `empp-ff export CHECKPOINT -o model.pt`"
        )
    return "it has no metadata.json (a TorchScript file or package from another program?)"


def _verify_checksum(zf: zipfile.ZipFile, metadata: Dict[str, Any], path: Path) -> None:
    expected = metadata.get("checksum")
    if expected is None:
        return  # written before empp-ff recorded checksums: nothing to compare against
    try:
        actual = archive_checksum(zf)
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
        actual = f"unreadable ({exc})"
    if actual != expected:
        raise ModelFileError(
            f"{path} failed its integrity check: its weights and code do not match the checksum "
            f"recorded at export (recorded {expected}, found {actual}); the file is corrupted or "
            "was modified after export: copy or export it again"
        )


def read_metadata(path: Union[str, Path]) -> Dict[str, Any]:
    """Return the ``metadata.json`` of a model file without loading the model, after
    checking the file's integrity checksum. ``metadata["format"]`` is the file's format.

    Raises ``FileNotFoundError`` for a missing path and :class:`ModelFileError`
    for anything that is not a complete, intact empp-ff model file.
    """
    path = Path(path)
    _check_archive(path)
    with open(path, "rb") as fh:
        return _read_metadata(fh, path)


def _read_metadata(source, path: Path) -> Dict[str, Any]:
    """read_metadata of an open binary file (``path`` names it in messages), code scan included."""
    check_trusted(source, str(path))
    try:
        with zipfile.ZipFile(source) as zf:
            names = record_names(zf, str(path))
            meta_name = _zip_member(names, "/extra/" + METADATA_NAME)
            if meta_name is None:
                raise ModelFileError(f"{path} is not an empp-ff model file: {_not_a_model_hint(names)}")
            metadata = _parse_metadata(read_record(zf, meta_name, MAX_METADATA_BYTES, str(path)), path)
            metadata["format"] = _archive_format(zf, names)
            _verify_checksum(zf, metadata, path)  # first: a corrupted file is named as such
            if metadata["format"] == "torchscript":
                scan_torchscript(zf, names, archive_root(names), str(path))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path} is truncated or corrupted: {exc}") from exc
    return metadata


def default_device(metadata: Dict[str, Any]) -> str:
    """The device a model file runs on when none is asked for: a compiled package's own
    device; for TorchScript CUDA when available, else CPU."""
    if metadata.get("format") == "aotinductor":
        return str(metadata.get("compiled", {}).get("device", "cpu"))
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path: Union[str, Path], metadata: Dict[str, Any], device: Union[str, torch.device]):
    """The callable model of a file whose ``metadata`` :func:`read_metadata` returned.

    Both formats take ``(positions, atomic_numbers, edge_index, shifts, n_local,
    compute_virial)`` and return the dict of the model-file contract (``wrappers.py``).
    """
    path = Path(path)
    # The bytes that are loaded are the bytes that were checked (the file may change meanwhile).
    data = path.read_bytes()
    _read_metadata(io.BytesIO(data), path)
    if metadata["format"] == "aotinductor":
        from empp_ff.export.compiled import CompiledModel  # imported only for packages

        return CompiledModel(path, metadata, device, data)
    extra = {METADATA_NAME: ""}
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 marks TorchScript deprecated; the file format is still ours.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            module = torch.jit.load(io.BytesIO(data), map_location=device, _extra_files=extra)
    except RuntimeError as exc:
        raise ModelFileError(f"cannot load model file {path}: {exc}") from exc
    return module.eval()


def load_model_file(
    path: Union[str, Path], device: Optional[Union[str, torch.device]] = "cpu"
) -> Tuple[Any, Dict[str, Any]]:
    """Load an exported model: ``(model, metadata)``.

    ``model`` is a TorchScript module in eval mode on ``device`` (``.pt``) or a
    :class:`~empp_ff.export.compiled.CompiledModel` (``.pt2``); see
    ``empp_ff.export`` for the call signature. ``device=None``: the file's
    default device (:func:`default_device`). Needs torch only.
    """
    metadata = read_metadata(path)
    return load_model(path, metadata, default_device(metadata) if device is None else device), metadata
