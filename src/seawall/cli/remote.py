"""``seawall --url URL ...``: the command line as a client of a running ``seawall serve``.

:class:`Remote` is a small client of the REST API (``/v1``, :mod:`seawall.api.app`) with
exactly what the CLI's client mode needs. What it keeps true:

- **Same errors, same exit codes.** A problem+json answer is turned back into the
  :class:`~seawall.errors.SeawallError` class the server raised (its ``title`` is the
  class name), so a command fails with the message and exit code it has locally; 401 and
  403 become the API's own :class:`~seawall.api.auth.Unauthorized` and
  :class:`~seawall.api.auth.Forbidden`; a server that cannot be reached is
  :class:`~seawall.errors.SiteUnavailable`.
- **Whole lists.** Lists are read page by page (``limit``/``marker``) to the end.
- **A started run is started once.** ``POST /v1/workloads/{name}/runs`` carries an
  ``Idempotency-Key``; when the answer is lost the POST is repeated with the same key and
  the server returns the run it started the first time.
- **Model objects where the CLI prints them.** Runs and steps come back as
  :class:`~seawall.model.Run` and :class:`~seawall.model.Step`, so both modes print them
  with the same code.

Tokens are never part of a message.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from seawall import __version__, errors
from seawall.api.auth import Forbidden, Unauthorized
from seawall.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PreflightFailed,
    SeawallError,
    SiteUnavailable,
    TransientError,
)
from seawall.model import FINAL_RUN_STATES, Run, RunKind, RunState, Step, StepState

PAGE = 500  #: items asked for per page (the API allows up to 1000)

#: The error tree by class name: the ``title`` of the API's problem+json answers.
KNOWN: dict[str, type[SeawallError]] = {
    name: obj
    for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, SeawallError)
}

#: When the title names no class of the tree (a proxy, a route that does not exist).
BY_STATUS: dict[int, type[SeawallError]] = {
    400: InvalidInput,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    502: TransientError,
    503: TransientError,
    504: TransientError,
}

#: The workload fields ``seawall workload list`` prints (the model's, in its order).
WORKLOAD_FIELDS = ("name", "site", "selector", "policy", "targets", "project")


class Remote:
    """The ``/v1`` API of one seawall server, as the CLI's client mode uses it.

    ``token`` is sent as ``Authorization: Bearer`` (a local API token or a Keystone
    token); ``auth_token`` (from ``OS_AUTH_TOKEN``) as ``X-Auth-Token`` when there is no
    ``token``. The server accepts either kind in either header.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        auth_token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = base_url(url)
        self.timeout = timeout
        self.has_token = bool(token or auth_token)
        headers = {"User-Agent": f"seawall-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif auth_token:
            headers["X-Auth-Token"] = auth_token
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    # -- catalogue ----------------------------------------------------------------------

    def sites(self) -> list[dict[str, Any]]:
        return self.pages("/v1/sites")

    def policies(self) -> list[dict[str, Any]]:
        return self.pages("/v1/policies")

    def workloads(self) -> list[dict[str, Any]]:
        return self.pages("/v1/workloads")

    def workload(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"/v1/workloads/{q(name)}")
        return body

    def checkpoint_rows(self, workload: str | None = None) -> list[dict[str, Any]]:
        """Checkpoints newest first, in the rows ``seawall checkpoint list`` prints.

        The API lists a checkpoint once; which sites hold a copy is asked site by site
        (one list per site, which is what ``?site=`` answers)."""
        cps = self.pages("/v1/checkpoints", {"workload": workload})
        copies: dict[str, list[str]] = {c["id"]: [] for c in cps}
        if cps:
            for site in sorted(s["name"] for s in self.sites()):
                for c in self.pages("/v1/checkpoints", {"workload": workload, "site": site}):
                    if c["id"] in copies:
                        copies[c["id"]].append(site)
        return [
            {
                "id": c["id"],
                "workload": c["workload"],
                "site": c["site"],
                "created_at": c["created_at"],
                "volumes": len(c["volumes"]),
                "consistency": c["consistency"],
                "bytes_read": sum(int(v.get("bytes_read", 0)) for v in c["volumes"]),
                "bytes_stored": sum(int(v.get("bytes_stored", 0)) for v in c["volumes"]),
                "copies": copies[c["id"]],
            }
            for c in cps
        ]

    # -- runs ---------------------------------------------------------------------------

    def runs(self, workload: str | None = None, most: int = 50) -> list[Run]:
        """The newest ``most`` runs (``seawall run list`` shows 50 locally too)."""
        return [self._run(r) for r in self.pages("/v1/runs", {"workload": workload}, most=most)]

    def run(self, run_id: str) -> tuple[Run, list[Step]]:
        body = self.request("GET", f"/v1/runs/{q(run_id)}")
        run = self._run(body)
        return run, self._steps(run.id, body.get("steps") or [])

    def cancel(self, run_id: str) -> Run:
        return self._run(self.request("POST", f"/v1/runs/{q(run_id)}/cancel"))

    def start(
        self,
        operation: str,
        workload: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
    ) -> Run:
        """Start an operation; the server preflights it first (problems: PreflightFailed)."""
        body = {"operation": operation, "target": target, "checkpoint_id": checkpoint_id}
        key = f"seawall-cli-{uuid.uuid4()}"
        answer = self.request(
            "POST",
            f"/v1/workloads/{q(workload)}/runs",
            json={k: v for k, v in body.items() if v is not None},
            headers={"Idempotency-Key": key},
            retries=2,
        )
        return self._run(answer)

    def wait_for_run(
        self,
        run_id: str,
        on_update: Callable[[Run, list[Step]], None] | None = None,
        *,
        interval: float = 0.5,
        patience: float = 120.0,
    ) -> tuple[Run, list[Step]]:
        """Poll ``GET /v1/runs/{id}`` until the run reaches a final state.

        A server that is briefly unreachable (restarted: it resumes the run) is waited
        for up to ``patience`` seconds since its last answer."""
        last_answer = time.monotonic()
        while True:
            try:
                run, steps = self.run(run_id)
            except TransientError:
                if time.monotonic() - last_answer > patience:
                    raise
                time.sleep(min(5.0, interval * 4))
                continue
            last_answer = time.monotonic()
            if on_update is not None:
                on_update(run, steps)
            if run.state in FINAL_RUN_STATES:
                return run, steps
            time.sleep(interval)

    # -- audit --------------------------------------------------------------------------

    def audit(self, query: Mapping[str, Any], *, most: int) -> list[dict[str, Any]]:
        """Audit records newest first (``GET /v1/audit``, admins only), at most ``most``."""
        return self.pages("/v1/audit", query, most=most)

    # -- HTTP ---------------------------------------------------------------------------

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None, *, most: int | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a paged list (or the first ``most``), following ``next_marker``."""
        items: list[dict[str, Any]] = []
        query = {k: v for k, v in (params or {}).items() if v is not None}
        while True:
            query["limit"] = PAGE if most is None else min(PAGE, most - len(items))
            body = self.request("GET", path, params=query)
            items.extend(body.get("items") or [])
            marker = body.get("next_marker")
            if not marker or (most is not None and len(items) >= most):
                return items
            query["marker"] = marker

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retries: int = 0,
    ) -> Any:
        """One call, its answer as JSON; failures as the error tree (see the module doc).

        ``retries`` repeats a request whose answer was lost after it was sent; only for
        requests that are safe to repeat (reads, or a POST with an Idempotency-Key)."""
        for attempt in range(retries + 1):
            try:
                resp = self._http.request(method, path, params=params, json=json, headers=headers)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise SiteUnavailable(
                    f"cannot reach seawall at {self.url}: {reason(exc)} "
                    "(is `seawall serve` running there?)"
                ) from None
            except httpx.TimeoutException:
                if attempt == retries:
                    raise SiteUnavailable(
                        f"seawall at {self.url} did not answer {method} {path} "
                        f"within {self.timeout:g} s"
                    ) from None
            except httpx.TransportError as exc:
                if attempt == retries:
                    raise SiteUnavailable(
                        f"lost the connection to seawall at {self.url}: {reason(exc)}"
                    ) from None
            time.sleep(1.0 + attempt)
        if resp.status_code >= 400:
            raise self.error(resp)
        try:
            return resp.json()
        except ValueError:
            raise SeawallError(
                f"{self.url} answered {method} {path} with something that is not JSON; "
                "is --url the address of `seawall serve`?"
            ) from None

    def error(self, resp: httpx.Response) -> SeawallError:
        """The error tree's class for an error answer (problem+json, or anything else)."""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        status = resp.status_code
        title = str(body.get("title") or resp.reason_phrase or f"HTTP {status}")
        detail = " ".join(str(body.get("detail") or title).split())  # always one line
        if status == 401:
            if not self.has_token:
                return Unauthorized(
                    f"seawall at {self.url} needs a token: pass --token, or set "
                    "SEAWALL_TOKEN (or OS_AUTH_TOKEN for a Keystone token)"
                )
            return Unauthorized(
                f"authentication failed at {self.url}: {detail}; check --token, "
                "SEAWALL_TOKEN or OS_AUTH_TOKEN"
            )
        if status == 403:
            return Forbidden(f"not allowed at {self.url}: {detail}")
        cls = KNOWN.get(title)
        if cls is PreflightFailed:
            problems = body.get("problems")
            return PreflightFailed([str(p) for p in problems] if problems else [detail])
        if cls is None:  # not seawall's own answer: say where it came from
            cls = BY_STATUS.get(status, SeawallError)
            where = f"{resp.request.method} {resp.request.url.path}"
            said = "" if detail == title else f": {detail}"
            detail = f"seawall at {self.url} answered {where} with {status} {title}{said}"
        if issubclass(cls, InvalidInput):
            invalid = InvalidInput(detail)  # the detail already names the field
            invalid.field = body.get("field")
            return invalid
        return cls(detail)

    # -- the API's runs as model objects --------------------------------------------------

    def _run(self, data: Any) -> Run:
        try:
            return Run(
                id=str(data["id"]),
                kind=RunKind(data["kind"]),
                workload=str(data["workload"]),
                state=RunState(data["state"]),
                created_at=float(data["created_at"]),
                finished_at=float(data["finished_at"]),
                params=dict(data.get("params") or {}),
                result=dict(data.get("result") or {}),
                error=str(data.get("error") or ""),
                project=str(data.get("project") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._not_understood("run", exc) from None

    def _steps(self, run_id: str, data: list[Any]) -> list[Step]:
        try:
            return [
                Step(
                    run_id=run_id,
                    name=str(s["name"]),
                    state=StepState(s["state"]),
                    progress=float(s["progress"]),
                    detail=str(s.get("detail") or ""),
                    started_at=float(s.get("started_at") or 0.0),
                    finished_at=float(s.get("finished_at") or 0.0),
                )
                for s in data
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._not_understood("step", exc) from None

    def _not_understood(self, what: str, exc: Exception) -> SeawallError:
        return SeawallError(
            f"seawall at {self.url} sent a {what} this client does not understand "
            f"({type(exc).__name__}: {exc}); is this seawall older than the server?"
        )


def workload_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """An API workload as a row of ``seawall workload list`` (the model's fields and the
    achieved RPO, exactly the local row)."""
    rpo = item.get("rpo") or {}
    return {
        **{k: item.get(k) for k in WORKLOAD_FIELDS},
        "achieved_rpo_seconds": rpo.get("achieved_rpo_seconds"),
    }


def base_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing ``/`` or ``/v1``."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(
            f"{url!r} is not the address of a seawall server, like http://127.0.0.1:8470",
            field="--url",
        )
    text = str(parsed.copy_with(query=None, fragment=None)).rstrip("/")
    return text.removesuffix("/v1")


def q(segment: str) -> str:
    """One path segment, escaped (names and ids come from the command line)."""
    return quote(segment, safe="")


def reason(exc: Exception) -> str:
    """A transport error in a few words: ``connection refused``, not ``[Errno 111] ...``."""
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip()) or type(exc).__name__
    return text[:1].lower() + text[1:]
