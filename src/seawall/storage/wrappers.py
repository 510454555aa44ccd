"""Wrappers that implement :class:`~seawall.storage.StorageBackend` around another one.

Each adds exactly one behaviour and uses only the public contract of what it wraps, so
they stack in any order (kopia's decorators): ``Retrying(RateLimited(S3Storage(...)))``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dtime

from seawall.errors import (
    IntegrityError,
    InvalidInput,
    NotFound,
    PermanentError,
    SeawallError,
    TransientError,
)
from seawall.storage import BlobInfo, Data, StorageBackend
from seawall.units import parse_rate

# --------------------------------------------------------------------------------------
# Retry with backoff
# --------------------------------------------------------------------------------------


class Retrying:
    """Retries :class:`TransientError` (and ``OSError``) with capped exponential backoff
    and full jitter. ``NotFound``, integrity and permanent errors are never retried."""

    def __init__(
        self,
        inner: StorageBackend,
        *,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self.retries = 0

    def _call(self, fn: Callable[[], object]) -> object:
        for attempt in range(self.attempts):
            try:
                return fn()
            except (NotFound, IntegrityError, PermanentError):
                raise
            except (TransientError, OSError) as exc:
                if attempt + 1 >= self.attempts:
                    if isinstance(exc, SeawallError):
                        raise
                    raise TransientError(f"{self.url}: {exc}") from exc
                self.retries += 1
                delay = min(self.max_delay, self.base_delay * 2**attempt)
                self._sleep(random.uniform(0, delay))
        raise AssertionError("unreachable")

    def put(self, key: str, data: Data) -> None:
        self._call(lambda: self.inner.put(key, data))

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        out = self._call(lambda: self.inner.get(key, offset, length))
        assert isinstance(out, bytes)
        return out

    def stat(self, key: str) -> BlobInfo:
        out = self._call(lambda: self.inner.stat(key))
        assert isinstance(out, BlobInfo)
        return out

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        out = self._call(lambda: list(self.inner.list(prefix)))
        assert isinstance(out, list)
        return iter(out)

    def delete(self, key: str) -> None:
        self._call(lambda: self.inner.delete(key))


# --------------------------------------------------------------------------------------
# Rate limit: token bucket with time-of-day windows
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateWindow:
    """Between ``start`` and ``end`` (local time; may wrap midnight) use ``rate`` B/s
    (0 = unlimited)."""

    start: dtime
    end: dtime
    rate: int

    def contains(self, t: dtime) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass
class TokenBucket:
    """Bytes per second with a burst of one second's worth; windows override the rate.

    ``consume(n)`` sleeps until ``n`` bytes may pass; a request larger than the burst is
    let through once the bucket is full and leaves it in debt, so large objects pass at
    the configured average rate.
    """

    rate: int
    windows: Sequence[RateWindow] = ()
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = datetime.now
    _tokens: float = field(default=0.0, init=False)
    _last: float | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def current_rate(self) -> int:
        t = self.now().time()
        for w in self.windows:
            if w.contains(t):
                return w.rate
        return self.rate

    def consume(self, n: int) -> None:
        with self._lock:
            rate = self.current_rate()
            if rate <= 0:
                return
            now = self.clock()
            if self._last is None:
                self._last = now
                self._tokens = float(rate)
            self._tokens = min(float(rate), self._tokens + (now - self._last) * rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / rate if self._tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)


def parse_windows(spec: str, *, field: str = "windows") -> list[RateWindow]:
    """``"08:00-18:00=10MiB,18:00-08:00=0"`` -> windows (0 means unlimited).

    Rates use :func:`seawall.units.parse_rate`'s grammar (``/s`` optional)."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        span, _, rate = part.partition("=")
        a, _, b = span.partition("-")
        try:
            start, end = dtime.fromisoformat(a), dtime.fromisoformat(b)
        except ValueError:
            raise InvalidInput(
                f"{part!r} is not a window like 08:00-18:00=10MiB", field=field
            ) from None
        out.append(RateWindow(start, end, parse_rate(rate, field=field)))
    return out


class RateLimited:
    """Throttles the bytes of ``put`` and ``get`` through one :class:`TokenBucket`."""

    def __init__(self, inner: StorageBackend, bucket: TokenBucket) -> None:
        self.inner = inner
        self.url = inner.url
        self.bucket = bucket

    def put(self, key: str, data: Data) -> None:
        self.bucket.consume(len(data))
        self.inner.put(key, data)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.get(key, offset, length)
        self.bucket.consume(len(data))
        return data

    def stat(self, key: str) -> BlobInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


# --------------------------------------------------------------------------------------
# Read-only
# --------------------------------------------------------------------------------------


class ReadOnlyStorage(PermanentError):
    """The storage is opened read-only; nothing was written."""


class ReadOnly:
    """Refuses every write: for restores from a recovery site that must not be touched."""

    def __init__(self, inner: StorageBackend) -> None:
        self.inner = inner
        self.url = inner.url

    def put(self, key: str, data: Data) -> None:
        raise ReadOnlyStorage(f"{self.url} is read-only; refusing to write {key!r}")

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.get(key, offset, length)

    def stat(self, key: str) -> BlobInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        raise ReadOnlyStorage(f"{self.url} is read-only; refusing to delete {key!r}")


# --------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------


@dataclass
class Fault:
    """Fail calls of ``method`` (``"*"`` for all) whose key starts with ``prefix``.

    ``after``: let this many matching calls through first; ``times``: how many to fail
    (-1 = forever); ``error``: what to raise.
    """

    method: str = "*"
    prefix: str = ""
    after: int = 0
    times: int = 1
    error: Callable[[str], Exception] = lambda what: TransientError(f"injected fault: {what}")
    seen: int = 0


class Faulty:
    """Deterministic fault injection, the product-grade fake for failure tests.

    Besides scripted :class:`Fault` rules it can *cut the link* after ``cut_after_bytes``
    bytes have been written (every later call fails, like a dropped connection) and
    count calls per method for assertions.
    """

    def __init__(
        self,
        inner: StorageBackend,
        faults: Sequence[Fault] = (),
        *,
        cut_after_bytes: int | None = None,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.faults = list(faults)
        self.cut_after_bytes = cut_after_bytes
        self.bytes_written = 0
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def _check(self, method: str, key: str) -> None:
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            if self.cut_after_bytes is not None and self.bytes_written >= self.cut_after_bytes:
                raise TransientError(f"{self.url}: connection lost (injected cut)")
            for f in self.faults:
                if f.method not in ("*", method) or not key.startswith(f.prefix):
                    continue
                f.seen += 1
                if f.seen > f.after and (f.times < 0 or f.seen <= f.after + f.times):
                    raise f.error(f"{method} {key}")

    def put(self, key: str, data: Data) -> None:
        self._check("put", key)
        self.inner.put(key, data)
        with self._lock:
            self.bytes_written += len(data)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self._check("get", key)
        return self.inner.get(key, offset, length)

    def stat(self, key: str) -> BlobInfo:
        self._check("stat", key)
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        self._check("list", prefix)
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._check("delete", key)
        self.inner.delete(key)
