"""A model's structured plan (through the LLM gateway) turned into the Researcher's tasks: the
model's parts, kinds, cities and days are kept; what the Researcher needs is filled in by the
offline rules; anything malformed is dropped, and nothing usable is a PlanError."""

from __future__ import annotations

import datetime as dt

import pytest

from planning import PlanError, plan_from_model

WEDNESDAY = dt.date(2026, 12, 2)
QUESTION = "What is Lisbon known for, and will it be cold in Oslo on Friday?"


def test_parts_kinds_cities_and_days_come_from_the_model() -> None:
    parts = [
        {"text": "what is Lisbon famous for", "kind": "search", "city": "Lisbon", "dates": []},
        {
            "text": "Will it be cold in Oslo on Friday?",
            "kind": "weather",
            "city": "Oslo",
            "dates": ["2026-12-04"],
        },
    ]
    t1, t2 = [t.to_json() for t in plan_from_model(parts, QUESTION, WEDNESDAY)]
    assert t1 == {
        "id": "t1",
        "text": "What is Lisbon famous for?",
        "capability": "web.search",
        "aspect": "sightseeing",
        "city": "Lisbon",
        "city_in_data": True,
        "query": "Lisbon landmarks culture famous sights",
    }
    assert t2["capability"] == "weather.get" and t2["city"] == "Oslo" and t2["city_in_data"] is False
    assert t2["date"] == "2026-12-04" and t2["asks"] == ["cold"] and t2["aspect"] == "weather"


def test_a_weather_part_without_days_is_today_and_an_unknown_city_is_a_city_without_data() -> None:
    (task,) = plan_from_model(
        [{"text": "Weather in Smallville", "kind": "weather", "city": "Smallville", "dates": ["not a date"]}],
        "?",
        WEDNESDAY,
    )
    assert task.capability == "weather.get" and task.city == "Smallville" and task.city_in_data is False
    assert task.date == "2026-12-02" and task.date_note == "no day given: today" and task.asks == ["weather"]


def test_malformed_parts_are_dropped_and_nothing_usable_is_an_error() -> None:
    tasks = plan_from_model(
        [
            None,
            {"kind": "search"},
            {"text": "  "},
            {"text": "What to eat in Rome", "kind": "search", "city": None},
        ],
        "",
        WEDNESDAY,
    )
    assert [(t.id, t.capability, t.city, t.aspect) for t in tasks] == [("t1", "web.search", "Rome", "food")]
    for bad in (None, [], "parts", [{"kind": "weather"}]):
        with pytest.raises(PlanError):
            plan_from_model(bad, "", WEDNESDAY)


def test_at_most_six_parts() -> None:
    parts = [
        {"text": f"What is there to see in Rome, part {i}", "kind": "search", "city": "Rome", "dates": []}
        for i in range(10)
    ]
    assert len(plan_from_model(parts, "", WEDNESDAY)) == 6
