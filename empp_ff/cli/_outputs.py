"""A command's outputs must not be its inputs, nor each other.

Paths are compared as files, not as strings: the resolved path (symlinks followed, ``..``
removed) and, for files that exist, the device and inode (a hard link is the same file).
A clash is a one-line error naming both roles, raised before the command opens anything,
so the user's files stay byte for byte as they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple, Union

import click

PathLike = Union[str, os.PathLike]
Roles = Dict[str, Optional[PathLike]]


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (existing or to be created)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): the resolved paths decided
        return False


def inside(path: PathLike, folder: PathLike) -> bool:
    """Whether ``path`` lies in ``folder`` (at any depth; symlinks followed)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return folder in path.parents


def _named(roles: Roles) -> Iterable[Tuple[str, PathLike]]:
    return [(role, path) for role, path in roles.items() if path is not None]


def refuse_clashes(outputs: Roles, inputs: Optional[Roles] = None,
                   input_folders: Optional[Roles] = None) -> None:
    """A :class:`click.ClickException` when an output is one of ``inputs``, another output, or inside
    one of ``input_folders`` (every file in it is an input). Keys are the roles as the user knows
    them: ``"--out"``, ``"STRUCTURE"``."""
    outs = _named(outputs)
    for k, (role, path) in enumerate(outs):
        for other_role, other in _named(inputs or {}):
            if same_file(path, other):
                raise click.ClickException(
                    f"the output {role} ({path}) is the input {other_role} ({other}): it would be overwritten; "
                    f"choose another {role}")
        for other_role, other in outs[k + 1:]:
            if same_file(path, other):
                raise click.ClickException(
                    f"the outputs {role} ({path}) and {other_role} ({other}) are one file: one would overwrite "
                    "the other; give them different names")
        for other_role, folder in _named(input_folders or {}):
            if inside(path, folder):
                raise click.ClickException(
                    f"the output {role} ({path}) is inside {folder}, the {other_role} this command reads: "
                    f"write it elsewhere")
