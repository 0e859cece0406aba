"""The scoring table is data, checked when loaded; a component with nothing to measure is left out of the total."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from stats.index import ScoringTable, score, scoring_table
from stats.projection import Summary
from stats.projection import FACTS


def test_the_shipped_table_is_decision_766s_five_groups_of_100_points():
    table = scoring_table()
    assert [g.name for g in table.groups] == ["Công khai, minh bạch", "Tiến độ, kết quả giải quyết",
                                              "Dịch vụ công trực tuyến", "Mức độ hài lòng", "Số hóa hồ sơ, kết quả"]
    assert table.points == 100


def test_a_table_whose_components_do_not_add_up_or_name_an_unknown_measure_is_refused(tmp_path):
    raw = scoring_table().model_dump()
    raw["groups"][0]["components"][0]["points"] = 17
    with pytest.raises(ValidationError, match="do not add up"):
        ScoringTable.model_validate(raw)
    raw = scoring_table().model_dump()
    raw["groups"][1]["components"][0]["measure"] = "speed"
    with pytest.raises(ValidationError, match="unknown measure 'speed'"):
        ScoringTable.model_validate(raw)
    path = tmp_path / "decree.json"
    path.write_text(json.dumps(scoring_table().model_dump()), encoding="utf-8")
    assert scoring_table(str(path)) == scoring_table()


def test_unmeasured_components_are_left_out_and_the_total_scaled_to_what_was_measured():
    summary = Summary(received=10, received_online=5, resolved=4, resolved_on_time=3)
    facts = dict.fromkeys(FACTS, 0) | {"digitised": 10}  # no payment, no rating, no electronic result
    index = score(summary, facts, scoring_table())
    points = {c["key"]: c["points"] for g in index["groups"] for c in g["components"]}
    assert points == {"public_progress": 18, "on_time": 15, "online_filing": 6, "online_payment": None,
                      "satisfied": None, "digitised": 11, "electronic_result": 0}
    assert index["measured_points"] == 72
    assert index["total"] == round((18 + 15 + 6 + 11 + 0) * 100 / 72, 2)
    assert score(Summary(), dict.fromkeys(FACTS, 0), scoring_table())["total"] is None  # nothing at all
