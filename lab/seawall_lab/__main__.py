"""``python -m seawall_lab``: the same command as ``seawall-lab``."""

from __future__ import annotations

from seawall_lab.cli import main

main()
