"""An optional list of trusted model files: who wrote a file, not only whether it changed.

The integrity checksum in ``metadata.json`` catches accidental change; anyone can
recompute it, so it cannot tell a lab's own model from someone else's. When
``EMPP_FF_TRUSTED_MODELS`` names a file of SHA-256 digests in ``sha256sum`` format
(``<64 hex digits>  <name>`` per line; blank lines and ``#`` comments ignored), every
reader (``empp-ff info``/``md``/``opt``/``eval``, ``EMPPCalculator``, ``load_model_file``
and ``pair_style empp``, which implements the same rule in
``calculators/lammps/model_file.cpp``) refuses a model file whose SHA-256, as
``sha256sum`` prints it, is not listed, before anything else is read. The list is as
trustworthy as whoever can write it: keep it where only the people who vet models can.
It is the one protection that also covers ``.pt2`` packages, whose native code no scan
can judge.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from typing import BinaryIO, Iterator, Set

from empp_ff.export.errors import ModelFileError

TRUSTED_MODELS_ENV = "EMPP_FF_TRUSTED_MODELS"
#: A longer list is refused (a list of a million models is 70 MB).
MAX_LIST_BYTES = 64 << 20
_LINE = re.compile(r"^([0-9a-fA-F]{64})(?:\s+\*?.*)?$")


def trusted_digests(listing: str) -> Set[str]:
    """The lower-case hex digests of the list file ``listing`` (ModelFileError if unusable)."""
    try:
        with open(listing, "rb") as fh:
            text = fh.read(MAX_LIST_BYTES + 1)
    except OSError as exc:
        raise ModelFileError(f"cannot read the trusted-model list {TRUSTED_MODELS_ENV}={listing}: "
                             f"{exc.strerror or exc}") from exc
    if len(text) > MAX_LIST_BYTES:
        raise ModelFileError(f"the trusted-model list {listing} is over {MAX_LIST_BYTES >> 20} MiB")
    digests = set()
    for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ModelFileError(f"{listing}:{number}: not a `sha256sum` line (64 hex digits, then the name)")
        digests.add(match.group(1).lower())
    return digests


def file_sha256(fh: BinaryIO) -> str:
    """SHA-256 (hex) of a seekable binary file's whole contents; leaves it at the start."""
    fh.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    fh.seek(0)
    return digest.hexdigest()


def check_trusted(fh: BinaryIO, where: str) -> None:
    """With ``EMPP_FF_TRUSTED_MODELS`` set, refuse a file whose SHA-256 the list lacks."""
    listing = os.environ.get(TRUSTED_MODELS_ENV)
    if not listing:
        return
    digest = file_sha256(fh)
    if digest not in trusted_digests(listing):
        raise ModelFileError(f"{where} is not in the trusted-model list {TRUSTED_MODELS_ENV}={listing} (its "
                             f"sha256 is {digest}); if you trust it, add the line `sha256sum` prints for it")


@contextlib.contextmanager
def own_output(path) -> Iterator[str]:
    """For a model file this process has just written (``empp-ff export``): reads inside the
    block skip the list; yields a note for the user ("" when the list is unset or has it)."""
    listing = os.environ.pop(TRUSTED_MODELS_ENV, None)
    try:
        note = ""
        if listing:
            with open(path, "rb") as fh:
                digest = file_sha256(fh)
            try:
                listed = digest in trusted_digests(listing)
            except ModelFileError as exc:
                listed, note = False, str(exc)
            if not listed and not note:
                note = (f"{path} is not in the trusted-model list {TRUSTED_MODELS_ENV}={listing}: readers will "
                        f"refuse it until its `sha256sum` line ({digest}) is added")
        yield note
    finally:
        if listing is not None:
            os.environ[TRUSTED_MODELS_ENV] = listing
