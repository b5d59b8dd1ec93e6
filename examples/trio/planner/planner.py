"""The trio's Planner (Python).

Splits the user's question into sub-questions, broadcasts the plan on a new thread
(``thread.<id>.broadcast``), waits for the Writer's report on that thread, prints it and saves
a copy. Also serves ``plan.split`` so any agent can ask for a plan.

Configuration (``loom run`` sets the LOOM_* ones): LOOM_URL, LOOM_HTTP_URL, LOOM_AGENT_ID,
TRIO_QUESTION, TRIO_QUESTIONS_FILE (several questions, one a line, answered in turn in one run;
all reports also go to batch.jsonl), TRIO_TODAY (YYYY-MM-DD: the day "today", "Friday" and "next
weekend" count from; default the real date), TRIO_REPORT_DIR (default <example>/reports),
TRIO_TIMEOUT_S (default 120), and
for LLM planning LOOM_LLM_PROVIDER / OPENAI_API_KEY / ANTHROPIC_API_KEY (see README.md).
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
from typing import Any, Dict, List, Optional

import loom
from planning import Task, TodayError, plan, today_from_env

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


def llm_split(question: str, today: dt.date) -> Optional[List[Task]]:
    """Planning by an LLM when one is configured (same variables as the Writer); None otherwise or
    on failure."""
    provider = os.environ.get("LOOM_LLM_PROVIDER") or (
        "anthropic"
        if os.environ.get("ANTHROPIC_API_KEY")
        else "openai"
        if os.environ.get("OPENAI_API_KEY")
        else ""
    )
    if not provider:
        return None
    prompt = (
        "Split the user's question into at most 4 self-contained sub-questions. Answer with JSON only: "
        '[{"text": "...", "capability": "web.search" | "weather.get", "city": "...", "date": "YYYY-MM-DD"}]. '
        f"Use weather.get only for the weather in a named city on a date. Today is "
        f"{today.isoformat()}.\n\nQuestion: {question}"
    )
    try:
        if provider == "anthropic":
            base = os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com").rstrip("/")
            body = {
                "model": os.environ.get("LOOM_LLM_MODEL", "claude-3-5-haiku-latest"),
                "max_tokens": 800,
                "messages": [{"role": "user", "content": prompt}],
            }
            req = urllib.request.Request(
                base + "/v1/messages",
                json.dumps(body).encode(),
                {
                    "content-type": "application/json",
                    "x-api-key": os.environ["ANTHROPIC_API_KEY"],
                    "anthropic-version": "2023-06-01",
                },
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = "".join(c.get("text", "") for c in json.load(resp)["content"])
        else:
            base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
            body = {
                "model": os.environ.get("LOOM_LLM_MODEL", "gpt-4o-mini"),
                "temperature": 0,
                "messages": [{"role": "user", "content": prompt}],
            }
            req = urllib.request.Request(
                base + "/chat/completions",
                json.dumps(body).encode(),
                {
                    "content-type": "application/json",
                    "authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
                },
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = json.load(resp)["choices"][0]["message"]["content"]
        items = json.loads(text[text.index("[") : text.rindex("]") + 1])
        tasks = [
            Task(
                f"t{i + 1}",
                str(item["text"]),
                "weather.get" if item.get("capability") == "weather.get" else "web.search",
                city=item.get("city") or None,
                date=item.get("date") or None,
            )
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
            f"TRIO_QUESTIONS_FILE {path!r} cannot be read ({exc.strerror}); give a file with one question a "
            f"line."
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
    tasks = llm_split(question, today)
    generator = "llm" if tasks else "offline: parts, weather intent, city and date detection"
    tasks = tasks or split_question(question, today)
    thread_id = "trio-" + secrets.token_hex(4)
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
                f"{len(questions) - failures} of {len(questions)} questions answered; all reports in "
                f"{out_dir / 'batch.jsonl'}"
            )
        return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except loom.LoomError as exc:
        print(f"planner: {exc}", file=sys.stderr)
        sys.exit(1)
