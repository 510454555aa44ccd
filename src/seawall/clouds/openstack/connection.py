"""The openstack driver's connection: openstacksdk, errors mapped onto seawall's tree,
retries of reads, and the time a run owes to the cloud.

Errors: 5xx and dropped connections raise :class:`TransientError` (the orchestration
retries); a refused connection, a rejected login or a missing service raise
:class:`SiteUnavailable`; 404 is :class:`NotFound`, 409 and quota refusals
:class:`Conflict`, 400 :class:`InvalidInput`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from seawall.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PermanentError,
    SeawallError,
    SiteUnavailable,
    TransientError,
)
from seawall.model import Site

T = TypeVar("T")


def status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return int(code) if isinstance(code, int) else None


class CloudConnection:
    """One openstacksdk connection to a site's cloud (opened on first use), shared by the
    driver's parts; every API call goes through :meth:`api` or :meth:`call`."""

    def __init__(
        self, site: Site, cloud: str, clouds_yaml: str | None, *, expect_project: str | None = None
    ) -> None:
        self.site = site
        self.cloud = cloud
        self.clouds_yaml = clouds_yaml
        #: a tenant's credentials must be scoped to its project (by name or id): checked
        #: on connecting, so a wrong clouds.yaml entry never acts in another project
        self.expect_project = expect_project
        self._conn: Any = None
        self._lock = threading.Lock()
        #: seconds spent inside cloud API calls and waiting for the cloud (status polls,
        #: retry back-off), summed over threads: what a run's wall time owes to the cloud
        self.cloud_seconds = 0.0
        self._clock = threading.local()
        self._clock_lock = threading.Lock()

    @property
    def conn(self) -> Any:
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    self._conn = self._connect()
        return self._conn

    def _connect(self) -> Any:
        try:
            import openstack.config
            import openstack.connection
        except ImportError as exc:  # pragma: no cover - openstacksdk is a dependency
            raise PermanentError(f"openstacksdk is not installed: {exc}") from None
        try:
            files = [self.clouds_yaml] if self.clouds_yaml else None
            config = openstack.config.OpenStackConfig(config_files=files)
            region = config.get_one(cloud=self.cloud)
        except Exception as exc:
            where = self.clouds_yaml or "the clouds.yaml search path"
            raise SiteUnavailable(
                f"openstack site {self.site.name!r}: cloud {self.cloud!r} is not usable from "
                f"{where}: {exc}"
            ) from None
        conn = openstack.connection.Connection(config=region)
        if self.expect_project:
            self._check_scope(conn, self.expect_project)
        return conn

    def _check_scope(self, conn: Any, project: str) -> None:
        """Forbidden unless the token of ``conn`` is scoped to ``project``."""
        try:
            access = conn.session.auth.get_access(conn.session)
            scoped = {str(access.project_id or ""), str(access.project_name or "")} - {""}
        except Exception as exc:
            raise SiteUnavailable(
                f"openstack site {self.site.name!r}: cannot authenticate as cloud "
                f"{self.cloud!r} for project {project!r}: {exc}"
            ) from None
        if project not in scoped:
            raise Forbidden(
                f"openstack site {self.site.name!r}: the credentials of project {project!r} "
                f"(cloud {self.cloud!r}) are scoped to {sorted(scoped) or 'no project'}; give "
                "that project's own (an application credential created in it)"
            )

    @contextlib.contextmanager
    def api(self, what: str) -> Iterator[None]:
        """Map SDK and transport errors onto seawall's tree, naming ``what`` was asked."""
        depth = getattr(self._clock, "depth", 0)
        self._clock.depth = depth + 1
        t0 = time.monotonic()
        try:
            yield
        except SeawallError:
            raise
        except Exception as exc:
            raise self.translate(exc, what) from None
        finally:
            self._clock.depth = depth
            if depth == 0:  # nested calls are already inside the outer one's time
                self._count_cloud(time.monotonic() - t0)

    def _count_cloud(self, seconds: float) -> None:
        with self._clock_lock:
            self.cloud_seconds += seconds

    def wait(self, seconds: float) -> None:
        """Sleep while the cloud works (a poll interval or a back-off), counted as its time."""
        if seconds > 0:
            time.sleep(seconds)
            self._count_cloud(seconds)

    def translate(self, exc: BaseException, what: str) -> SeawallError:
        import openstack.exceptions as os_exc
        from keystoneauth1 import exceptions as ka

        site = f"openstack site {self.site.name!r} ({self.cloud})"
        # openstacksdk wraps keystoneauth's errors (authorize, discovery): use the cause
        cause = exc.__cause__ or exc.__context__
        if (
            isinstance(exc, os_exc.SDKException)
            and not isinstance(exc, os_exc.HttpException)
            and isinstance(cause, ka.ClientException)
        ):
            return self.translate(cause, what)
        text = str(exc)
        if isinstance(exc, os_exc.SDKException) and not isinstance(exc, os_exc.HttpException):
            if "requires authentication" in text or "HTTP 401" in text:
                exc = ka.Unauthorized(text)
            elif "Unable to establish connection" in text:
                exc = ka.ConnectFailure(text)
        msg = str(getattr(exc, "details", "") or exc).strip() or type(exc).__name__
        if isinstance(exc, ka.Unauthorized) or status_of(exc) == 401:
            return SiteUnavailable(
                f"{site}: the credentials were rejected ({msg}); check the user, password "
                "and project in clouds.yaml"
            )
        if isinstance(exc, ka.ConnectFailure | ka.DiscoveryFailure) and not isinstance(
            exc, ka.ConnectTimeout
        ):
            text = str(exc)
            if "reset" in text.lower() or "aborted" in text.lower():
                return TransientError(f"{site}: connection dropped during {what}: {text}")
            return SiteUnavailable(f"{site}: cannot reach the endpoint for {what}: {text}")
        if isinstance(exc, ka.EndpointNotFound | os_exc.ServiceDiscoveryException):
            return SiteUnavailable(f"{site}: a service needed for {what} is missing: {msg}")
        if isinstance(exc, ka.ConnectTimeout | ka.RetriableConnectionFailure | ConnectionError):
            return TransientError(f"{site}: {what} timed out or was dropped: {msg}")
        return _http_error(exc, site, what, msg)

    def call(self, what: str, fn: Callable[[], T], *, retries: int = 2) -> T:
        """``fn()`` under :meth:`api`; reads are retried on transient errors."""
        delay = 0.5
        for attempt in range(retries + 1):
            try:
                with self.api(what):
                    return fn()
            except TransientError:
                if attempt == retries:
                    raise
                self.wait(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def maybe(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return self.call(what, fn)
        except NotFound:
            return None

    @property
    def project_id(self) -> str:
        return str(self.conn.current_project_id)

    def mine(self, items: Iterable[Any]) -> list[Any]:
        """The items of this project (an admin's listings hold every project's)."""
        pid = self.project_id
        return [i for i in items if getattr(i, "project_id", pid) in (pid, None)]


def _http_error(exc: BaseException, site: str, what: str, msg: str) -> SeawallError:
    """An error the API answered (by HTTP status, or the SDK's class for it)."""
    from openstack import exceptions as os_exc

    status = status_of(exc)
    if status == 404 or isinstance(exc, os_exc.NotFoundException):
        return NotFound(f"{site}: {what}: not found ({msg})")
    if status == 409 or isinstance(exc, os_exc.ConflictException):
        return Conflict(f"{site}: {what}: {msg}")
    if status in (403, 413) and ("quota" in msg.lower() or "limit" in msg.lower()):
        return Conflict(f"{site}: {what}: quota exceeded ({msg})")
    if status == 400 or isinstance(exc, os_exc.BadRequestException):
        return InvalidInput(f"{site}: {what}: {msg}")
    if status is not None and status >= 500:
        return TransientError(f"{site}: {what}: server error {status} ({msg})")
    if status == 403 or isinstance(exc, os_exc.ForbiddenException):
        return PermanentError(f"{site}: {what}: forbidden ({msg}); the user lacks a role")
    return PermanentError(f"{site}: {what}: {type(exc).__name__}: {msg}")
