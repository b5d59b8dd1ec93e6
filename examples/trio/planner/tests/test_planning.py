"""The Planner's offline planning: which parts a question has, which capability answers each,
which city and days a weather part is about. No bridge needed: planning is pure."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List

import pytest

from planning import TodayError, find_cities, find_days, plan, today_from_env, weather_asks

WEDNESDAY = dt.date(2026, 12, 2)  # a Wednesday
SATURDAY = dt.date(2026, 12, 5)
SUNDAY = dt.date(2026, 12, 6)


def tasks(question: str, today: dt.date = WEDNESDAY) -> List[Dict[str, Any]]:
    return [t.to_json() for t in plan(question, today)]


def days(text: str, today: dt.date = WEDNESDAY) -> List[str]:
    found = find_days(text, today)
    return [d.isoformat() for d in found] if found else []


@pytest.mark.parametrize(
    "question",
    [
        "Will it be cold in Oslo on Friday?",
        "Is it warm in Lisbon in May?",
        "Will it be hot in Dubai tomorrow?",
        "Should I bring a jacket to Lisbon next weekend?",
        "Do I need a coat in Berlin this week?",
        "Should I pack an umbrella for Tokyo tomorrow?",
        "Will it rain in London on Saturday?",
        "Will it snow in Toronto next week?",
        "Will it be sunny in Sydney on Friday?",
        "What should I wear in Paris this weekend?",
        "What should I pack for Reykjavík next week?",
        "When is a good week to visit Rome in April?",
        "Is March a good time to visit Tokyo?",
        "What will the temperature be in Madrid today?",
    ],
)
def test_weather_intent_plans_weather_get_for_the_named_city(question: str) -> None:
    [task] = tasks(question)
    assert task["capability"] == "weather.get", task
    assert task["city"] and task["city"] in question.replace("Reykjavík", "Reykjavík")
    assert task["date"] and task["asks"]


@pytest.mark.parametrize(
    "question",
    [
        "What is Lisbon known for?",
        "How do I get around Tokyo?",
        "What should I eat in Marrakesh?",
        "What is the history of Istanbul?",
    ],
)
def test_questions_without_weather_intent_search(question: str) -> None:
    assert [t["capability"] for t in tasks(question)] == ["web.search"]


def test_unknown_but_real_city_is_recognised_as_a_city_without_data() -> None:
    [task] = tasks("Will it be cold in Oslo on Friday?")
    assert task == {
        "id": "t1",
        "text": "Will it be cold in Oslo on Friday?",
        "capability": "weather.get",
        "aspect": "weather",
        "city": "Oslo",
        "city_in_data": False,
        "date": "2026-12-04",
        "asks": ["cold"],
    }
    [search] = tasks("What is there to see in Oslo?")
    assert (search["capability"], search["city"], search["city_in_data"], search["aspect"]) == (
        "web.search",
        "Oslo",
        False,
        "sightseeing",
    )


def test_cities_bundled_gazetteer_and_fallback() -> None:
    found = find_cities("From NYC to Lisboa, then Oslo, São Paulo and finally to Tromsø in December")
    assert [(c.name, c.in_data) for c in found] == [
        ("New York City", True),
        ("Lisbon", True),
        ("Oslo", False),
        ("São Paulo", True),
        ("Tromsø", False),
    ]
    # A capitalised word that is a month or a weekday is not a place; gazetteer names match capitalised only.
    assert find_cities("Will it rain in December, or on Friday?") == []
    assert find_cities("nice weather in the city?") == []
    assert [c.name for c in find_cities("Weather in Nice on Sunday?")] == ["Nice"]


def test_packing_question_is_one_weather_part_over_the_weekend() -> None:
    [task] = tasks("Should I bring a jacket to Lisbon next weekend?")
    assert task["capability"] == "weather.get"
    assert task["aspect"] == "packing"
    assert task["dates"] == ["2026-12-05", "2026-12-06"]
    assert "clothes" in task["asks"]


def test_multi_part_questions_get_one_task_per_part() -> None:
    t = tasks("What can I see in Rome, and will it rain there on Saturday?")
    assert [(x["capability"], x["aspect"], x["city"]) for x in t] == [
        ("web.search", "sightseeing", "Rome"),
        ("weather.get", "weather", "Rome"),
    ]
    assert t[1]["date"] == "2026-12-05"
    t = tasks("What's the weather in Paris this weekend and what should I pack?")
    assert [(x["capability"], x["aspect"]) for x in t] == [
        ("weather.get", "weather"),
        ("weather.get", "packing"),
    ]
    assert t[1]["city"] == "Paris" and t[1]["dates"] == [
        "2026-12-05",
        "2026-12-06",
    ]  # city and days carried over
    # Two parts in one clause: what to see, and whether it rains.
    t = tasks("What is there to see in Rome if it rains on Saturday?")
    assert [(x["capability"], x["aspect"]) for x in t] == [
        ("web.search", "sightseeing"),
        ("weather.get", "weather"),
    ]


def test_the_default_question() -> None:
    t = tasks("What is Lisbon known for, and what will the weather be like there on 5 December 2026?")
    assert [(x["capability"], x["city"]) for x in t] == [("web.search", "Lisbon"), ("weather.get", "Lisbon")]
    assert t[0]["query"] == "Lisbon landmarks culture famous sights"
    assert (
        t[1]["date"] == "2026-12-05"
        and t[1]["text"] == "What will the weather be like in Lisbon on 5 December 2026?"
    )


@pytest.mark.parametrize(
    "text,today,expected",
    [
        ("today", WEDNESDAY, ["2026-12-02"]),
        ("tomorrow", WEDNESDAY, ["2026-12-03"]),
        ("the day after tomorrow", WEDNESDAY, ["2026-12-04"]),
        ("on Friday", WEDNESDAY, ["2026-12-04"]),
        ("this Wednesday", WEDNESDAY, ["2026-12-02"]),
        ("next Wednesday", WEDNESDAY, ["2026-12-09"]),
        ("this weekend", WEDNESDAY, ["2026-12-05", "2026-12-06"]),
        ("next weekend", WEDNESDAY, ["2026-12-05", "2026-12-06"]),
        ("this weekend", SATURDAY, ["2026-12-05", "2026-12-06"]),
        ("next weekend", SATURDAY, ["2026-12-12", "2026-12-13"]),
        ("this weekend", SUNDAY, ["2026-12-06"]),
        ("next weekend", SUNDAY, ["2026-12-12", "2026-12-13"]),
        ("this week", WEDNESDAY, ["2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05", "2026-12-06"]),
        ("next week", WEDNESDAY, [f"2026-12-{d:02d}" for d in range(7, 14)]),
        ("in 3 days", WEDNESDAY, ["2026-12-05"]),
        ("on 5 December 2026", WEDNESDAY, ["2026-12-05"]),
        ("December 1", WEDNESDAY, ["2027-12-01"]),  # past this year: next year's
        ("2027-02-14", WEDNESDAY, ["2027-02-14"]),
        ("nothing here", WEDNESDAY, []),
    ],
)
def test_relative_days(text: str, today: dt.date, expected: List[str]) -> None:
    assert days(text, today) == expected


def test_a_month_is_its_days_from_today_on() -> None:
    march = days("in March")
    assert (march[0], march[-1], len(march)) == ("2027-03-01", "2027-03-31", 31)
    december = days("in December")
    assert (december[0], december[-1]) == ("2026-12-02", "2026-12-31")


def test_best_time_without_a_month_looks_at_the_next_four_weeks() -> None:
    [task] = tasks("When is a good time to visit Cape Town?")
    assert task["aspect"] == "best-time" and len(task["dates"]) == 28
    assert task["date_note"] == "no time given: the next four weeks"


def test_weather_without_a_day_is_today_and_says_so() -> None:
    [task] = tasks("Will it rain in Lisbon?")
    assert task["date"] == "2026-12-02" and task["date_note"] == "no day given: today"


def test_weather_asks() -> None:
    assert weather_asks("Should I pack an umbrella?") == ["rain", "clothes"]
    assert weather_asks("Is it cold and snowy?") == ["cold", "snow"]
    assert weather_asks("What should I bring?") == ["clothes"]
    assert weather_asks("Can I bring my dog on the metro?") == []
    assert weather_asks("What is Lisbon known for?") == []


def test_today_from_env() -> None:
    assert today_from_env({"TRIO_TODAY": "2026-12-02"}) == WEDNESDAY
    assert today_from_env({}) == dt.date.today()
    with pytest.raises(TodayError, match="YYYY-MM-DD"):
        today_from_env({"TRIO_TODAY": "next tuesday"})


def test_at_most_six_tasks() -> None:
    question = "; ".join(
        f"What is there to see in {c}"
        for c in ["Rome", "Paris", "Lisbon", "Tokyo", "Seoul", "Lima", "Cairo", "Dubai"]
    )
    assert len(tasks(question)) == 6
