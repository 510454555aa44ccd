"""Extents: the byte ranges ``changed_extents`` returns, merged the same way by every driver."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from seawall.clouds import Extent


def merge_extents(extents: Iterable[tuple[int, int]]) -> list[Extent]:
    """Sorted, non-overlapping extents covering exactly the union of ``(offset, length)``.

    Touching extents are merged too: the caller reads them in one go either way. Empty
    ones are dropped.
    """
    merged: list[list[int]] = []
    for offset, length in sorted(e for e in extents if e[1] > 0):
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return [Extent(start, end - start) for start, end in merged]


def clip_extents(extents: Iterable[tuple[int, int]], size: int) -> Iterator[tuple[int, int]]:
    """The parts of ``extents`` that lie inside a volume of ``size`` bytes.

    A change record or an RBD object can reach past the volume's byte size (the backing
    store rounds up); what seawall reads must not.
    """
    return ((o, min(o + n, size) - o) for o, n in extents if o < size)
