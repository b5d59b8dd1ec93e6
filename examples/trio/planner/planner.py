"""The trio's Planner (Python).

Splits the user's question into sub-questions, broadcasts the plan on a new thread
(``thread.<id>.broadcast``), waits for the Writer's report on that thread, prints it and saves
a copy. Also serves ``plan.split`` so any agent can ask for a plan.

Configuration (``loom run`` sets the LOOM_* ones): LOOM_URL, LOOM_HTTP_URL, LOOM_AGENT_ID,
TRIO_QUESTION, TRIO_QUESTIONS_FILE (several questions, one a line, answered in turn in one run;
all reports also go to batch.jsonl), TRIO_TODAY (YYYY-MM-DD: the day "today", "Friday" and "next
weekend" count from; default the real date), TRIO_REPORT_DIR (default <example>/reports),
TRIO_TIMEOUT_S (default 120). Plans with a model through the bridge's LLM gateway
(``ctx.llm.chat``, structured output) when loom.yaml has an ``llm:`` section (loom.llm.yaml;
README.md), offline otherwise.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import secrets
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import loom
from planning import PLAN_SCHEMA, PlanError, Task, TodayError, plan, plan_from_model, today_from_env

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
DEFAULT_QUESTION = "What is Lisbon known for, and what will the weather be like there on 5 December 2026?"
NEEDED_CAPABILITIES = ("web.search", "weather.get", "report.compose")
#: Most questions one TRIO_QUESTIONS_FILE may hold.
MAX_QUESTIONS = 50

log = logging.getLogger("planner")


def split_question(question: str, today: dt.date) -> List[Task]:
    """Offline planning (planning.py): one task per part; weather parts go to weather.get."""
    return plan(question, today)


#: Set once the bridge said it serves no llm.chat (no ``llm:`` section in loom.yaml):
#: plan offline from then on.
_no_gateway = False

PLAN_PROMPT = (
    "You plan research for a travel question. Split the question into its parts (at most 6), each "
    "rewritten as a self-contained question that names its city. A part about the weather or what it "
    "decides (cold, warm, rain, snow, sun, wind, an umbrella, a jacket, what to wear or pack, a good "
    'time to visit) is kind "weather", with the days it asks about as YYYY-MM-DD (relative days count '
    'from today); anything else is kind "search". Today is {today} ({weekday}).'
)


async def model_plan(
    conn: Any, question: str, today: dt.date, thread_id: str
) -> Tuple[Optional[List[Task]], str]:
    """Planning by a model through the bridge's LLM gateway (``ctx.llm.chat`` with structured output,
    docs/llm.md) when loom.yaml configures one: (tasks, how they were planned). (None, why) when there
    is no gateway or the model's answer is unusable; the Planner then plans offline."""
    global _no_gateway
    if _no_gateway:
        return None, ""
    try:
        result = await conn.llm.chat(
            [
                {
                    "role": "system",
                    "content": PLAN_PROMPT.format(today=today.isoformat(), weekday=today.strftime("%A")),
                },
                {"role": "user", "content": question},
            ],
            response_schema=PLAN_SCHEMA,
            temperature=0,
            max_tokens=800,
            thread_id=thread_id,
            timeout=90.0,
        )
    except loom.NotFoundError:
        _no_gateway = True  # no llm: section: offline, as without a gateway, and not asked again
        return None, ""
    except loom.LoomError as exc:
        log.warning("LLM planning failed (%s); planning offline", exc)
        return None, f"; llm.chat failed: {exc.code.value}"
    try:
        data = result.json if isinstance(result.json, dict) else None
        if data is None:
            raise PlanError("the model's answer is not the JSON asked for")
        tasks = plan_from_model(data.get("parts"), question, today)
    except PlanError as exc:
        log.warning("LLM plan unusable (%s); planning offline", exc)
        return None, f"; the {result.model} plan was unusable: {exc}"
    return tasks, f"llm.chat ({result.model}{', cached' if result.cached else ''})"


@loom.capability("plan.split", tags=["trio", "planner"])
async def plan_split(question: str) -> List[Dict[str, Any]]:
    """Splits a question into sub-questions, each with the capability that answers it."""
    if not question.strip():
        raise loom.InvalidParamsError("The question is empty; ask something.", path="/question")
    return [t.to_json() for t in split_question(question, today_from_env())]


async def wait_for_capabilities(http_url: Optional[str], timeout: float) -> None:
    """Waits until the Researcher's and Writer's capabilities are registered, so the plan is not
    broadcast before they subscribe (their topics are registered with their capabilities)."""
    if not http_url:
        log.warning("LOOM_HTTP_URL is not set: not waiting for the other agents")
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    missing = list(NEEDED_CAPABILITIES)
    base = http_url.rstrip("/")
    while True:
        try:

            def fetch() -> Any:
                request = urllib.request.Request(base + "/v1/capabilities")
                token = os.environ.get("LOOM_TOKEN")
                if token:  # auth on: this identity reads /v1/* (read_only_identities in loom.auth.yaml)
                    request.add_header("Authorization", "Bearer " + token)
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return json.load(resp)

            listing = await loop.run_in_executor(None, fetch)
            present = {
                c["name"] for c in listing["capabilities"] if any(p["healthy"] for p in c["providers"])
            }
            missing = [c for c in NEEDED_CAPABILITIES if c not in present]
            if not missing:
                return
        except OSError:
            pass
        if loop.time() > deadline:
            raise loom.RequestTimeoutError(
                f"Gave up after {timeout:.0f} s waiting for {', '.join(missing)}; is every agent running?"
            )
        await asyncio.sleep(0.25)


def read_questions(path: str) -> List[str]:
    """TRIO_QUESTIONS_FILE: one question a line; blank lines and lines starting with # are skipped."""
    # A relative path: from the current folder (the planner's), else the repository's or the example's.
    candidates = (
        [Path(path)]
        if Path(path).is_absolute()
        else [
            Path(path),
            *([Path(os.environ["LOOM_HOME"]) / path] if os.environ.get("LOOM_HOME") else []),
            EXAMPLE / path,
        ]
    )
    found = next((c for c in candidates if c.is_file()), candidates[0])
    try:
        lines = found.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise loom.InvalidParamsError(
            f"TRIO_QUESTIONS_FILE {path!r} cannot be read ({exc.strerror}); "
            "give a file with one question a line."
        ) from None
    questions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not questions:
        raise loom.InvalidParamsError(
            f"TRIO_QUESTIONS_FILE {path!r} has no questions; write one question a line."
        )
    if len(questions) > MAX_QUESTIONS:
        raise loom.InvalidParamsError(
            f"TRIO_QUESTIONS_FILE {path!r} has {len(questions)} questions; at most {MAX_QUESTIONS} a run."
        )
    return questions


async def ask(
    conn: Any, question: str, today: dt.date, timeout: float, out_dir: Path
) -> Optional[Dict[str, Any]]:
    """Plans one question, broadcasts the plan on a new thread, waits for the Writer's report,
    prints and saves it. Returns what was saved to latest.json, or None on timeout."""
    thread_id = "trio-" + secrets.token_hex(4)
    modelled, how = await model_plan(conn, question, today, thread_id)
    generator = how if modelled else "offline: parts, weather intent, city and date detection" + how
    tasks = modelled or split_question(question, today)
    log.info("question: %s", question)
    for t in tasks:
        where = (
            f" ({t.city}{'' if t.city_in_data is not False else ', not in the bundled data'}"
            f"{', ' + t.date if t.date else ''}{f'..{t.dates[-1]}' if t.dates else ''})"
            if t.city or t.date
            else ""
        )
        log.info("  %s → %s [%s]%s", t.id, t.capability, t.aspect, where)
    async with await conn.join_thread(thread_id) as thread:
        await thread.emit(
            {
                "kind": "plan",
                "question": question,
                "tasks": [t.to_json() for t in tasks],
                "generator": generator,
            }
        )
        log.info("plan broadcast on thread %s; waiting for the report", thread_id)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                log.error("no report on thread %s within %.0f s", thread_id, timeout)
                return None
            event = await thread.next(timeout=remaining)
            data = event.data if isinstance(event.data, dict) else {}
            if data.get("kind") == "report":
                break
    report = data["markdown"]
    footer = (
        f"\n---\n_Thread `{thread_id}` · planning: {generator} · writing: {data.get('generator', '?')} · "
        f"agents: planner (Python), researcher (TypeScript), writer (.NET)._\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{thread_id}.md"
    path.write_text(report + footer, encoding="utf-8")
    saved = {
        **data,
        "thread_id": thread_id,
        "path": str(path),
        "today": today.isoformat(),
        "plan": [t.to_json() for t in tasks],
        "planning": generator,
    }
    (out_dir / "latest.json").write_text(json.dumps(saved, indent=2, ensure_ascii=False), encoding="utf-8")
    print(report + footer)
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"report saved to {shown}", flush=True)
    return saved


async def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("loom").setLevel(logging.WARNING)
    questions_file = os.environ.get("TRIO_QUESTIONS_FILE", "").strip()
    questions = (
        read_questions(questions_file)
        if questions_file
        else [os.environ.get("TRIO_QUESTION") or DEFAULT_QUESTION]
    )
    timeout = float(os.environ.get("TRIO_TIMEOUT_S", "120"))
    try:
        today = today_from_env()
    except TodayError as exc:
        raise loom.InvalidParamsError(str(exc)) from None
    out_dir = Path(os.environ.get("TRIO_REPORT_DIR") or EXAMPLE / "reports")
    async with loom.connect(
        agent_id=os.environ.get("LOOM_AGENT_ID", "planner"), name="planner", capabilities=[plan_split]
    ) as conn:
        await wait_for_capabilities(os.environ.get("LOOM_HTTP_URL"), timeout)
        failures = 0
        batch: List[Dict[str, Any]] = []
        for question in questions:
            saved = await ask(conn, question, today, timeout, out_dir)
            if saved is None:
                failures += 1
                saved = {"question": question, "error": f"no report within {timeout:.0f} s"}
            batch.append(saved)
        if questions_file:
            # Every question's report in one file, in order: batch.jsonl in the report folder.
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "batch.jsonl").write_text(
                "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in batch), encoding="utf-8"
            )
            print(
                f"{len(questions) - failures} of {len(questions)} questions answered; "
                f"all reports in {out_dir / 'batch.jsonl'}"
            )
        return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except loom.LoomError as exc:
        print(f"planner: {exc}", file=sys.stderr)
        sys.exit(1)
