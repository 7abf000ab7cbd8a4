"""units.py against go-units' documented behaviour (its examples and tests)."""

from __future__ import annotations

import pytest

from dockyard.cli import units
from dockyard.cli.units import GiB, KiB, MiB, PiB, TiB
from dockyard.errors import InvalidArgument

DAY = 24 * 3600
WEEK = 7 * DAY
MONTH = 30 * DAY
YEAR = 365 * DAY


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0B"),
        (975, "975B"),
        (999, "999B"),
        (1000, "1kB"),
        (1024, "1.024kB"),
        (1200, "1.2kB"),
        (1_000_000, "1MB"),
        (1_048_576, "1.049MB"),
        (2_000_000, "2MB"),
        (4_260_000, "4.26MB"),
        (3.42e9, "3.42GB"),
        (5.372e12, "5.372TB"),
        (2.22e15, "2.22PB"),
        (10_000_000_000_000 * 1e15, "1e+04YB"),  # past the last unit: stays in YB
    ],
)
def test_human_size(size: float, expected: str) -> None:
    assert units.human_size(size) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [(7_795_632, "7.8MB"), (142_000_000, "142MB"), (1234, "1.23kB"), (5_591_234, "5.59MB")],
)
def test_human_size_precision_3(size: int, expected: str) -> None:
    # docker's image tables use HumanSizeWithPrecision(size, 3)
    assert units.human_size(size, 3) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1024, "1KiB"),
        (1024 * 1024, "1MiB"),
        (2 * MiB, "2MiB"),
        (3.42 * GiB, "3.42GiB"),
        (5.372 * TiB, "5.372TiB"),
        (2.22 * PiB, "2.22PiB"),
        (KiB**5 * PiB, "1.049e+06YiB"),
        (500, "500B"),
    ],
)
def test_bytes_size(size: float, expected: str) -> None:
    assert units.bytes_size(size) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.45, "Less than a second"),
        (-5, "Less than a second"),
        (1, "1 second"),
        (45, "45 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (3 * 60, "3 minutes"),
        (35 * 60 + 40, "35 minutes"),
        (59 * 60, "59 minutes"),
        (3600, "About an hour"),
        (3600 + 29 * 60, "About an hour"),
        (3600 + 31 * 60, "2 hours"),  # hours round to nearest
        (3 * 3600 + 29 * 60, "3 hours"),
        (3 * 3600 + 31 * 60, "4 hours"),
        (24 * 3600, "24 hours"),
        (DAY + 12 * 3600, "36 hours"),
        (2 * DAY, "2 days"),
        (7 * DAY, "7 days"),
        (13 * DAY + 5 * 3600, "13 days"),
        (2 * WEEK, "2 weeks"),
        (2 * WEEK + 4 * DAY, "2 weeks"),
        (3 * WEEK, "3 weeks"),
        (MONTH, "4 weeks"),
        (MONTH + 2 * WEEK, "6 weeks"),
        (2 * MONTH, "2 months"),
        (3 * MONTH + WEEK, "3 months"),
        (5 * MONTH + 2 * WEEK, "5 months"),
        (13 * MONTH, "13 months"),
        (24 * MONTH, "24 months"),
        (24 * MONTH + 2 * WEEK, "2 years"),
        (3 * YEAR + 2 * MONTH, "3 years"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert units.human_duration(seconds) == expected


def test_time_ago() -> None:
    assert units.time_ago(1000, now=1000 + 180) == "3 minutes ago"
    assert units.time_ago(1000, now=1000) == "Less than a second ago"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32", 32),
        ("32b", 32),
        ("32B", 32),
        ("32k", 32 * KiB),
        ("32K", 32 * KiB),
        ("32kb", 32 * KiB),
        ("32Kib", 32 * KiB),
        ("32KIB", 32 * KiB),
        ("512m", 512 * MiB),
        ("32Mb", 32 * MiB),
        ("32Gb", 32 * GiB),
        ("32Tb", 32 * TiB),
        ("32Pb", 32 * PiB),
        ("32P", 32 * PiB),
        ("32.3", 32),
        ("32.3 mb", int(32.3 * MiB)),
        ("0.3MB", int(0.3 * MiB)),
    ],
)
def test_ram_in_bytes(text: str, expected: int) -> None:
    assert units.ram_in_bytes(text) == expected
    assert units.parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32", 32),
        ("32k", 32_000),
        ("32Kb", 32_000),
        ("32Mb", 32_000_000),
        ("32Pb", 32 * 10**15),
        ("32.5kB", 32_500),
        ("32.5 kB", 32_500),
        ("32.5 B", 32),
        ("0.3 K", 300),
    ],
)
def test_from_human_size(text: str, expected: int) -> None:
    assert units.from_human_size(text) == expected


@pytest.mark.parametrize("text", ["", "hello", "-32", ".3kB", " 32 ", "32m b", "32bm", "1.2.3k"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        units.ram_in_bytes(text)
    with pytest.raises(InvalidArgument):
        units.from_human_size(text)


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("sha256:" + "a" * 64, "a" * 12),
        ("0123456789abcdef0123", "0123456789ab"),
        ("short", "short"),
        ("", ""),
    ],
)
def test_truncate_id(ident: str, expected: str) -> None:
    assert units.truncate_id(ident) == expected
