"""Repository locks (format §8): shared for writers and readers, exclusive for prune.

To lock, a client writes its lock record, then lists ``locks/``; a shared locker backs
off if a live exclusive lock exists, an exclusive locker if any other live lock exists.
Backing off deletes the own record first, so two racing lockers never both win.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from seawall.errors import Conflict, CorruptObject, NotFound, PermanentError, TransientError
from seawall.repo.format import Keys, ObjectType
from seawall.storage import StorageBackend

log = logging.getLogger(__name__)

LOCK_PREFIX = "locks/"
LOCK_STALE_SECONDS = 30 * 60
LOCK_REFRESH_SECONDS = 5 * 60


def lock_is_stale(doc: Mapping[str, Any]) -> bool:
    """Stale: not refreshed for 30 minutes, or its process on this host is gone."""
    if time.time() - float(doc.get("time", 0)) > LOCK_STALE_SECONDS:
        return True
    if doc.get("host") == socket.gethostname():
        pid = int(doc.get("pid", 0))
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


class RepositoryLock:
    """This process's lock on one repository, re-entrant across threads.

    :meth:`held` nests: the first holder writes the record, the last one deletes it. A
    shared holder cannot upgrade to exclusive. ``wait`` is how long to retry a busy
    repository before giving up with :class:`TransientError`.
    """

    def __init__(self, storage: StorageBackend, keys: Keys) -> None:
        self.storage = storage
        self.keys = keys
        self.wait = 0.0
        self._mutex = threading.RLock()
        self._key: str | None = None
        self._depth = 0
        self._exclusive = False
        self._time = 0.0

    @contextlib.contextmanager
    def held(self, exclusive: bool) -> Iterator[None]:
        """Hold a shared (writers, readers) or exclusive (prune) repository lock."""
        with self._mutex:
            if self._depth:
                if exclusive and not self._exclusive:
                    raise Conflict("cannot take the exclusive lock while this process writes")
                self._depth += 1
            else:
                self._acquire(exclusive)
                self._depth = 1
        try:
            yield
        finally:
            with self._mutex:
                self._depth -= 1
                if self._depth == 0 and self._key is not None:
                    self.storage.delete(self._key)
                    self._key = None

    def release(self) -> None:
        """Delete the lock record now, whoever holds it (closing the repository)."""
        with self._mutex:
            if self._key is not None:
                self.storage.delete(self._key)
                self._key = None
                self._depth = 0

    def refresh(self) -> None:
        """Rewrite the lock record of a long operation so others do not think it stale."""
        with self._mutex:
            if self._key and time.monotonic() - self._time > LOCK_REFRESH_SECONDS:
                self.storage.put(self._key, self._record(self._exclusive))
                self._time = time.monotonic()

    def read(self) -> list[tuple[str, dict[str, Any]]]:
        """Every readable lock record on storage, with its key."""
        out = []
        for b in self.storage.list(LOCK_PREFIX):
            try:
                doc = self.keys.unseal_json(
                    self.storage.get(b.key), b"lock", expect_type=ObjectType.LOCK, what=b.key
                )
            except (NotFound, CorruptObject):
                continue
            out.append((b.key, doc))
        return out

    def _record(self, exclusive: bool) -> bytes:
        doc = {
            "exclusive": exclusive,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
        }
        return self.keys.seal_json(ObjectType.LOCK, doc, b"lock")

    def _blockers(self, own: str, exclusive: bool) -> list[dict[str, Any]]:
        """Live locks that keep us from holding ours; stale ones an exclusive locker
        removes on the way."""
        blockers = []
        for other, doc in self.read():
            if other == own:
                continue
            if lock_is_stale(doc):
                if exclusive:
                    log.warning(
                        "removing stale lock %s (%s pid %s)", other, doc.get("host"), doc.get("pid")
                    )
                    self.storage.delete(other)
                continue
            if exclusive or doc.get("exclusive"):
                blockers.append(doc)
        return blockers

    def _acquire(self, exclusive: bool) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            key = LOCK_PREFIX + secrets.token_hex(16)
            try:
                self.storage.put(key, self._record(exclusive))
            except PermanentError:
                if exclusive:
                    raise
                # Read-only storage (a recovery site mounted read-only): nobody can prune
                # it through us either, so reading without a lock record is safe.
                log.info("%s: read-only, proceeding without a lock", self.storage.url)
                self._key = None
                return
            blockers = self._blockers(key, exclusive)
            if not blockers:
                self._key = key
                self._exclusive = exclusive
                self._time = time.monotonic()
                return
            self.storage.delete(key)
            if time.monotonic() >= deadline:
                b = blockers[0]
                since = datetime.fromtimestamp(float(b.get("time", 0)), UTC).isoformat()
                kind = "exclusively" if b.get("exclusive") else "by a writer"
                raise TransientError(
                    f"{self.storage.url}: repository is locked {kind} "
                    f"(host {b.get('host')}, pid {b.get('pid')}, since {since}); retry later"
                )
            time.sleep(0.2)
