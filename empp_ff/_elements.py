"""Atomic numbers: the range empp-ff accepts and per-element lookup tables.

Tables indexed by atomic number have ``TABLE_SIZE`` entries (index 0 unused),
so any valid atomic number indexes them directly. Importing this module does
not import torch.
"""

from __future__ import annotations

from typing import Any, Iterable

MAX_ATOMIC_NUMBER = 118  # Og
TABLE_SIZE = MAX_ATOMIC_NUMBER + 1


def z_table(atomic_numbers: Iterable[int], values: Any, fill: Any, dtype):
    """A torch tensor ``[TABLE_SIZE]``: ``values`` at ``atomic_numbers``, ``fill`` elsewhere."""
    import torch

    table = torch.full((TABLE_SIZE,), fill, dtype=dtype)
    table[torch.as_tensor(list(atomic_numbers), dtype=torch.long)] = torch.as_tensor(values, dtype=dtype)
    return table
