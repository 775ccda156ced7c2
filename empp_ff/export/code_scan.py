"""The code a TorchScript model file may run, checked before any of it is loaded.

A model file is a program: ``torch.jit.load`` compiles the TorchScript code in its
``code/`` records and runs a ``__setstate__`` at once, and ``forward`` runs at every
step. TorchScript can write files (``torch.save``), map them (``torch.from_file``) or
call any registered operator (``ops.<namespace>.<op>``). So every reader looks at the
archive as data first (:func:`scan_torchscript`) and refuses a file whose code calls
anything no ``empp-ff export`` emits, with a one-line error naming the operation and
the record.

The rule (one data file, :data:`RULES_PATH`, shared with the LAMMPS pair style, whose
build turns it into a C++ header with :func:`write_cxx_header`):

1. **Allowlist.** The code of each ``.py`` record is tokenised (strings and comments
   skipped, whitespace and line continuations ignored, any non-ASCII or control byte
   outside strings refused). Every use of the two names through which serialized
   TorchScript reaches operators, ``torch`` (aten and builtins) and ``ops`` (other
   namespaces: ``prim``, custom ops), must be a dotted call path listed under
   ``[operations]``; the list is what our exports contain (both backbones, float32
   and float64, with and without the halo entry points, several architectures) on
   this torch, regenerated with ``python -m empp_ff.export.code_scan derive``. A bare
   ``torch``/``ops`` (an alias ``t = torch``, ``getattr(torch, "save")``, ``(torch).save``)
   is refused, so the path cannot be spelt around the list; ``__torch__.torch.classes``
   (C++ custom classes) is refused.
2. **Denylist, as a second layer.** Every ``.py`` and pickle record (``data.pkl``,
   ``constants.pkl``, ``*.debug_pkl``: unpickled at load, where class references
   could hide) is searched as raw bytes, without tokenising, for the names of the
   operations that reach files, the network or native libraries (``[denied]``). It
   does not depend on the tokeniser agreeing with TorchScript's, and names the
   well-known dangerous operations even in strings. An allowlist alone is the rule
   (a denylist alone would miss the operator added next release); the denylist is
   there for what a tokeniser mismatch could let through.

A file exported by an empp-ff on another torch may use an operator this list lacks:
it is refused with the operator's name (re-export it here). The rule says nothing about
``.pt2`` packages: their shared library is native code that runs when it is loaded.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Tuple

from empp_ff.export.archive import read_record
from empp_ff.export.errors import ModelFileError

RULES_PATH = Path(__file__).with_name("model_code_rules.txt")
#: A code or pickle record above this size is refused unread (ours are < 0.2 MiB).
MAX_CODE_RECORD_BYTES = 32 << 20
ROOTS = (b"torch", b"ops")

_IDENT, _DOT, _OTHER = 0, 1, 2


class CodeRefused(Exception):
    """What is wrong with one record (the caller adds the file and record)."""


def load_rules(path: Path = RULES_PATH) -> Dict[str, FrozenSet[str]]:
    """``{"operations": ..., "denied": ...}`` from the rules file."""
    sections: Dict[str, set] = {"operations": set(), "denied": set()}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections[line.strip("[]")]
        else:
            current.add(line)
    return {name: frozenset(items) for name, items in sections.items()}


_RULES: Dict[str, FrozenSet[str]] = {}


def rules() -> Dict[str, FrozenSet[str]]:
    if not _RULES:
        _RULES.update(load_rules())
    return _RULES


def _is_ident(c: int, first: bool) -> bool:
    return (65 <= c <= 90) or (97 <= c <= 122) or c == 95 or (not first and 48 <= c <= 57)


def _skip_string(code: bytes, i: int) -> int:
    """Index after the string literal starting at ``code[i]`` (a quote)."""
    quote = code[i:i + 3] if code[i:i + 3] in (b'"""', b"'''") else code[i:i + 1]
    i += len(quote)
    while i < len(code):
        if code[i] == 92:  # backslash: the next byte is escaped
            i += 2
        elif code.startswith(quote, i):
            return i + len(quote)
        elif code[i] == 10 and len(quote) == 1:
            break
        else:
            i += 1
    raise CodeRefused("an unterminated string")


def tokens(code: bytes) -> List[Tuple[int, bytes]]:
    """(kind, text) of each identifier, dot and other character outside strings and comments."""
    out: List[Tuple[int, bytes]] = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c in b" \t\r\n\f\v\\":
            i += 1
        elif c == 35:  # '#': a comment to the end of the line
            j = code.find(b"\n", i)
            i = n if j < 0 else j
        elif c in b"'\"":
            i = _skip_string(code, i)
        elif _is_ident(c, False):
            j = i + 1
            while j < n and _is_ident(code[j], False):
                j += 1
            out.append((_IDENT if _is_ident(c, True) else _OTHER, code[i:j]))
            i = j
        elif 32 < c < 127:
            out.append((_DOT if c == 46 else _OTHER, code[i:i + 1]))
            i += 1
        else:
            raise CodeRefused(f"byte {c:#04x} outside a string (TorchScript code is ASCII)")
    return out


def _chain(toks: List[Tuple[int, bytes]], k: int) -> str:
    parts = [toks[k][1]]
    while k + 2 < len(toks) and toks[k + 1][0] == _DOT and toks[k + 2][0] == _IDENT:
        parts.append(toks[k + 2][1])
        k += 2
    return b".".join(parts).decode()


def operations(code: bytes) -> List[str]:
    """The dotted paths through ``torch``/``ops`` in ``code`` (a bare root as itself), and
    ``__torch__.torch.classes...`` paths, in order; raises CodeRefused for bad syntax."""
    toks = tokens(code)
    found = []
    for k, (kind, text) in enumerate(toks):
        if kind != _IDENT or (k > 0 and toks[k - 1][0] == _DOT):
            continue
        if text in ROOTS:
            found.append(_chain(toks, k))
        elif text == b"__torch__":
            name = _chain(toks, k)
            if name.startswith(("__torch__.torch.classes", "__torch__.torch.ops")):
                found.append(name)
    return found


def _denied_word(data: bytes, denied: Iterable[str]) -> str:
    for word in sorted(denied):
        for m in re.finditer(re.escape(word.encode()), data):
            before = data[m.start() - 1] if m.start() else 32
            after = data[m.end()] if m.end() < len(data) else 32
            if not _is_ident(before, False) and not _is_ident(after, False):
                return word
    return ""


def check_record(name: str, data: bytes) -> None:
    """Raise CodeRefused if record ``name`` (relative to the archive root) breaks the rule."""
    allowed = rules()
    for op in operations(data) if name.endswith(".py") else ():
        if op in ("torch", "ops"):
            raise CodeRefused(f"it uses `{op}` other than to call a named operation (an alias, getattr or "
                              "parentheses), which no empp-ff export does")
        if op not in allowed["operations"]:
            raise CodeRefused(f"it calls {op}, an operation no empp-ff export emits")
    word = _denied_word(data, allowed["denied"])
    if word:
        raise CodeRefused(f"it names `{word}`, an operation that reaches files, the network or native "
                          "code, which no empp-ff export uses")


def scanned(name: str) -> bool:
    """Whether record ``name`` (relative to the root) holds code or pickles the scan reads."""
    return name.endswith((".py", ".pkl", ".debug_pkl")) or name.startswith("code/")


def scan_torchscript(zf: zipfile.ZipFile, names: List[str], root: str, where: str) -> None:
    """Refuse (ModelFileError) a TorchScript archive whose code breaks the rule.

    ``names``: its records (checked by ``archive.record_names``); ``where``: the file."""
    for full in names:
        name = full[len(root):]
        if not scanned(name):
            continue
        data = read_record(zf, full, MAX_CODE_RECORD_BYTES, where)
        try:
            check_record(name, data)
        except CodeRefused as exc:
            raise ModelFileError(f"{where}: refused before loading: record {name}: {exc} (model files are "
                                 "programs; see 'Trusting model files' in the README)") from None


def cxx_header() -> str:
    """The rule as a C++ header for the LAMMPS pair style (``code_rules.h``)."""
    allowed = rules()

    def array(name: str, items) -> str:
        body = "".join(f'    "{item}",\n' for item in sorted(items))
        return f"inline const std::vector<std::string> {name} = {{\n{body}}};\n"

    return ("// Generated from empp_ff/export/model_code_rules.txt by empp_ff.export.code_scan: do not edit.\n"
            "#pragma once\n#include <string>\n#include <vector>\nnamespace empp::code_rules {\n"
            + array("operations", allowed["operations"]) + array("denied", allowed["denied"])
            + "}    // namespace empp::code_rules\n")


def write_cxx_header(path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(cxx_header())


def derive(paths: Iterable[str]) -> List[str]:
    """The sorted operations the TorchScript files at ``paths`` call (for the rules file)."""
    from empp_ff.export.archive import record_names

    found = set()
    for path in paths:
        with zipfile.ZipFile(path) as zf:
            names = record_names(zf, str(path))
            for full in names:
                if full.endswith(".py"):
                    found.update(operations(read_record(zf, full, MAX_CODE_RECORD_BYTES, str(path))))
    return sorted(found)


if __name__ == "__main__":  # python -m empp_ff.export.code_scan derive FILE.pt ... | header OUT.h
    if sys.argv[1:2] == ["header"]:
        write_cxx_header(sys.argv[2])
    else:
        print("\n".join(derive(sys.argv[2:])))
