"""``Repository.forget``: retention per label group, cascading to volume images."""

from __future__ import annotations

import pytest
from repo_helpers import BytesSource, make_volume

from seawall.errors import InvalidInput
from seawall.repo import Repository


def _checkpoints(repo: Repository) -> dict[str, list[str]]:
    """Three checkpoints of workload a and two of b, each keeping its own volume image."""
    ids: dict[str, list[str]] = {"a": [], "b": []}
    for n, workload in enumerate(["a", "b", "a", "b", "a"]):
        img = repo.write_volume(f"{workload}-disk", BytesSource(make_volume(20_000, seed=n)))
        cid = repo.save_manifest(
            "checkpoint", {"workload": workload}, {"n": n}, id=f"cp-{n}", refs=[img.id]
        )
        ids[workload].append(cid)
    return ids


def test_forget_keeps_the_newest_per_group_and_takes_their_images(repo: Repository) -> None:
    ids = _checkpoints(repo)
    assert repo.forget("checkpoint", ["workload"], keep_last=1, dry_run=True) == [
        *ids["a"][:2],
        *ids["b"][:1],
    ]
    assert len(repo.list_volumes()) == 5  # a dry run changes nothing
    removed = repo.forget("checkpoint", ["workload"], keep_last=1)
    left = {m.id for m in repo.list_manifests("checkpoint")}
    assert left == {ids["a"][-1], ids["b"][-1]}
    assert set(ids["a"][:2] + ids["b"][:1]) <= set(removed)
    assert len(repo.list_volumes()) == 2  # the forgotten checkpoints' images went too
    assert repo.check().ok


def test_forget_without_groups_and_with_calendar_rules(repo: Repository) -> None:
    _checkpoints(repo)
    every = repo.list_manifests("checkpoint")
    doomed = repo.forget("checkpoint", [], keep_hourly=3, dry_run=True)
    kept = [m for m in every if m.id not in doomed]
    # the newest of each hour that holds a checkpoint (all five were made within a
    # second or two, so normally one hour and one kept)
    hours = [m.created_at.replace(minute=0, second=0, microsecond=0) for m in kept]
    assert kept[-1].id == "cp-4" and len(set(hours)) == len(hours) <= 3
    for m in every:
        if m.id in doomed:
            same_hour = [k for k in kept if k.created_at.hour == m.created_at.hour]
            assert same_hour and same_hour[0].created_at >= m.created_at


def test_forget_refuses_no_rule_and_negative_counts(repo: Repository) -> None:
    _checkpoints(repo)
    with pytest.raises(InvalidInput, match="refusing to forget everything"):
        repo.forget("checkpoint", ["workload"])
    with pytest.raises(InvalidInput, match="cannot be negative"):
        repo.forget("checkpoint", ["workload"], keep_last=-1)
    assert len(repo.list_manifests("checkpoint")) == 5
