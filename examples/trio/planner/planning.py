"""Offline planning for the trio's Planner: no network, no LLM, deterministic.

Splits a question into parts (one task per part), recognises what each part is about (weather,
packing, the best time to visit, sightseeing, food, transport) and which place and days it names,
and picks the capability that answers it:

* a part about the weather or what it decides (cold, warm, hot, rain, snow, sun, umbrella, jacket,
  coat, what to wear or pack, a good week or time to visit, temperature) becomes a ``weather.get``
  task for the named city and days, even when the city is not in the bundled data (the Researcher
  then reports that it has no data for it, which the report says plainly);
* any other part becomes a ``web.search`` task, restricted to the named city.

Cities are recognised from the bundled data (``data/cities.json``: the 40 cities with weather and
documents) and a gazetteer of common cities without data (``data/gazetteer.json``), so "Oslo" is a
city we know nothing about rather than a word to search for. A capitalised name after "in", "to",
"for" or "visit" that is in neither list is taken as a place without data too.

Relative days ("today", "tomorrow", "Friday", "next Friday", "this weekend", "next weekend",
"this week", "next week", "in 3 days", "in March") resolve against ``today``; the Planner passes
the ``TRIO_TODAY`` environment variable (YYYY-MM-DD) when it is set, else the real date.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "City",
    "Task",
    "TodayError",
    "find_cities",
    "find_days",
    "PLAN_SCHEMA",
    "PlanError",
    "plan",
    "plan_from_model",
    "today_from_env",
    "weather_asks",
]

DATA = Path(__file__).resolve().parent.parent / "data"
MAX_TASKS = 6
#: Most days one weather task asks for (a month).
MAX_DAYS = 31

MONTHS = {
    m: i
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ],
        1,
    )
}
MONTHS.update({k[:3]: v for k, v in list(MONTHS.items())})
MONTHS["sept"] = 9
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
_WEEKDAY_RE = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday|tue|tues|thu|thur|thurs|fri)"

# What a weather part asks, by the words that ask it. Order matters only for display.
_ASKS: List[Tuple[str, "re.Pattern[str]"]] = [
    (
        "best-time",
        re.compile(
            r"\b(good|best|right|ideal|nice)\s+(week|weeks|time|month|day|days|season)\s+(to|for)\s+(visit|"
            r"go|travel|see|be)\b|\bwhen\s+(should|to|is\s+it\s+best\s+to)\s+(i\s+)?(visit|go)\b",
            re.I,
        ),
    ),
    ("cold", re.compile(r"\b(cold|colder|chilly|freezing|frost|cooler)\b", re.I)),
    ("warm", re.compile(r"\b(warm|warmer|hot|hotter|heat|heatwave|mild)\b", re.I)),
    ("temperature", re.compile(r"\b(temperatures?|degrees|celsius|fahrenheit)\b", re.I)),
    ("rain", re.compile(r"\b(rain|rainy|raining|rains|rainfall|umbrella|raincoat|drizzle|showers)\b", re.I)),
    ("snow", re.compile(r"\b(snow|snowy|snowing|snowfall|sleet)\b", re.I)),
    ("sun", re.compile(r"\b(sun|sunny|sunshine|sunscreen|sunglasses)\b", re.I)),
    ("wind", re.compile(r"\b(wind|windy|storm|stormy|gales?)\b", re.I)),
    (
        "clothes",
        re.compile(
            r"\b(jacket|coat|sweater|jumper|layers?|shorts|boots|wear|wearing|pack|packing|bring|clothes|"
            r"clothing|dress)\b",
            re.I,
        ),
    ),
    ("weather", re.compile(r"\b(weather|forecast|humid|humidity)\b", re.I)),
]
# Words that make "bring"/"pack"/"wear" a packing question (not "bring my dog").
_PACKING_OBJECT = re.compile(
    r"\b(jacket|coat|sweater|jumper|layers?|shorts|boots|umbrella|raincoat|sunscreen|sunglasses|clothes|"
    r"clothing)\b|\bwhat\s+(should|to|do)\s+(i\s+|we\s+)?(wear|pack|bring)\b|\b(wear|pack|packing)\b",
    re.I,
)

# Vague phrasings of non-weather parts and the words a search for them should use instead.
_TOPICS: List[Tuple[str, "re.Pattern[str]", str]] = [
    (
        "sightseeing",
        re.compile(
            r"\b(known|famous|renowned) for\b|\bwhat to see\b|\b(there|is there) to "
            r"(see|do)\b|\bsee\b|\bsights?\b|\bsightseeing\b|\blandmarks?\b|\bmuseums?\b|\bvisit\b",
            re.I,
        ),
        "landmarks culture famous sights",
    ),
    ("food", re.compile(r"\b(eat|food|dish|dishes|cuisine|restaurants?)\b", re.I), "food cuisine dishes"),
    (
        "transport",
        re.compile(r"\b(get around|getting around|transport|metro|subway|train|trains|bus|buses)\b", re.I),
        "transport getting around",
    ),
    ("history", re.compile(r"\bhistory|historic|founded\b", re.I), "overview history"),
]

# Words that are capitalised but are not places ("in December", "for Friday", "to I").
_NOT_PLACES = (
    {m.capitalize() for m in MONTHS}
    | {d.capitalize() for d in WEEKDAYS}
    | {
        "I",
        "The",
        "A",
        "An",
        "My",
        "Our",
        "Christmas",
        "Easter",
        "Summer",
        "Winter",
        "Spring",
        "Autumn",
        "Fall",
        "Europe",
        "Asia",
        "Africa",
        "America",
        "Today",
        "Tomorrow",
        "May",
        "What",
        "Which",
        "Where",
        "When",
        "How",
    }
)


class TodayError(ValueError):
    """TRIO_TODAY is set but is not a date."""


def today_from_env(env: Optional[Dict[str, str]] = None) -> dt.date:
    """``TRIO_TODAY`` (YYYY-MM-DD) when set, so runs and tests can fix the clock; else today's date."""
    value = (env if env is not None else dict(os.environ)).get("TRIO_TODAY", "").strip()
    if not value:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise TodayError(
            f'TRIO_TODAY must be a date as YYYY-MM-DD (e.g. "2026-12-02"), got "{value}"'
        ) from None


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class City:
    name: str
    #: True when the bundled data (cities.json) has weather and documents for it.
    in_data: bool
    start: int = 0


def _load(path: Path) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return list(json.load(f)["cities"])


def _patterns(
    cities: Sequence[Dict[str, Any]], case_sensitive: bool
) -> List[Tuple[str, "re.Pattern[str]", bool]]:
    """(canonical name, pattern, matches the text as written) per name and alias, longest first.
    Short all-capital aliases (LA, SF, KL) only match as written, so "la" in prose does not;
    gazetteer names match capitalised only ("Nice", not "nice weather")."""
    out = []
    for city in cities:
        for name in sorted({city["name"], *city.get("aliases", [])}, key=len, reverse=True):
            folded = _fold(name)
            as_written = case_sensitive or (len(name) <= 4 and name.replace(".", "").isupper())
            body = (
                re.escape(folded if as_written else folded.lower())
                .replace(r"\ ", r"[\s-]+")
                .replace(r"\.", r"\.?")
            )
            out.append((city["name"], re.compile(r"(?<![\w])" + body + r"(?![\w])"), as_written, len(name)))
    out.sort(key=lambda p: -p[3])  # longest first: "New York City" before "New York"
    return [(name, pattern, as_written) for name, pattern, as_written, _ in out]


_BUNDLED = _patterns(_load(DATA / "cities.json"), case_sensitive=False)
_GAZETTEER = _patterns(_load(DATA / "gazetteer.json"), case_sensitive=True)
_FALLBACK = re.compile(
    r"\b(?:in|to|for|visit|visiting|around|at)\s+((?:[A-Z][\w'’-]+)(?:\s+[A-Z][\w'’-]+){0,2})"
)


def find_cities(text: str) -> List[City]:
    """Cities named in ``text`` in order of mention, each once: bundled ones (accent- and case-
    insensitive, with aliases) first choice, then the gazetteer, then a capitalised name after
    "in"/"to"/"for"/"visit" that is neither a month, a weekday nor a known word."""
    folded = _fold(text)
    lower = folded.lower()
    taken: List[Tuple[int, int]] = []
    found: List[City] = []
    for patterns, in_data in ((_BUNDLED, True), (_GAZETTEER, False)):
        for name, pattern, as_written in patterns:
            for m in pattern.finditer(folded if as_written else lower):
                if any(m.start() < e and m.end() > s for s, e in taken):
                    continue
                taken.append((m.start(), m.end()))
                found.append(City(name, in_data, m.start()))
    for m in _FALLBACK.finditer(folded):
        words = m.group(1).split()
        while words and words[-1] in _NOT_PLACES:
            words.pop()
        if not words or words[0] in _NOT_PLACES:
            continue
        start = m.start(1)
        if any(start < e and start + 1 > s for s, e in taken):
            continue
        name = " ".join(words)
        taken.append((start, start + len(name)))
        found.append(City(name[:-2] if name.endswith(("'s", "’s")) else name, False, start))
    found.sort(key=lambda c: c.start)
    seen: set[str] = set()
    unique = []
    for c in found:
        if c.name not in seen:
            seen.add(c.name)
            unique.append(c)
    return unique


def _next_weekday(today: dt.date, weekday: int, *, strictly_after: bool = False) -> dt.date:
    ahead = (weekday - today.weekday()) % 7
    if ahead == 0 and strictly_after:
        ahead = 7
    return today + dt.timedelta(days=ahead)


def _span(start: dt.date, end: dt.date) -> List[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)][:MAX_DAYS]


def _weekend(today: dt.date, following: bool) -> List[dt.date]:
    wd = today.weekday()  # Monday 0 .. Sunday 6
    if wd == 5:  # Saturday: this weekend is today and tomorrow
        sat = today + dt.timedelta(days=7 if following else 0)
        return [sat, sat + dt.timedelta(days=1)]
    if wd == 6:  # Sunday: this weekend is today; the next one is six days on
        return [today + dt.timedelta(days=6), today + dt.timedelta(days=7)] if following else [today]
    sat = _next_weekday(today, 5)
    return [sat, sat + dt.timedelta(days=1)]


def _month_days(today: dt.date, month: int, year: Optional[int]) -> List[dt.date]:
    y = year or (today.year if month >= today.month else today.year + 1)
    first = dt.date(y, month, 1)
    days = _span(first, dt.date(y, month, calendar.monthrange(y, month)[1]))
    # The current month: from today on.
    return [d for d in days if d >= today] or days


_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "ten": 10,
    "fourteen": 14,
}


def find_days(text: str, today: dt.date) -> Optional[List[dt.date]]:
    """The days the first date expression of ``text`` names (one day, a weekend, a week, a month),
    resolved against ``today``; None when it names none.

    "Friday" and "this Friday" are the coming Friday (today when it is Friday); "next Friday" is
    never today. "This weekend" and "next weekend" are the coming Saturday and Sunday (said on a
    weekend, "next weekend" is the following one). "This week" is today to Sunday; "next week" is
    next Monday to Sunday. A month without a year is the next such month (this one from today).
    """
    lower = _fold(text).lower()
    rules: List[Tuple["re.Pattern[str]", Any]] = [
        (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), lambda m: [dt.date(int(m[1]), int(m[2]), int(m[3]))]),
        (re.compile(r"\b(?:the\s+)?day\s+after\s+tomorrow\b"), lambda m: [today + dt.timedelta(days=2)]),
        (re.compile(r"\btomorrow\b"), lambda m: [today + dt.timedelta(days=1)]),
        (re.compile(r"\b(today|tonight|this\s+(?:morning|afternoon|evening))\b"), lambda m: [today]),
        (
            re.compile(
                r"\bin\s+(\d{1,2}|a|an|one|two|three|four|five|six|seven|ten|fourteen)\s+(days?|weeks?)\b"
            ),
            lambda m: [
                today
                + dt.timedelta(
                    days=(int(m[1]) if m[1].isdigit() else _NUMBERS[m[1]])
                    * (7 if m[2].startswith("week") else 1)
                )
            ],
        ),
        (
            re.compile(r"\b(this|next|the|over\s+the|on\s+the)?\s*weekend\b"),
            lambda m: _weekend(today, (m[1] or "") == "next"),
        ),
        (
            re.compile(r"\b(?:this|the\s+rest\s+of\s+the)\s+week\b"),
            lambda m: _span(today, _next_weekday(today, 6)),
        ),
        (
            re.compile(r"\bnext\s+week\b"),
            lambda m: _span(
                _next_weekday(today, 0, strictly_after=True),
                _next_weekday(today, 0, strictly_after=True) + dt.timedelta(days=6),
            ),
        ),
        (
            re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?\s+({_MONTH_RE})\.?(?:,?\s+(\d{{4}}))?\b"),
            lambda m: _day_month(today, int(m[1]), MONTHS[m[2]], m[3]),
        ),
        (
            re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?![\d:])(?:,?\s+(\d{{4}}))?\b"),
            lambda m: _day_month(today, int(m[2]), MONTHS[m[1]], m[3]),
        ),
        (
            re.compile(rf"\b(this|next|coming|on)?\s*{_WEEKDAY_RE}\b"),
            lambda m: [_next_weekday(today, _weekday(m[2]), strictly_after=(m[1] == "next"))],
        ),
        (
            re.compile(
                rf"\b(?:in|during|for|of|through|throughout)\s+(?:early\s+|late\s+|mid-?\s*)?({_MONTH_RE})"
                rf"(?:\s+(\d{{4}}))?\b"
            ),
            lambda m: _month_days(today, MONTHS[m[1]], int(m[2]) if m[2] else None),
        ),
        # A bare month name ("Is March a good time …"): full names only, and not "may".
        (
            re.compile(
                r"\b(january|february|march|april|june|july|august|september|october|november|december)"
                r"(?:\s+(\d{4}))?\b"
            ),
            lambda m: _month_days(today, MONTHS[m[1]], int(m[2]) if m[2] else None),
        ),
    ]
    best: Optional[Tuple[int, List[dt.date]]] = None
    for pattern, resolve in rules:
        for m in pattern.finditer(lower):
            if best is not None and m.start() >= best[0]:
                break
            try:
                days = resolve(m)
            except (ValueError, KeyError):
                continue
            if days:
                best = (m.start(), days)
                break
    return best[1] if best else None


def _weekday(word: str) -> int:
    return next(i for i, d in enumerate(WEEKDAYS) if d.startswith(word[:3]))


def _day_month(today: dt.date, day: int, month: int, year: Optional[str]) -> List[dt.date]:
    if year:
        return [dt.date(int(year), month, day)]
    date = dt.date(today.year, month, day)
    return [date if date >= today else dt.date(today.year + 1, month, day)]


def weather_asks(text: str) -> List[str]:
    """What a part asks about the weather ("cold", "rain", "clothes", "best-time", …); empty when
    it is not about the weather. "Bring"/"pack"/"wear" count only with something to wear or carry."""
    asks = [name for name, pattern in _ASKS if pattern.search(text)]
    if "clothes" in asks and not _PACKING_OBJECT.search(text):
        asks.remove("clothes")
    return asks


@dataclass(frozen=True)
class Task:
    id: str
    text: str
    capability: str
    #: What the part is about: weather, packing, best-time, sightseeing, food, transport, history, general.
    aspect: str = "general"
    city: Optional[str] = None
    #: False when the city is not in the bundled data (the Researcher says so rather than guessing).
    city_in_data: Optional[bool] = None
    date: Optional[str] = None
    dates: List[str] = field(default_factory=list)
    #: For weather parts, what is asked: cold, warm, temperature, rain, snow, sun, wind, clothes,
    #: best-time, weather.
    asks: List[str] = field(default_factory=list)
    query: Optional[str] = None
    #: Set when the days were not given and a default was used ("no day given: today").
    date_note: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "capability": self.capability,
            "aspect": self.aspect,
        }
        for key in ("query", "city", "city_in_data", "date", "date_note"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.dates:
            data["dates"] = list(self.dates)
        if self.asks:
            data["asks"] = list(self.asks)
        return data


_CLAUSE_SPLIT = re.compile(
    r"\?|;|\.\s|,?\s+(?:and|but|also)\s+(?=(?:what|what's|how|which|where|when|who|is|are|should|will|would|"
    r"does|do|can|could|shall)\b)",
    re.I,
)


def plan(question: str, today: dt.date) -> List[Task]:
    """The offline plan: one task per part of the question (at most six). "There", "it" and a
    missing city or day resolve to the last ones named in the question."""
    clauses = [c.strip(" ,.") for c in _CLAUSE_SPLIT.split(question)]
    clauses = [c for c in clauses if len(c.split()) >= 2] or [question.strip(" ?.")]
    question_days = find_days(question, today)
    question_cities = find_cities(question)
    tasks: List[Task] = []
    last_city: Optional[City] = question_cities[0] if question_cities else None
    for clause in clauses:
        cities = find_cities(clause)
        city = cities[0] if cities else last_city
        if cities:
            last_city = cities[-1]
        text = clause[0].upper() + clause[1:]
        if city and not cities:
            resolved = re.sub(r"\bthere\b", f"in {city.name}", text, count=1)
            text = resolved if resolved != text else f"{text} ({city.name})"
        asks = weather_asks(clause)
        tid = f"t{len(tasks) + 1}"
        # A part about something else in the same clause ("what to see in Rome if it rains") gets its own
        # task.
        rest = _ASKS[0][1].sub(" ", clause)
        topic = next(((a, w) for a, p, w in _TOPICS if p.search(rest)), None)
        if asks and topic:
            tasks.append(
                Task(
                    tid,
                    text + "?",
                    "web.search",
                    aspect=topic[0],
                    city=city.name if city else None,
                    city_in_data=city.in_data if city else None,
                    query=f"{city.name + ' ' if city else ''}{topic[1]}".strip(),
                )
            )
            tid = f"t{len(tasks) + 1}"
        if asks:
            days = find_days(clause, today) or question_days
            note = None
            if not days:
                if "best-time" in asks:
                    days = _span(today, today + dt.timedelta(days=27))
                    note = "no time given: the next four weeks"
                else:
                    days = [today]
                    note = "no day given: today"
            aspect = (
                "best-time"
                if "best-time" in asks
                else "packing"
                if "clothes" in asks or re.search(r"\bumbrella\b", clause, re.I)
                else "weather"
            )
            tasks.append(
                Task(
                    tid,
                    text + "?",
                    "weather.get",
                    aspect=aspect,
                    city=city.name if city else None,
                    city_in_data=city.in_data if city else None,
                    date=days[0].isoformat(),
                    dates=[d.isoformat() for d in days] if len(days) > 1 else [],
                    asks=asks,
                    date_note=note,
                )
            )
        else:
            topic_aspect, words = topic or ("general", "")
            query = f"{city.name + ' ' if city else ''}{words}".strip() if words else None
            tasks.append(
                Task(
                    tid,
                    text + "?",
                    "web.search",
                    aspect=topic_aspect,
                    city=city.name if city else None,
                    city_in_data=city.in_data if city else None,
                    query=query,
                )
            )
    return tasks[:MAX_TASKS]


#: The structured output asked of a model planning through the gateway (llm.chat response_schema).
PLAN_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "parts": {
            "type": "array",
            "maxItems": MAX_TASKS,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "the part as a self-contained question"},
                    "kind": {
                        "type": "string",
                        "enum": ["weather", "search"],
                        "description": (
                            "weather: the weather or what it decides (cold, rain, what to wear or pack, "
                            "a good time to visit); search: anything else"
                        ),
                    },
                    "city": {"type": ["string", "null"], "description": "the city the part is about, if any"},
                    "dates": {
                        "type": "array",
                        "items": {"type": "string", "description": "YYYY-MM-DD"},
                        "description": "the days a weather part is about (empty: not given)",
                    },
                },
                "required": ["text", "kind", "city", "dates"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["parts"],
    "additionalProperties": False,
}


class PlanError(ValueError):
    """A model's plan that does not fit PLAN_SCHEMA (the Planner then plans offline)."""


def plan_from_model(parts: Any, question: str, today: dt.date) -> List[Task]:
    """Tasks from a model's structured plan (PLAN_SCHEMA's ``parts``), checked like any input from
    outside: the model decides the parts, their kind, city and days; the offline rules fill in what
    the Researcher needs (whether the city is in the bundled data, what a weather part asks, the
    search words). Raises PlanError when nothing usable is left."""
    if not isinstance(parts, list) or not parts:
        raise PlanError("the model's plan has no parts")
    question_cities = find_cities(question)
    tasks: List[Task] = []
    for item in parts[:MAX_TASKS]:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            continue
        text = item["text"].strip()
        text = text[0].upper() + text[1:]
        if not text.endswith("?"):
            text = text.rstrip(" .") + "?"
        tid = f"t{len(tasks) + 1}"
        named = item.get("city") if isinstance(item.get("city"), str) and item["city"].strip() else None
        # The city: as the offline rules know it (bundled or not), else as the model named it.
        known = find_cities(named) if named else find_cities(text) or question_cities[:1]
        city: Optional[City] = known[0] if known else (City(named.strip(), False) if named else None)
        days: List[dt.date] = []
        for value in item.get("dates") or []:
            try:
                days.append(dt.date.fromisoformat(str(value)))
            except ValueError:
                continue
        offline = plan(text, today)
        if item.get("kind") == "weather":
            days = days[:MAX_DAYS] or find_days(text, today) or []
            asks = weather_asks(text) or ["weather"]
            note = None
            if not days:
                if "best-time" in asks:
                    days, note = (
                        _span(today, today + dt.timedelta(days=27)),
                        "no time given: the next four weeks",
                    )
                else:
                    days, note = [today], "no day given: today"
            aspect = (
                "best-time"
                if "best-time" in asks
                else "packing"
                if "clothes" in asks or re.search(r"\bumbrella\b", text, re.I)
                else "weather"
            )
            tasks.append(
                Task(
                    tid,
                    text,
                    "weather.get",
                    aspect=aspect,
                    city=city.name if city else None,
                    city_in_data=city.in_data if city else None,
                    date=days[0].isoformat(),
                    dates=[d.isoformat() for d in days] if len(days) > 1 else [],
                    asks=asks,
                    date_note=note,
                )
            )
        else:
            search = next((t for t in offline if t.capability == "web.search"), None)
            aspect = search.aspect if search else "general"
            words = next((w for a, _, w in _TOPICS if a == aspect), "")
            query = f"{city.name + ' ' if city else ''}{words or text.rstrip('?')}".strip()
            tasks.append(
                Task(
                    tid,
                    text,
                    "web.search",
                    aspect=aspect,
                    city=city.name if city else None,
                    city_in_data=city.in_data if city else None,
                    query=query,
                )
            )
    if not tasks:
        raise PlanError("no part of the model's plan has a text")
    return tasks
