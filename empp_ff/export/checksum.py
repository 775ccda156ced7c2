"""The integrity checksum of a model file (both formats): standard library only.

A model file is a zip archive (TorchScript's or a PT2 archive) whose records
all sit under one root folder. The checksum is SHA-256 over every record
except ``extra/metadata.json`` (which holds the checksum) and
``.data/serialization_id`` (a per-save id), in order of their names relative
to the root, each hashed as::

    name (UTF-8) | 0x00 | length (8 bytes, little-endian) | bytes

so it covers the weights, the code, the compiled kernels and the archive
layout, and not the root folder's name. It is stored in ``metadata.json`` as
``"checksum": "sha256:<64 hex digits>"``; the LAMMPS pair style computes the
same digest in C++ (``calculators/lammps/model_file.cpp``).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import zipfile
from typing import BinaryIO, Iterator, Tuple, Union

from empp_ff.export.archive import archive_root, record_chunks

__all__ = ["ALGORITHM", "EXCLUDED", "archive_checksum", "archive_root"]

ALGORITHM = "sha256"
EXCLUDED = ("extra/metadata.json", ".data/serialization_id")


def _records(zf: zipfile.ZipFile) -> Iterator[Tuple[str, str]]:
    names = [n for n in zf.namelist() if not n.endswith("/")]
    root = archive_root(names)
    for name in sorted(n[len(root):] for n in names):
        if name not in EXCLUDED:
            yield root, name


def archive_checksum(source: Union[str, BinaryIO, zipfile.ZipFile]) -> str:
    """``"sha256:<hex>"`` of a model archive (a path, a binary file or an open ZipFile).

    Raises ``zipfile.BadZipFile`` (bad CRC, broken archive) or ``ValueError``.
    """
    digest = hashlib.sha256()
    opened = contextlib.nullcontext(source) if isinstance(source, zipfile.ZipFile) else zipfile.ZipFile(source)
    with opened as zf:
        for root, name in _records(zf):
            size = zf.getinfo(root + name).file_size
            digest.update(name.encode("utf-8") + b"\0" + struct.pack("<Q", size))
            for chunk in record_chunks(zf, root + name):  # zipfile checks the CRC-32 at the end
                digest.update(chunk)
    return f"{ALGORITHM}:{digest.hexdigest()}"

