"""Altered copies of model files, for tests of what readers refuse.

* :func:`flip_bytes`: the corruption of issue 10 (bytes flipped in the middle of a file);
* :func:`rewrite_model_file`: a valid archive whose records or metadata were edited, with
  the checksum recomputed (a package "compiled elsewhere") or kept (tampered weights);
* :func:`hostile_torchscript`: a TorchScript module of one's own dressed as an empp-ff model
  file (another file's metadata, a valid checksum): what a hostile model file looks like.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Callable, Dict, Optional

from empp_ff.export.checksum import archive_checksum

METADATA_RECORD = "extra/metadata.json"


def flip_bytes(src, dst, count: int = 2048) -> Path:
    """Copy ``src`` to ``dst`` with ``count`` bytes in the middle inverted (XOR 0xFF)."""
    data = bytearray(Path(src).read_bytes())
    start = len(data) // 2
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0xFF
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def rewrite_model_file(
    src,
    dst,
    *,
    edit_record: Optional[Callable[[str, bytes], bytes]] = None,
    edit_metadata: Optional[Callable[[Dict], None]] = None,
    recompute_checksum: bool = True,
    dump_metadata: Callable[[Dict], str] = lambda meta: json.dumps(meta, indent=2),
) -> Path:
    """Copy a model archive record by record. ``edit_record(name, data)`` may return new
    bytes for any record (``name`` relative to the archive root); ``edit_metadata(meta)``
    edits ``metadata.json`` in place. With ``recompute_checksum`` the copy records the
    checksum of its new contents (so it passes the integrity check). ``dump_metadata``
    writes the metadata's JSON text (default: as empp-ff does, ``indent=2``)."""
    with zipfile.ZipFile(src) as zin:
        records = [(info, zin.read(info.filename)) for info in zin.infolist()]
    root = records[0][0].filename.split("/", 1)[0] + "/"
    body = io.BytesIO()
    metadata = None
    with zipfile.ZipFile(body, "w") as zout:
        for info, data in records:
            name = info.filename[len(root):]
            if name == METADATA_RECORD:
                metadata = json.loads(data)
                continue
            zout.writestr(info, edit_record(name, data) if edit_record else data)
    if metadata is None:
        raise ValueError(f"{src} has no {METADATA_RECORD}")
    if edit_metadata:
        edit_metadata(metadata)
    if recompute_checksum and "checksum" in metadata:
        metadata["checksum"] = archive_checksum(io.BytesIO(body.getvalue()))
    with zipfile.ZipFile(body, "a") as zout:
        zout.writestr(root + METADATA_RECORD, dump_metadata(metadata))
    Path(dst).write_bytes(body.getvalue())
    return Path(dst)


def package_compiled_elsewhere(src, dst, **compiled) -> Path:
    """A copy of a ``.pt2`` that claims other compile settings (``torch``, ``machine``,
    ``cpu_flags``, ``device``), in both places readers look: ``metadata.json``'s
    ``compiled`` (Python) and the package's own metadata record (the LAMMPS plugin)."""
    flat = {"torch": "empp.torch_version", "machine": "empp.machine", "device": "empp.device",
            "cpu_flags": "empp.cpu_flags"}

    def edit_record(name: str, data: bytes) -> bytes:
        if not name.endswith("wrapper_metadata.json"):
            return data
        meta = json.loads(data)
        for key, value in compiled.items():
            meta[flat[key]] = " ".join(value) if key == "cpu_flags" else str(value)
        return json.dumps(meta).encode()

    def edit_metadata(meta: Dict) -> None:
        meta["compiled"].update(compiled)

    if not compiled:
        shutil.copyfile(src, dst)
        return Path(dst)
    return rewrite_model_file(src, dst, edit_record=edit_record, edit_metadata=edit_metadata)


def hostile_torchscript(module, dst, like) -> Path:
    """``torch.jit.script(module)`` saved with the metadata of the model file ``like`` and a
    checksum of its own contents: it passes every check but the code scan."""
    import torch

    with zipfile.ZipFile(like) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(METADATA_RECORD))
        metadata = zf.read(meta_name).decode()
    body = io.BytesIO()
    torch.jit.save(torch.jit.script(module), body, _extra_files={"metadata.json": metadata})
    raw = Path(dst).with_suffix(".raw")
    raw.write_bytes(body.getvalue())
    try:
        return rewrite_model_file(raw, dst)
    finally:
        raw.unlink()
