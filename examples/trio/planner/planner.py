"""The trio's Planner (Python).

Splits the user's question into sub-questions, broadcasts the plan on a new thread
(``thread.<id>.broadcast``), waits for the Writer's report on that thread, prints it and saves
a copy. Also serves ``plan.split`` so any agent can ask for a plan.

Configuration (``loom run`` sets the LOOM_* ones): LOOM_URL, LOOM_HTTP_URL, LOOM_AGENT_ID,
TRIO_QUESTION, TRIO_REPORT_DIR (default <example>/reports), TRIO_TIMEOUT_S (default 120), and
for LLM planning LOOM_LLM_PROVIDER / OPENAI_API_KEY / ANTHROPIC_API_KEY (see README.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import secrets
import sys
import unicodedata
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import loom

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
DEFAULT_QUESTION = "What is Lisbon known for, and what will the weather be like there on 5 December 2026?"
WEATHER_WORDS = re.compile(
    r"\b(weather|forecast|rain|raining|rainy|temperature|temperatures|sunny|snow|wind|windy|cold|warm|hot|umbrella|pack|humid|humidity)\b",
    re.I,
)
MONTHS = {m: i for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"], 1)}
MONTHS.update({k[:3]: v for k, v in list(MONTHS.items())})
NEEDED_CAPABILITIES = ("web.search", "weather.get", "report.compose")
# Vague phrasings and the words a search for them should use instead.
QUERY_HINTS = [
    (re.compile(r"\b(known|famous|renowned) for\b|\bwhat to see\b|\bthere to see\b|\bvisit\b|\bsights?\b", re.I), "landmarks culture famous sights"),
    (re.compile(r"\b(eat|food|dish|dishes|cuisine)\b", re.I), "food cuisine dishes"),
    (re.compile(r"\b(get around|getting around|transport|metro|subway|train)\b", re.I), "transport getting around"),
]


def search_query(text: str, city: Optional[str]) -> Optional[str]:
    """A better search query than the sub-question itself when its phrasing is vague."""
    for pattern, words in QUERY_HINTS:
        if pattern.search(text):
            return f"{city + ' ' if city else ''}{words}"
    return None

log = logging.getLogger("planner")


@dataclass(frozen=True)
class Task:
    id: str
    text: str
    capability: str
    city: Optional[str] = None
    date: Optional[str] = None
    query: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"id": self.id, "text": self.text, "capability": self.capability}
        if self.query:
            data["query"] = self.query
        if self.city:
            data["city"] = self.city
        if self.date:
            data["date"] = self.date
        return data


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def _load_cities() -> List[Dict[str, Any]]:
    with open(EXAMPLE / "data" / "cities.json", encoding="utf-8") as f:
        return list(json.load(f)["cities"])


CITIES = _load_cities()
# (canonical name, [(alias as written, its accent-free pattern)]) compiled once, not per question.
CITY_PATTERNS = [
    (city["name"], [(name, re.compile(r"\b" + re.escape(_fold(name)) + r"\b")) for name in [city["name"], *city.get("aliases", [])]])
    for city in CITIES
]


def find_cities(text: str) -> List[str]:
    """City names mentioned in ``text``, in order of appearance (names and aliases, accent-insensitive)."""
    folded = _fold(text)
    found = []
    for canonical, patterns in CITY_PATTERNS:
        for name, pattern in patterns:
            m = pattern.search(folded)
            # Short upper-case aliases (LA, SF) only match as written, so "la" in prose does not.
            if m and (len(name) > 3 or name in text):
                found.append((m.start(), canonical))
                break
    return [name for _, name in sorted(found)]


def find_date(text: str, today: dt.date) -> Optional[str]:
    """An ISO date for the first date expression in ``text`` (ISO, '5 December [2026]', 'December 5', 'today', 'tomorrow')."""
    m = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", text)
    if m:
        return m.group(0)
    folded = text.lower()
    if re.search(r"\btomorrow\b", folded):
        return (today + dt.timedelta(days=1)).isoformat()
    if re.search(r"\btoday\b", folded):
        return today.isoformat()
    month_names = "|".join(sorted(MONTHS, key=len, reverse=True))
    m = re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({month_names})\.?(?:\s+(\d{{4}}))?\b", folded) or re.search(
        rf"\b({month_names})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b", folded
    )
    if not m:
        return None
    if m.group(1).isdigit():
        day, month = int(m.group(1)), MONTHS[m.group(2)]
    else:
        month, day = MONTHS[m.group(1)], int(m.group(2))
    year = int(m.group(3)) if m.group(3) else today.year
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return None
    if not m.group(3) and date < today:
        date = date.replace(year=year + 1)
    return date.isoformat()


def split_question(question: str, today: dt.date) -> List[Task]:
    """Offline planning: one task per clause; clauses about the weather in a city go to
    weather.get, the rest to web.search. 'there' / 'it' resolve to the last city named."""
    clauses = [c.strip(" ,.") for c in re.split(r"\?|;|\.\s|,?\s+and\s+(?=(?:what|how|which|where|when|who|is|are|should|will|does|do|can)\b)", question, flags=re.I)]
    clauses = [c for c in clauses if len(c.split()) >= 2]
    if not clauses:
        clauses = [question.strip()]
    tasks: List[Task] = []
    last_city: Optional[str] = None
    for clause in clauses:
        cities = find_cities(clause)
        city = cities[0] if cities else last_city
        if cities:
            last_city = cities[-1]
        text = clause[0].upper() + clause[1:]
        if city and not cities:
            resolved = re.sub(r"\bthere\b", f"in {city}", text, count=1)
            text = resolved if resolved != text else f"{text} ({city})"
        if WEATHER_WORDS.search(clause) and city:
            date = find_date(clause, today) or find_date(question, today) or today.isoformat()
            tasks.append(Task(f"t{len(tasks) + 1}", text + "?", "weather.get", city=city, date=date))
        else:
            tasks.append(Task(f"t{len(tasks) + 1}", text + "?", "web.search", city=city, query=search_query(clause, city)))
    return tasks[:6]


def llm_split(question: str, today: dt.date) -> Optional[List[Task]]:
    """Planning by an LLM when one is configured (same variables as the Writer); None otherwise or on failure."""
    provider = os.environ.get("LOOM_LLM_PROVIDER") or (
        "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "openai" if os.environ.get("OPENAI_API_KEY") else ""
    )
    if not provider:
        return None
    prompt = (
        "Split the user's question into at most 4 self-contained sub-questions. Answer with JSON only: "
        '[{"text": "...", "capability": "web.search" | "weather.get", "city": "...", "date": "YYYY-MM-DD"}]. '
        f"Use weather.get only for the weather in a named city on a date. Today is {today.isoformat()}.\n\nQuestion: {question}"
    )
    try:
        if provider == "anthropic":
            base = os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com").rstrip("/")
            body = {"model": os.environ.get("LOOM_LLM_MODEL", "claude-3-5-haiku-latest"), "max_tokens": 800,
                    "messages": [{"role": "user", "content": prompt}]}
            req = urllib.request.Request(base + "/v1/messages", json.dumps(body).encode(), {
                "content-type": "application/json", "x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = "".join(c.get("text", "") for c in json.load(resp)["content"])
        else:
            base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
            body = {"model": os.environ.get("LOOM_LLM_MODEL", "gpt-4o-mini"), "temperature": 0,
                    "messages": [{"role": "user", "content": prompt}]}
            req = urllib.request.Request(base + "/chat/completions", json.dumps(body).encode(), {
                "content-type": "application/json", "authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = json.load(resp)["choices"][0]["message"]["content"]
        items = json.loads(text[text.index("["): text.rindex("]") + 1])
        tasks = [
            Task(f"t{i + 1}", str(item["text"]), "weather.get" if item.get("capability") == "weather.get" else "web.search",
                 city=item.get("city") or None, date=item.get("date") or None)
            for i, item in enumerate(items[:4])
        ]
        return tasks or None
    except Exception as exc:  # any failure: plan offline instead, and say so
        log.warning("LLM planning failed (%s); planning offline", exc)
        return None


@loom.capability("plan.split", tags=["trio", "planner"])
async def plan_split(question: str) -> List[Dict[str, Any]]:
    """Splits a question into sub-questions, each with the capability that answers it."""
    if not question.strip():
        raise loom.InvalidParamsError("The question is empty; ask something.", path="/question")
    return [t.to_json() for t in split_question(question, dt.date.today())]


async def wait_for_capabilities(http_url: Optional[str], timeout: float) -> None:
    """Waits until the Researcher's and Writer's capabilities are registered, so the plan is not
    broadcast before they subscribe (their topics are registered with their capabilities)."""
    if not http_url:
        log.warning("LOOM_HTTP_URL is not set: not waiting for the other agents")
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    missing = list(NEEDED_CAPABILITIES)
    while True:
        try:
            def fetch() -> Any:
                request = urllib.request.Request(http_url.rstrip("/") + "/v1/capabilities")
                token = os.environ.get("LOOM_TOKEN")
                if token:  # auth on: this identity reads /v1/* (read_only_identities in loom.auth.yaml)
                    request.add_header("Authorization", "Bearer " + token)
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return json.load(resp)
            listing = await loop.run_in_executor(None, fetch)
            present = {c["name"] for c in listing["capabilities"] if any(p["healthy"] for p in c["providers"])}
            missing = [c for c in NEEDED_CAPABILITIES if c not in present]
            if not missing:
                return
        except OSError:
            pass
        if loop.time() > deadline:
            raise loom.RequestTimeoutError(f"Gave up after {timeout:.0f} s waiting for {', '.join(missing)}; is every agent running?")
        await asyncio.sleep(0.25)


async def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("loom").setLevel(logging.WARNING)
    question = os.environ.get("TRIO_QUESTION") or DEFAULT_QUESTION
    timeout = float(os.environ.get("TRIO_TIMEOUT_S", "120"))
    today = dt.date.today()
    async with loom.connect(agent_id=os.environ.get("LOOM_AGENT_ID", "planner"), name="planner",
                            capabilities=[plan_split]) as conn:
        await wait_for_capabilities(os.environ.get("LOOM_HTTP_URL"), timeout)
        tasks = llm_split(question, today)
        generator = "llm" if tasks else "offline: clause splitting and city/date detection"
        tasks = tasks or split_question(question, today)
        thread_id = "trio-" + secrets.token_hex(4)
        log.info("question: %s", question)
        for t in tasks:
            log.info("  %s → %s%s", t.id, t.capability, f" ({t.city}, {t.date})" if t.date else "")
        async with await conn.join_thread(thread_id) as thread:
            await thread.emit({"kind": "plan", "question": question, "tasks": [t.to_json() for t in tasks], "generator": generator})
            log.info("plan broadcast on thread %s; waiting for the report", thread_id)
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    log.error("no report on thread %s within %.0f s", thread_id, timeout)
                    return 1
                event = await thread.next(timeout=remaining)
                data = event.data if isinstance(event.data, dict) else {}
                if data.get("kind") == "report":
                    break
        report = data["markdown"]
        footer = (
            f"\n---\n_Thread `{thread_id}` · planning: {generator} · writing: {data.get('generator', '?')} · "
            f"agents: planner (Python), researcher (TypeScript), writer (.NET)._\n"
        )
        out_dir = Path(os.environ.get("TRIO_REPORT_DIR") or EXAMPLE / "reports")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{thread_id}.md"
        path.write_text(report + footer, encoding="utf-8")
        (out_dir / "latest.json").write_text(json.dumps({**data, "thread_id": thread_id, "path": str(path)}, indent=2), encoding="utf-8")
        print(report + footer)
        try:
            shown = path.relative_to(Path.cwd())
        except ValueError:
            shown = path
        print(f"report saved to {shown}")
        return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except loom.LoomError as exc:
        print(f"planner: {exc}", file=sys.stderr)
        sys.exit(1)
