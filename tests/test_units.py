"""seawall.units: the one byte formatter and the one size/rate grammar, and the model's
bandwidth fields that use it (so policy files and the API read rates as the CLI does)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.errors import InvalidInput
from seawall.model import Bandwidth, Policy, dump, load
from seawall.units import UNITS, format_bytes, parse_rate, parse_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1 << 20),
        ("50M", 50_000_000),
        ("50MB", 50_000_000),
        ("50MiB", 50 * MiB),
        ("50Mi", 50 * MiB),
        ("50mib", 50 * MiB),
        ("10 kb", 10_000),
        ("1.5GiB", 3 * GiB // 2),
        (" 2 TiB ", 2 * TiB),
        ("3T", 3 * 10**12),
        ("7B", 7),
        ("0.5K", 500),
        ("1.0000001K", 1000),  # rounded down to whole bytes
        (4096, 4096),  # YAML and JSON give numbers
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size
    assert parse_rate(text) == size  # a rate is a size per second: same grammar


@pytest.mark.parametrize(
    ("text", "rate"),
    [("50MiB/s", 50 * MiB), ("10MB/s", 10**7), ("50M/s", 5 * 10**7), ("1K / sec", 1000)],
)
def test_rates(text: str, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text",
    [
        *("", "fast", "/s", "-5", "5 MiB/s/s", "1e6", ".5K", "5 Mb/h", "5PB", "M", "1,000"),
        "\u0665M",  # ARABIC-INDIC DIGIT FIVE: digits are ASCII only
        True,
        -1,
    ],
)
def test_malformed_rates_name_the_field(text: str | int) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_rate(text, field="--limit-rate")
    assert exc.value.field == "--limit-rate"
    assert str(exc.value).startswith(f"--limit-rate: {text!r} is ")
    assert "50MiB/s" in str(exc.value)  # says what a good one looks like


def test_a_size_has_no_per_second() -> None:
    with pytest.raises(InvalidInput, match=r"^chunk: '4MiB/s' is not a size like 10GiB"):
        parse_size("4MiB/s", field="chunk")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "—"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * MiB, "5.0 MiB"),
        (3 * GiB // 2, "1.5 GiB"),
        (5000 * TiB, "5000.0 TiB"),  # the largest unit goes on counting
        (-2048, "-2.0 KiB"),
    ],
)
def test_format_bytes(n: float | None, text: str) -> None:
    assert format_bytes(n) == text


@given(st.integers(min_value=0, max_value=1 << 50))
def test_formatted_sizes_parse_back_within_the_shown_precision(n: int) -> None:
    text = format_bytes(n)
    unit = text.split()[1]
    assert abs(parse_size(text) - n) <= 0.05 * UNITS[unit.upper()] + 1


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(sorted(UNITS)),
    st.sampled_from(["", "/s", " /s", "/sec"]),
    st.booleans(),
)
def test_every_unit_in_any_case(number: int, unit: str, per: str, lower: bool) -> None:
    text = f"{number}{unit.lower() if lower else unit}{per}"
    assert parse_rate(text) == number * UNITS[unit]


def test_policy_bandwidth_reads_the_same_grammar() -> None:
    policy = load(
        Policy,
        {
            "name": "p",
            "bandwidth": {
                "bytes_per_second": "50M",
                "windows": [{"start_hour": 8, "end_hour": 18, "bytes_per_second": "1MiB/s"}],
            },
        },
    )
    assert policy.bandwidth.bytes_per_second == 50_000_000
    assert policy.bandwidth.rate_at(9) == MiB
    assert dump(policy)["bandwidth"]["bytes_per_second"] == 50_000_000  # stored as bytes
    plain = load(Policy, {"name": "p", "bandwidth": {"bytes_per_second": 5}})
    assert plain.bandwidth == Bandwidth(bytes_per_second=5)  # integers as before


@pytest.mark.parametrize(
    ("bandwidth", "message"),
    [
        (
            {"bytes_per_second": "fast"},
            "policy.bandwidth.bytes_per_second: 'fast' is not a rate like 50MiB/s",
        ),
        (
            {"windows": [{"start_hour": 1, "end_hour": 2, "bytes_per_second": "9 parsecs"}]},
            "policy.bandwidth.windows[0].bytes_per_second: '9 parsecs' is not a rate",
        ),
        (
            {"bytes_per_second": [1]},
            "policy.bandwidth.bytes_per_second: expected an integer, got [1]",
        ),
    ],
)
def test_policy_bandwidth_refuses_malformed_rates(
    bandwidth: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        load(Policy, {"name": "p", "bandwidth": bandwidth})
    assert str(exc.value).startswith(message)
