"""schemathesis against the served ``/v1/openapi.json``: no 5xx, no schema violations.

An admin caller over two empty sim sites, a policy and a workload whose selector matches
nothing, so operations preflight (and fail fast) instead of running for real.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from seawall.api.app import create_app
from seawall.api.auth import Authenticator, LocalTokens
from seawall.model import Selector
from seawall.service import Service

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("fuzz")
    saved = {k: os.environ.get(k) for k in ("SEAWALL_PASSPHRASE", "SEAWALL_KDF", "SEAWALL_DB_URL")}
    os.environ.update(SEAWALL_PASSPHRASE="fuzz-passphrase", SEAWALL_KDF="fast")
    os.environ.pop("SEAWALL_DB_URL", None)
    svc = Service(root / "home")
    try:
        for name in ("a", "b"):
            svc.add_site(
                name,
                "sim",
                {"path": str(root / "sites" / name)},
                str(root / "repos" / name),
                init_repository=True,
                key_from="a" if name == "b" else None,
            )
        svc.create_policy({"name": "minute", "rpo_seconds": 60})
        svc.create_workload("w1", "a", Selector.parse("members:nothing"), "minute", ["b"])
        tokens = LocalTokens(Path(svc.home))
        TOKEN["admin"] = tokens.issue("admin", admin=True)
        yield create_app(svc, Authenticator(tokens))
    finally:
        svc.close()
        from seawall.clouds.sim import destroy_site

        for name in ("a", "b"):
            destroy_site(root / "sites" / name)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.slow
def test_api_conforms_to_its_openapi(fuzz_app: Any) -> None:
    """Every operation, 25 generated cases each (the pytest plugin of schemathesis does
    not load with this pytest, so the strategies are driven with Hypothesis directly).

    Every check runs except "schema-valid data is accepted": names, selectors, cron
    expressions and preflights are validated beyond what the schema can say, and those
    answers (422/409 problem+json) are documented responses."""
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", fuzz_app)
    headers = {"Authorization": f"Bearer {TOKEN['admin']}"}
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{op.method.upper()} {op.path}: {exc}")
    assert not failures, "\n\n".join(failures)
