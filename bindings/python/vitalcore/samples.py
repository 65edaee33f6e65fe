"""Packing samples for the fast path across the FFI.

uniffi encodes a ``list[float]`` one element at a time; ``bytes`` cross in one copy. The
``*_f64le`` functions take samples as little-endian IEEE-754 doubles.
"""
from __future__ import annotations

import sys
from array import array
from typing import Iterable


def pack_f64le(values: Iterable[float]) -> bytes:
    """Little-endian f64 bytes of ``values`` (a list, ``array('d')`` or NumPy array)."""
    astype = getattr(values, "astype", None)
    if astype is not None:  # NumPy: one vectorised conversion
        return astype("<f8").tobytes()
    a = values if isinstance(values, array) and values.typecode == "d" else array("d", values)
    if sys.byteorder != "little":
        a = array("d", a)
        a.byteswap()
    return a.tobytes()
