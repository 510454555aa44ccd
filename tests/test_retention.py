"""The one retention algorithm (``seawall.retention``), shared by the protect flow and
``repo forget``. The policy-level examples are in tests/test_model.py."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import model, retention
from seawall.errors import InvalidInput
from seawall.retention import KeepRules, select_kept


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def newest_first(created: dict[str, float]) -> list[str]:
    return [cid for cid, _ in sorted(created.items(), key=lambda kv: (-kv[1], kv[0]))]


def test_model_and_repository_use_the_same_function() -> None:
    assert model.select_kept is retention.select_kept


def test_no_rule_keeps_everything_and_negative_counts_are_refused() -> None:
    created = {"a": 1.0, "b": 2.0}
    assert select_kept(created, KeepRules()) == {"a", "b"}
    assert not KeepRules() and KeepRules(daily=1)
    with pytest.raises(InvalidInput, match="cannot be negative"):
        KeepRules(weekly=-1)


def test_buckets_are_utc_calendar_periods() -> None:
    created = {
        "sun-late": ts("2024-01-07T23:30"),  # ISO week 2024-W01 ends on Sunday
        "mon-early": ts("2024-01-08T00:10"),  # 2024-W02
        "mon-noon": ts("2024-01-08T12:00"),
    }
    assert select_kept(created, KeepRules(weekly=2)) == {"mon-noon", "sun-late"}
    assert select_kept(created, KeepRules(daily=1)) == {"mon-noon"}
    assert select_kept(created, KeepRules(hourly=2)) == {"mon-noon", "mon-early"}


def test_sub_microsecond_differences_still_order_items() -> None:
    assert select_kept({"a": 0.0, "b": 5e-324}, KeepRules(last=1)) == {"b"}


rules_st = st.builds(
    KeepRules,
    last=st.integers(0, 6),
    hourly=st.integers(0, 6),
    daily=st.integers(0, 6),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 6),
)
#: Times over a few months, often close together, so buckets hold several items.
created_st = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.floats(1.7e9, 1.7e9 + 120 * 86400, allow_nan=False) | st.sampled_from([1.7e9, 1.7e9 + 1]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(created_st, rules_st)
def test_kept_is_a_subset_and_keeps_the_newest(created: dict[str, float], rules: KeepRules) -> None:
    kept = select_kept(created, rules)
    assert kept <= set(created)
    if created:
        assert newest_first(created)[0] in kept


@settings(max_examples=300, deadline=None)
@given(created_st, rules_st)
def test_keep_last_keeps_the_n_newest(created: dict[str, float], rules: KeepRules) -> None:
    kept = select_kept(created, rules)
    assert set(newest_first(created)[: rules.last]) <= kept
    only_last = select_kept(created, KeepRules(last=rules.last))
    if rules.last:
        assert only_last == set(newest_first(created)[: rules.last])


@settings(max_examples=300, deadline=None)
@given(created_st, rules_st)
def test_applying_a_policy_again_keeps_the_same(
    created: dict[str, float], rules: KeepRules
) -> None:
    kept = select_kept(created, rules)
    assert select_kept({k: created[k] for k in kept}, rules) == kept


@settings(max_examples=200, deadline=None)
@given(created_st, rules_st, st.sampled_from(["last", "hourly", "daily", "weekly", "monthly"]))
def test_a_more_generous_policy_never_keeps_less(
    created: dict[str, float], rules: KeepRules, field: str
) -> None:
    counts = {f: getattr(rules, f) for f in ("last", "hourly", "daily", "weekly", "monthly")}
    counts[field] += 1
    if not rules:
        return  # no rule keeps everything, which any rule can only narrow
    assert select_kept(created, KeepRules(**counts)) >= select_kept(created, rules)


@settings(max_examples=200, deadline=None)
@given(created_st, rules_st)
def test_at_most_one_item_per_bucket_beyond_keep_last(
    created: dict[str, float], rules: KeepRules
) -> None:
    if not rules:
        return
    kept = select_kept(created, rules)
    bound = rules.last + rules.hourly + rules.daily + rules.weekly + rules.monthly
    assert len(kept) <= bound
