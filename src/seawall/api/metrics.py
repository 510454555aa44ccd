"""Prometheus metrics at ``/metrics``, computed from the state database at scrape time.

Figures come from the database rather than in-process counters, so every ``seawall
serve`` process (leader or not) exposes the same truth, including runs started by the
CLI or by another process:

- ``seawall_workload_achieved_rpo_seconds`` / ``seawall_workload_rpo_seconds`` /
  ``seawall_workload_rpo_compliant`` per workload;
- ``seawall_run_duration_seconds`` (histogram over the newest 5,000 finished runs, by kind);
- ``seawall_runs`` (by kind and state) and ``seawall_run_failures`` (failed, reverted,
  partially failed; by kind) over the same window;
- ``seawall_usage_total`` per project and metric (bytes protected/stored/replicated,
  compute-hours);
- ``seawall_last_rto_seconds`` per workload (the newest measured RTO).

Workload names cross projects, so ``/metrics`` needs an admin token unless the server
was started with ``--public-metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from seawall.api.auth import Authenticator
from seawall.service import Service

BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
FAILED = ("failed", "reverted", "partially_failed")


class StateCollector:
    def __init__(self, service: Service) -> None:
        self.svc = service

    def collect(self) -> Iterator[Metric]:
        labels = ["workload", "project", "policy"]
        achieved = GaugeMetricFamily(
            "seawall_workload_achieved_rpo_seconds",
            "Age of the newest checkpoint at the recovery site",
            labels=labels,
        )
        target = GaugeMetricFamily(
            "seawall_workload_rpo_seconds", "The policy's RPO", labels=labels
        )
        compliant = GaugeMetricFamily(
            "seawall_workload_rpo_compliant",
            "1 if the achieved RPO is within policy",
            labels=labels,
        )
        for row in self.svc.rpo_report():
            lv = [row["workload"], row["project"], row["policy"]]
            if row["achieved_rpo_seconds"] is not None:
                achieved.add_metric(lv, row["achieved_rpo_seconds"])
            if row["rpo_seconds"] is not None:
                target.add_metric(lv, row["rpo_seconds"])
            compliant.add_metric(lv, 1.0 if row["compliant"] else 0.0)
        yield from (achieved, target, compliant)

        runs = self.svc.list_runs(limit=5000)
        counts: dict[tuple[str, str], int] = {}
        durations: dict[str, list[float]] = {}
        for r in runs:
            counts[(r.kind.value, r.state.value)] = counts.get((r.kind.value, r.state.value), 0) + 1
            d = r.result.get("duration_seconds")
            if isinstance(d, int | float):
                durations.setdefault(r.kind.value, []).append(float(d))
        total = GaugeMetricFamily(
            "seawall_runs", "Runs by kind and state (newest 5000)", labels=["kind", "state"]
        )
        failures = GaugeMetricFamily(
            "seawall_run_failures",
            "Runs that failed, reverted or partially failed",
            labels=["kind"],
        )
        failed: dict[str, int] = {}
        for (kind, state), n in sorted(counts.items()):
            total.add_metric([kind, state], n)
            if state in FAILED:
                failed[kind] = failed.get(kind, 0) + n
        for kind, n in sorted(failed.items()):
            failures.add_metric([kind], n)
        hist = HistogramMetricFamily(
            "seawall_run_duration_seconds", "Run durations (newest 5000)", labels=["kind"]
        )
        for kind, values in sorted(durations.items()):
            buckets: list[tuple[str, float]] = []
            for b in BUCKETS:
                le = "+Inf" if b == float("inf") else str(b)
                buckets.append((le, float(sum(1 for v in values if v <= b))))
            hist.add_metric([kind], buckets, sum(values))
        yield from (total, failures, hist)

        usage = GaugeMetricFamily(
            "seawall_usage_total",
            "Usage per project (bytes protected/stored/replicated, compute_hours)",
            labels=["project", "metric"],
        )
        for project, metrics in sorted(self.svc.usage().items()):
            for metric, amount in sorted(metrics.items()):
                usage.add_metric([project, metric], amount)
        yield usage

        rto = GaugeMetricFamily(
            "seawall_last_rto_seconds", "Newest measured RTO", labels=["workload", "kind"]
        )
        for (workload, kind), run in sorted(self.svc.latest_runs().items()):
            value = run.result.get("rto_seconds")
            if isinstance(value, int | float):
                rto.add_metric([workload, kind], float(value))
        yield rto


def metrics_route(
    app: FastAPI,
    service: Service,
    auth: Authenticator,
    token_of: Callable[[Request], str | None],
    *,
    public: bool = False,
) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(service))

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not public:
            caller = auth.principal(token_of(request))
            app.state.rbac.authorize(caller, "seawall:metrics:get", caller.project)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.state.metrics_registry = registry
