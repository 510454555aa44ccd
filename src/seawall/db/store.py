"""The :class:`StateStore`: one open state database and its parts, under one name.

The work is done by four parts that share one :class:`~seawall.db.connection.Database`
(one engine, one way to run a transaction): :class:`CatalogueStore`, :class:`RunStore`,
:class:`EventStore` and :class:`LeaseStore`. ``StateStore`` opens the database, brings
its schema to head and offers every method of every part under the part's own name
(``store.set_step`` is ``store.runs.set_step``), so callers need not know the split and a
consumer that needs one concern can be handed just that part (``store.runs``).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from seawall.db.catalogue import CatalogueStore
from seawall.db.connection import Database, default_url
from seawall.db.events import EventStore
from seawall.db.leases import LeaseStore
from seawall.db.migration import migrate_to_head
from seawall.db.runs import RunStore

_Part = TypeVar("_Part")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Delegated(Generic[_Part, _P, _R]):
    """A method of :class:`StateStore` that is the same-named method of one of its parts.

    Typed with the part's signature, so mypy checks ``store.add_site(...)`` against
    :meth:`CatalogueStore.add_site`; the attribute must carry the method's own name.
    """

    def __init__(self, part: str, method: Callable[Concatenate[_Part, _P], _R]) -> None:
        self._part = part
        self._method = method
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self._method.__name__:
            raise TypeError(f"{owner.__name__}.{name} must not alias {self._method.__qualname__}")

    @overload
    def __get__(self, store: None, owner: type | None = None) -> _Delegated[_Part, _P, _R]: ...

    @overload
    def __get__(self, store: StateStore, owner: type | None = None) -> Callable[_P, _R]: ...

    def __get__(self, store: StateStore | None, owner: type | None = None) -> Any:
        if store is None:
            return self
        return cast("Callable[_P, _R]", types.MethodType(self._method, getattr(store, self._part)))


class StateStore:
    """The state database of one seawall installation (see :mod:`seawall.db`).

    Opening it migrates the schema to head (one process at a time); each public method
    is one transaction of one part.
    """

    url: str
    catalogue: CatalogueStore  #: sites, policies, workloads, plans, checkpoint cache
    runs: RunStore  #: runs, steps, cancel requests, what runs created
    events: EventStore  #: events, usage records and the audit trail
    leases: LeaseStore  #: the scheduler's leader and operation leases

    def __init__(self, url: str | None = None, *, busy_timeout: float = 30.0) -> None:
        self.url = url or default_url()
        self._db = Database(self.url, busy_timeout=busy_timeout)
        try:
            migrate_to_head(self._db)
        except BaseException:
            self._db.close()
            raise
        self.catalogue = CatalogueStore(self._db)
        self.runs = RunStore(self._db)
        self.events = EventStore(self._db)
        self.leases = LeaseStore(self._db)

    def close(self) -> None:
        """Release every pooled connection; the store must not be used afterwards."""
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self._db.shown!r})"

    # ---- catalogue: sites, policies, workloads, plans, checkpoint cache ---------------

    add_site = _Delegated("catalogue", CatalogueStore.add_site)
    get_site = _Delegated("catalogue", CatalogueStore.get_site)
    list_sites = _Delegated("catalogue", CatalogueStore.list_sites)
    remove_site = _Delegated("catalogue", CatalogueStore.remove_site)
    update_site = _Delegated("catalogue", CatalogueStore.update_site)
    add_policy = _Delegated("catalogue", CatalogueStore.add_policy)
    get_policy = _Delegated("catalogue", CatalogueStore.get_policy)
    list_policies = _Delegated("catalogue", CatalogueStore.list_policies)
    remove_policy = _Delegated("catalogue", CatalogueStore.remove_policy)
    add_workload = _Delegated("catalogue", CatalogueStore.add_workload)
    get_workload = _Delegated("catalogue", CatalogueStore.get_workload)
    list_workloads = _Delegated("catalogue", CatalogueStore.list_workloads)
    update_workload = _Delegated("catalogue", CatalogueStore.update_workload)
    remove_workload = _Delegated("catalogue", CatalogueStore.remove_workload)
    set_plan = _Delegated("catalogue", CatalogueStore.set_plan)
    get_plan = _Delegated("catalogue", CatalogueStore.get_plan)
    list_plans = _Delegated("catalogue", CatalogueStore.list_plans)
    put_checkpoint = _Delegated("catalogue", CatalogueStore.put_checkpoint)
    get_checkpoint = _Delegated("catalogue", CatalogueStore.get_checkpoint)
    list_checkpoints = _Delegated("catalogue", CatalogueStore.list_checkpoints)
    checkpoint_sites = _Delegated("catalogue", CatalogueStore.checkpoint_sites)
    remove_checkpoint = _Delegated("catalogue", CatalogueStore.remove_checkpoint)
    checkpoint_times = _Delegated("catalogue", CatalogueStore.checkpoint_times)

    # ---- runs: runs, steps, cancel requests, created resources ------------------------

    add_run = _Delegated("runs", RunStore.add_run)
    get_run = _Delegated("runs", RunStore.get_run)
    list_runs = _Delegated("runs", RunStore.list_runs)
    latest_runs = _Delegated("runs", RunStore.latest_runs)
    set_run_state = _Delegated("runs", RunStore.set_run_state)
    update_run_result = _Delegated("runs", RunStore.update_run_result)
    request_cancel = _Delegated("runs", RunStore.request_cancel)
    cancel_requested = _Delegated("runs", RunStore.cancel_requested)
    set_step = _Delegated("runs", RunStore.set_step)
    list_steps = _Delegated("runs", RunStore.list_steps)
    record_created = _Delegated("runs", RunStore.record_created)
    list_created = _Delegated("runs", RunStore.list_created)
    mark_removed = _Delegated("runs", RunStore.mark_removed)

    # ---- events, usage and the audit trail; leases ---------------------------------

    add_event = _Delegated("events", EventStore.add_event)
    list_events = _Delegated("events", EventStore.list_events)
    last_event_id = _Delegated("events", EventStore.last_event_id)
    add_usage = _Delegated("events", EventStore.add_usage)
    usage = _Delegated("events", EventStore.usage)
    add_audit = _Delegated("events", EventStore.add_audit)
    list_audit = _Delegated("events", EventStore.list_audit)
    acquire_lease = _Delegated("leases", LeaseStore.acquire_lease)
    release_lease = _Delegated("leases", LeaseStore.release_lease)
