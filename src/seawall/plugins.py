"""The one plugin registry.

Three kinds of plugins, each behind a narrow, versioned ``Protocol`` declared by the
package that consumes it (``seawall.storage.StorageBackend``,
``seawall.clouds.CloudDriver``, ``seawall.quiesce.QuiesceAgent``). Implementations
register as Python entry points in the groups below; :func:`registry` loads them, and two
plugins with one name fail loudly. A changed contract gets a V2 beside V1, never an edit
of V1.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from seawall.errors import Conflict, NotFound

# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

GROUPS = {
    "storage": "seawall.storage",
    "clouds": "seawall.clouds",
    "quiesce": "seawall.quiesce",
}


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    target: str
    distribution: str


class Registry:
    """Plugins by kind and name, loaded lazily from entry points."""

    def __init__(self, entries: Mapping[str, Mapping[str, metadata.EntryPoint]]) -> None:
        self._entries = entries

    @classmethod
    def from_entry_points(cls) -> Registry:
        entries: dict[str, dict[str, metadata.EntryPoint]] = {}
        for kind, group in GROUPS.items():
            found: dict[str, metadata.EntryPoint] = {}
            for ep in metadata.entry_points(group=group):
                if ep.name in found and found[ep.name].value != ep.value:
                    raise Conflict(
                        f"two {kind} plugins are named {ep.name!r}: "
                        f"{found[ep.name].value} and {ep.value}; uninstall one"
                    )
                found[ep.name] = ep
            entries[kind] = found
        return cls(entries)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries.get(kind, {}))

    def load(self, kind: str, name: str) -> Any:
        try:
            ep = self._entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise NotFound(f"no {kind} plugin named {name!r} (installed: {known})") from None
        return ep.load()

    def describe(self) -> list[PluginInfo]:
        out = []
        for kind, eps in self._entries.items():
            for name, ep in sorted(eps.items()):
                dist = ep.dist.name if ep.dist is not None else "?"
                out.append(PluginInfo(kind, name, ep.value, dist))
        return out


@functools.cache
def registry() -> Registry:
    return Registry.from_entry_points()
