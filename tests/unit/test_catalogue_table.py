"""The procedure catalogue as the province keeps it (CSV/XLSX): read back exactly what was written, refused whole
with row and column for every error, and the generated province-sized catalogue has the seeds' mix."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from lienthong.catalogue import Catalogue, catalogue
from lienthong.catalogue.table import COLUMNS, CatalogueFileError, load_file, write_file
from lienthong.catalogue.versions import fingerprint
from lienthong_tools.catalogue_gen import EXEMPTION, generate


@pytest.fixture(scope="module")
def generated():
    return generate()


def test_generated_catalogue_has_the_seeds_mix(generated):
    assert len(generated) == 2_223
    assert Counter(p.online for p in generated.values()) == {"full": 620, "partial": 1_383, "none": 220}
    assert sum(p.fee_exemption == EXEMPTION for p in generated.values()) == 42
    for code, proc in catalogue().procedures.items():  # filed under the built-in catalogue, filed the same here
        assert generated[code] == proc
    Catalogue(units=catalogue().units, procedures=generated)  # every step's unit resolves
    assert generate() == generated  # same seed, same catalogue


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_written_catalogue_reads_back_the_same(generated, tmp_path, suffix):
    path = tmp_path / f"thu-tuc{suffix}"
    write_file(generated.values(), path)
    assert load_file(path, catalogue().units) == generated


def _table(tmp_path: Path, generated, change) -> Path:
    path = tmp_path / "thu-tuc.csv"
    write_file(list(generated.values())[:20], path)
    rows = list(csv.reader(path.open(encoding="utf-8")))
    change(rows)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_every_error_is_named_by_row_and_column_and_nothing_is_read(generated, tmp_path):
    col = {key: list(COLUMNS).index(key) for key in COLUMNS}

    def spoil(rows):
        rows[3][col["days"]] = "mười"
        rows[5][col["level"]] = "Cấp huyện"
        rows[7][col["steps"]] = "Thẩm định | NOWHERE | 3"
        rows[9][col["code"]] = rows[2][col["code"]]
        rows[10][col["channels"]] = "Fax"
        rows[11][col["fee"]] = "nhiều"
        rows[1][col["online"]] = "Một phần"  # but the channels still say online
        rows[13][col["steps"]] = "Thẩm định, competent_commune, 3"
        rows[14][col["days"]] = "99"  # the steps add up to less

    with pytest.raises(CatalogueFileError) as refused:
        load_file(_table(tmp_path, generated, spoil), catalogue().units)
    where = {(e.row, e.column) for e in refused.value.errors}
    header = COLUMNS
    assert where == {(4, header["days"]), (6, header["level"]), (8, header["steps"]), (10, header["code"]),
                     (11, header["channels"]), (12, header["fee"]), (2, header["channels"]), (14, header["steps"]),
                     (15, header["days"])}
    assert "row 10, column 'Mã thủ tục': " in str(refused.value) and "also on row 3" in str(refused.value)


def test_a_missing_or_unknown_column_is_refused(generated, tmp_path):
    def rename(rows):
        rows[0][list(COLUMNS).index("steps")] = "Quy trình"

    with pytest.raises(CatalogueFileError) as refused:
        load_file(_table(tmp_path, generated, rename), catalogue().units)
    assert {(e.row, e.column, e.message) for e in refused.value.errors} == {
        (1, "Quy trình", "unknown column"), (1, COLUMNS["steps"], "missing column")}


def test_headers_match_whatever_their_case_and_spacing(generated, tmp_path):
    def shout(rows):
        rows[0] = [f"  {header.upper()} " for header in rows[0]]

    assert len(load_file(_table(tmp_path, generated, shout), catalogue().units)) == 20


def test_the_same_procedures_in_another_order_have_the_same_fingerprint(generated):
    assert fingerprint(dict(reversed(list(generated.items())))) == fingerprint(generated)
    changed = dict(generated)
    changed["HT-KS"] = changed["HT-KS"].model_copy(update={"fee_vnd": 1})
    assert fingerprint(changed) != fingerprint(generated)
