"""Irreps strings with O(3) parity (-1)^l, as MACE's node features carry them."""

from __future__ import annotations


def parity(l: int) -> str:
    """``"e"`` for even l, ``"o"`` for odd l."""
    return "e" if l % 2 == 0 else "o"


def irreps_up_to(multiplicity: int, lmax: int) -> str:
    """``"Cx0e+Cx1o+Cx2e+..."`` for l = 0..lmax with C = ``multiplicity``."""
    return "+".join(f"{multiplicity}x{l}{parity(l)}" for l in range(lmax + 1))
