"""The RBD data path: volume bytes straight from Ceph, under Cinder's naming.

Cinder's RBD backend keeps volume ``<id>`` as image ``volume-<id>`` in the volume pool and
a Cinder snapshot ``<sid>`` of it as the RBD snapshot ``volume-<id>@snapshot-<sid>``, so
changed extents are ``diff_iterate`` between two such snapshots, and reads and writes
need no API call. librbd comes from the system (Debian ``python3-rbd``), so every import
of ``rados`` / ``rbd`` is lazy: without them the driver falls back to the generic path.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from seawall.errors import NotFound, SiteUnavailable
from seawall.model import Site


class RbdPool:
    """The site's Cinder volume pool, connected on first use (``ceph_conf`` in the site)."""

    def __init__(self, site: Site, ceph_conf: str | None, pool: str, user: str) -> None:
        self.site = site
        self.ceph_conf = ceph_conf
        self.rbd_pool = pool
        self.rbd_user = user
        self._rados: Any = None
        self._ioctx: Any = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Whether librbd and the site's ceph.conf are there (the ``cbt`` data path)."""
        if not self.ceph_conf:
            return False
        try:
            import rbd  # noqa: F401
        except ImportError:
            return False
        return Path(self.ceph_conf).is_file()

    def ioctx(self) -> Any:
        """librbd's I/O context on the volume pool, or None when RBD is not reachable."""
        if self._ioctx is not None or not self.ceph_conf:
            return self._ioctx
        with self._lock:
            if self._ioctx is None:
                try:
                    import rados
                except ImportError:
                    return None
                cluster = rados.Rados(conffile=self.ceph_conf, rados_id=self.rbd_user)
                try:
                    cluster.connect(timeout=10)
                    self._ioctx = cluster.open_ioctx(self.rbd_pool)
                except Exception as exc:
                    raise SiteUnavailable(
                        f"openstack site {self.site.name!r}: Ceph at {self.ceph_conf} "
                        f"(pool {self.rbd_pool}) is not reachable: {exc}"
                    ) from None
                self._rados = cluster
        return self._ioctx

    def close(self) -> None:
        if self._ioctx is not None:
            self._ioctx.close()
            self._rados.shutdown()
            self._ioctx = self._rados = None


def _snapshot_image(ioctx: Any, volume_id: str, snapshot_id: str) -> Any:
    """The RBD snapshot behind Cinder snapshot ``snapshot_id`` of ``volume_id``, read-only."""
    import rbd

    return rbd.Image(
        ioctx, f"volume-{volume_id}", snapshot=f"snapshot-{snapshot_id}", read_only=True
    )


def diff(
    ioctx: Any, volume_id: str, snapshot_id: str, base_id: str | None, size: int
) -> list[tuple[int, int]]:
    """``(offset, length)`` that differ between the RBD snapshots behind Cinder snapshots
    ``base_id`` and ``snapshot_id`` (all data extents when ``base_id`` is None), over the
    first ``size`` bytes; as RBD reports them, neither merged nor clipped."""
    import rbd

    found: list[tuple[int, int]] = []
    from_snap = f"snapshot-{base_id}" if base_id is not None else None
    try:
        with _snapshot_image(ioctx, volume_id, snapshot_id) as image:
            image.diff_iterate(
                0,
                min(image.size(), size),
                from_snap,
                lambda off, n, exists: found.append((off, n)),
                whole_object=False,
            )
    except rbd.ImageNotFound as exc:
        raise NotFound(f"RBD image or snapshot for {snapshot_id} is missing: {exc}") from None
    return found


def read(ioctx: Any, volume_id: str, snapshot_id: str, offset: int, length: int) -> bytes:
    """Bytes of the RBD snapshot behind Cinder snapshot ``snapshot_id``."""
    import rbd

    try:
        with _snapshot_image(ioctx, volume_id, snapshot_id) as image:
            return bytes(image.read(offset, length))
    except rbd.ImageNotFound as exc:
        raise NotFound(f"RBD snapshot for {snapshot_id} is missing: {exc}") from None


def write(ioctx: Any, volume_id: str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of volume ``volume_id``'s RBD image."""
    import rbd

    try:
        with rbd.Image(ioctx, f"volume-{volume_id}") as image:
            image.write(data, offset)
    except rbd.ImageNotFound:
        raise NotFound(f"RBD image volume-{volume_id} is missing") from None
