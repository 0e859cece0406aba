from __future__ import annotations

from lienthong.catalogue import catalogue


def test_province_has_166_commune_level_units_with_unique_codes():
    cat = catalogue()
    communes = cat.communes()
    assert len(communes) == 166
    assert len({u.code for u in cat.units.values()}) == len(cat.units)
    names = {u.name for u in communes}
    for seed_name in ("Phường Hạc Thành", "Xã Hoằng Sơn", "Phường Hàm Rồng"):
        assert seed_name in names


def test_every_commune_is_covered_by_a_land_branch():
    cat = catalogue()
    for unit in cat.communes():
        assert cat.units[unit.land_branch].kind == "land_branch"


def test_required_chains_are_data():
    procs = catalogue().procedures
    birth = [s.unit for s in procs["LT-KS-TT-BHYT"].steps]
    assert birth == ["competent_commune", "CATINH", "BHXH"]
    death = [s.unit for s in procs["LT-KT-XTT-MT"].steps]
    assert death == ["competent_commune", "CATINH", "competent_commune"]
    land = procs["DD-CNQSDD"]
    assert [s.unit for s in land.steps] == ["parcel_branch", "THUE", "receiving", "parcel_branch", "receiving"]
    assert land.needs_land_parcel and land.is_chain
    assert land.processing_days == sum(s.days for s in land.steps)


def test_only_full_online_procedures_accept_online():
    for proc in catalogue().procedures.values():
        assert ("online" in proc.channels) == (proc.online == "full")
