"""The department -> region table against the ministry's definitive tables of both rounds.

The official department and region totals are read here with plain ``csv``; summing each region's
departments through the table must give the official region row exactly, figure by figure.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from stream.domain.regions import REGION_NAMES, REGION_OF_DEPARTMENT, region_of

#: The ministry's codes that belong to no region: overseas collectivities and the French abroad.
NO_REGION = {"ZN", "ZP", "ZS", "ZW", "ZX", "ZZ"}
#: The figures compared (besides every candidate column, which comes after ``exprimes``).
FIGURES = ("inscrits", "votants", "blancs", "nuls", "exprimes")


def official_table(path: Path) -> dict[str, dict[str, int]]:
    """Area code -> {figure or candidate: count}, from an ``off_T*_definitif_*.csv`` file."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        counted = [*FIGURES, *header[header.index("exprimes") + 1 :]]
        table: dict[str, dict[str, int]] = {}
        for row in reader:
            values = dict(zip(header, row))
            code = row[0]
            assert code not in table, f"{path.name}: {code} twice"
            table[code] = {name: int(values[name]) for name in counted}
    assert table
    return table


@pytest.fixture(scope="module", params=[1, 2], ids=["round1", "round2"])
def tables(request, data_dir: Path) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    official = data_dir / "official"
    departments = official_table(official / f"off_T{request.param}_definitif_departement.csv")
    regions = official_table(official / f"off_T{request.param}_definitif_region.csv")
    return departments, regions


def test_region_sums_equal_the_official_region_rows(tables) -> None:
    departments, regions = tables
    sums: dict[str, Counter[str]] = {}
    for code, figures in departments.items():
        region = region_of(code)
        if region is None:
            continue
        sums.setdefault(region, Counter()).update(figures)
    assert set(sums) == set(regions)
    for region, expected in regions.items():
        assert dict(sums[region]) == expected, f"region {region} ({REGION_NAMES[region]})"


def test_every_official_department_is_mapped_or_regionless(tables) -> None:
    departments, _ = tables
    assert len(departments) == 107
    unmapped = {code for code in departments if region_of(code) is None}
    assert unmapped == NO_REGION
    assert set(REGION_OF_DEPARTMENT) == set(departments) - NO_REGION


def test_the_18_region_codes_are_the_official_ones(tables) -> None:
    _, regions = tables
    assert len(REGION_NAMES) == 18
    assert set(REGION_NAMES) == set(regions)
    assert set(REGION_OF_DEPARTMENT.values()) == set(REGION_NAMES)


def test_a_few_departments() -> None:
    assert region_of("42") == "84" and REGION_NAMES["84"] == "Auvergne-Rhône-Alpes"
    assert region_of("75") == "11" and REGION_NAMES["11"] == "Île-de-France"
    assert region_of("2A") == region_of("2B") == "94"
    assert [region_of(c) for c in ("ZA", "ZB", "ZC", "ZD", "ZM")] == ["01", "02", "03", "04", "06"]
    assert region_of("ZZ") is None and region_of("20") is None and region_of("") is None
