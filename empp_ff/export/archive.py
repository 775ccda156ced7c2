"""Reading a model archive's records as data, with bounds: standard library only.

A model file (TorchScript ``.pt`` or AOTInductor ``.pt2``) is a zip archive whose records
all sit under one root folder. Everything that looks inside one before it is loaded
(the checksum, the metadata, the code scan) reads it through this module, which refuses
what a hostile or broken archive could use against the reader:

* record names that leave the root folder (``..`` components, absolute paths,
  backslashes, NUL) or that occur twice (two readers could pick different copies):
  an AOTInductor loader extracts records to disk, so such a name would write outside
  its folder (zip-slip);
* archives whose records expand to far more than the file holds (a deflate bomb):
  the declared sizes must total at most :data:`MAX_EXPANSION` times the file's size
  plus :data:`EXPANSION_ALLOWANCE` (torch stores weights uncompressed, and code
  compresses a few times at most), checked before any record is read;
* records read whole only up to a cap (:func:`read_record`); everything else is
  streamed in chunks (:func:`record_chunks`).

The LAMMPS pair style applies the same rules in C++ (``calculators/lammps/model_file.cpp``).
"""

from __future__ import annotations

import os
import zipfile
from typing import Iterator, List

from empp_ff.export.errors import ModelFileError

#: Records are hashed and scanned in chunks of this size.
CHUNK_BYTES = 1 << 20
#: The declared (uncompressed) sizes of an archive's records may total at most
#: MAX_EXPANSION * (size of the file) + EXPANSION_ALLOWANCE bytes.
MAX_EXPANSION = 4
EXPANSION_ALLOWANCE = 64 << 20
#: metadata.json is a few kB; a larger one is refused unread.
MAX_METADATA_BYTES = 4 << 20


def archive_root(names) -> str:
    """The root folder shared by all records (``"archive/"``, ``"model/"``...)."""
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or not all("/" in name for name in names):
        raise ValueError("the archive's records do not share one root folder")
    return roots.pop() + "/"


def unsafe_name_problem(name: str) -> str:
    """Why a record name could write outside an extraction folder ("" if it cannot)."""
    if name.startswith("/") or (len(name) > 1 and name[0].isascii() and name[0].isalpha() and name[1] == ":"):
        return "an absolute path"
    if "\\" in name or "\0" in name:
        return "a backslash or NUL character"
    if ".." in name.split("/"):
        return "a '..' component"
    return ""


def record_names(zf: zipfile.ZipFile, where: str) -> List[str]:
    """The archive's file records after the name and size checks (raises ModelFileError).

    ``where`` names the file in messages."""
    infos = [info for info in zf.infolist() if not info.filename.endswith("/")]
    seen = set()
    for info in infos:
        problem = unsafe_name_problem(info.filename)
        if problem:
            raise ModelFileError(f"{where}: refused: record {info.filename!r} has {problem} (it would be "
                                 "extracted outside its folder); this is not a file empp-ff wrote")
        if info.filename in seen:
            raise ModelFileError(f"{where}: refused: record {info.filename!r} occurs twice in the archive; "
                                 "this is not a file empp-ff wrote")
        seen.add(info.filename)
    declared = sum(info.file_size for info in infos)
    size = _stream_size(zf)
    if declared > MAX_EXPANSION * size + EXPANSION_ALLOWANCE:
        raise ModelFileError(f"{where}: refused: its records expand to {declared / 2**20:.0f} MiB from a "
                             f"{size / 2**20:.1f} MiB file (a zip bomb?); this is not a file empp-ff wrote")
    return [info.filename for info in infos]


def _stream_size(zf: zipfile.ZipFile) -> int:
    fp = zf.fp
    position = fp.tell()
    try:
        return fp.seek(0, os.SEEK_END)
    finally:
        fp.seek(position)


def record_chunks(zf: zipfile.ZipFile, name: str) -> Iterator[bytes]:
    """The bytes of record ``name`` in chunks of at most CHUNK_BYTES (its CRC checked at the end),
    never more than its declared size."""
    left = zf.getinfo(name).file_size
    with zf.open(name) as fh:
        while True:
            chunk = fh.read(min(CHUNK_BYTES, left + 1))
            if not chunk:
                return
            if len(chunk) > left:
                raise zipfile.BadZipFile(f"record {name} is longer than its declared size")
            left -= len(chunk)
            yield chunk


def read_record(zf: zipfile.ZipFile, name: str, cap: int, where: str) -> bytes:
    """Record ``name`` whole, refused unread when its declared size exceeds ``cap`` bytes."""
    size = zf.getinfo(name).file_size
    if size > cap:
        raise ModelFileError(f"{where}: refused: record {name} is {size / 2**20:.1f} MiB, more than the "
                             f"{cap / 2**20:.0f} MiB such a record may have; this is not a file empp-ff wrote")
    return b"".join(record_chunks(zf, name))
