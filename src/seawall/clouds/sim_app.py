"""The old name of :mod:`seawall.clouds.sim.app`, kept for servers that already carry it.

Sim sites and checkpoints made before the ``sim`` package hold server commands such as
``python -m seawall.clouds.sim_app --role db``; restoring or powering on such a server
must still start its program. New code uses ``python -m seawall.clouds.sim.app``.
"""

from __future__ import annotations

import sys

from seawall.clouds.sim.app import main

if __name__ == "__main__":
    sys.exit(main())
