"""The seawall command line (placeholder while the skeleton is built)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("seawall: not yet")
