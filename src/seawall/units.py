"""Quantities of bytes as people write them: one formatter, one parser, one grammar.

Every edge that prints or reads a size or a rate uses these: the CLI (``policy create
--limit-rate``, ``repo sync --limit-rate`` and ``--limit-windows``, ``repo init
--chunk-size``, every byte column it prints), policy files and the
REST API (``bandwidth.bytes_per_second``, through :mod:`seawall.model`'s codec), and the
dashboard's byte columns. So ``50M`` means the same thing everywhere.

The grammar (case does not matter; spaces between number and unit are allowed)::

    size  := number [unit]           50  50M  1.5GiB  10 kb
    rate  := size ["/s" | "/sec"]    50MiB/s  10MB/s  1048576
    unit  := "B"
           | "K" | "KB"  (10**3)      | "Ki" | "KiB"  (2**10)
           | "M" | "MB"  (10**6)      | "Mi" | "MiB"  (2**20)
           | "G" | "GB"  (10**9)      | "Gi" | "GiB"  (2**30)
           | "T" | "TB"  (10**12)     | "Ti" | "TiB"  (2**40)
    number := digits ["." digits]    (ASCII digits; no sign, no exponent)

A bare number is bytes. Decimal prefixes are powers of ten and binary ones powers of
two (IEC 80000-13), so ``50M`` is 50 000 000 and ``50MiB`` is 52 428 800. Fractional
results are rounded down to whole bytes.

This is a bottom-layer module: it imports nothing from seawall except the error tree,
so the model, storage and the edges can all depend on it.
"""

from __future__ import annotations

import re
from decimal import Decimal

from seawall.errors import InvalidInput

#: Multipliers by unit, upper-cased (the grammar is case-insensitive).
UNITS: dict[str, int] = {
    "": 1,
    "B": 1,
    **{p: 1000**i for i, p in enumerate("KMGT", start=1)},
    **{p + "B": 1000**i for i, p in enumerate("KMGT", start=1)},
    **{p + "I": 1024**i for i, p in enumerate("KMGT", start=1)},
    **{p + "IB": 1024**i for i, p in enumerate("KMGT", start=1)},
}

_QUANTITY = re.compile(
    r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[KMGT]I?B?|B)?\s*", re.I | re.ASCII
)
_PER_SECOND = re.compile(r"\s*/\s*s(?:ec)?\s*$", re.I | re.ASCII)

#: The binary units :func:`format_bytes` steps through.
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float | None) -> str:
    """``1536`` -> ``'1.5 KiB'``: binary units, one decimal; bytes as a whole number.

    ``None`` (not known, e.g. a checkpoint still being written) prints as ``—``, the way
    the dashboard shows a missing figure. The output parses back with :func:`parse_size`
    to within the shown precision."""
    if n is None:
        return "—"
    value = float(n)
    for unit in _BINARY:
        if abs(value) < 1024 or unit == _BINARY[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the last unit always returns")


def parse_size(text: str | int, *, field: str = "size") -> int:
    """``'10GiB'`` -> ``10737418240`` (see the module docstring for the grammar).

    An ``int`` (as YAML and JSON give numbers) is taken as bytes. Anything else raises
    :class:`~seawall.errors.InvalidInput` naming ``field``."""
    return _parse(text, field, "a size like 10GiB, 500MB or 1048576 (bytes)")


def parse_rate(text: str | int, *, field: str = "rate") -> int:
    """``'50MiB/s'`` -> ``52428800`` bytes per second; ``/s`` is optional, ``0`` is 0.

    The same grammar as :func:`parse_size` with an optional ``/s`` (or ``/sec``)."""
    like = "a rate like 50MiB/s, 10MB/s or 1048576"
    if isinstance(text, str):
        return _parse(_PER_SECOND.sub("", text, count=1), field, like, shown=text)
    return _parse(text, field, like)


def _parse(text: str | int, field: str, like: str, *, shown: str | int | None = None) -> int:
    shown = text if shown is None else shown
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InvalidInput(f"{shown!r} is negative; expected {like}", field=field)
        return text
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(f"{shown!r} is not {like}", field=field)
    multiplier = UNITS[(match["unit"] or "").upper()]
    return int(Decimal(match["number"]) * multiplier)
