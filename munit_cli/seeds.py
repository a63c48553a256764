"""Stable seeds derived from any parts, independent of PYTHONHASHSEED and of the process."""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from `parts` (ints and strings), the same on every machine and run."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & (2**63 - 1)
