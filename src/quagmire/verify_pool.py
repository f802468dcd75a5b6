"""Grade model completions against gold answers with math-verify, under a hard per-item timeout.

math-verify's own timeout uses `signal.alarm`, which fails off the main thread and cannot interrupt sympy
while it holds the GIL inside C code (e.g. `9^{9^{9^{9}}}` never returns). So untrusted pairs are graded in
long-lived worker processes that the parent kills when an item overruns its deadline. Model text is only
ever handed to math-verify's parser, never executed, and a parsed sympy object is never turned back into a
string (sympy may evaluate it forever): every `extracted` answer is a slice of the original text.

Statuses: `correct`, `incorrect`, `no_answer` (nothing parseable), `timeout` (killed, scored wrong) and
`gold_invalid` (the gold itself does not parse; excluded from every denominator, never scored).

Semantics are math-verify's: `parse(gold)`, `parse(answer)`, `verify(gold, answer)` with its default extraction
configuration, on the texts `quagmire.answers` prepares (see its docstring for how a completion is reduced to
what math-verify would read). Deliberate deviations, each tested:

- a gold is `gold_invalid` unless math-verify parses it into a math object: a gold for which `parse` returns
  only its fallback string, and a gold that is nonsense even where math-verify would read something from it
  (unbalanced braces or `$` delimiters, an empty box, TeX macro definitions such as `\\newcommand` or
  `\\def`), is never scored;
- an answer for which `parse` returns only its fallback string (no math object) is `no_answer`: math-verify
  would compare that string with the gold's and call it wrong.
"""


from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import multiprocessing as mp
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from quagmire import answers
from quagmire.errors import QuagmireError

CORRECT = "correct"
INCORRECT = "incorrect"
NO_ANSWER = "no_answer"
TIMEOUT = "timeout"
GOLD_INVALID = "gold_invalid"
STATUSES: tuple[str, ...] = (CORRECT, INCORRECT, NO_ANSWER, TIMEOUT, GOLD_INVALID)

_MAX_BATCH = 32  # items per message to a worker; a timeout only blames the item that hung
_START_TIMEOUT_S = 120.0  # a worker that is not ready by then points at a broken environment
_KILL_GRACE_S = 1.0  # seconds between SIGTERM and SIGKILL
_MAX_CRASHES = 2  # a worker dying twice on the same item marks it `timeout` (it cannot be graded)
_MAX_START_FAILURES = 3  # workers dying before they are ready, per grading call, before the environment is blamed
_BACKSTOP_FACTOR = 2.0  # an orphaned worker is ended by the kernel after 2 * timeout_s + 1 CPU seconds
_GOLD_CACHE_SIZE = 4096  # parsed golds kept per worker (a benchmark has few distinct golds)
_PR_SET_PDEATHSIG = 1  # linux prctl option: signal this process when its parent dies

Pair = tuple[str, str]
_Key = tuple[str, str]  # (gold text for math-verify, answer text for math-verify)


# --------------------------------------------------------------------------- math-verify (worker side)


@dataclass(frozen=True)
class Verdict:
    """The grade of one completion: the answer as text, its status, and whether it counts as correct."""

    extracted: str | None
    status: str
    correct: bool


def _first_string(parsed: list[Any]) -> str | None:
    """The extracted text math-verify returns beside its sympy object (never str() of the object)."""
    for item in parsed:
        if isinstance(item, str):
            return item
    return None


_MACRO_DEFINITION = re.compile(
    r"\\(?:(?:re)?newcommand|providecommand|def|edef|gdef|xdef|let|newenvironment)(?![A-Za-z])"
)
_UNESCAPED_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")


def _gold_is_nonsense(gold_text: str) -> bool:
    """A gold no careful grader would score against, even where math-verify reads something from it."""
    if _MACRO_DEFINITION.search(gold_text) or _EMPTY_BOX.search(gold_text):
        return True
    if len(_UNESCAPED_DOLLAR.findall(gold_text)) % 2:  # `$221,$8$`: math-verify would read some part of it
        return True
    depth = 0
    for match in _UNESCAPED_BRACE.finditer(gold_text):
        token = match.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth < 0:
                return True
    return depth != 0


def _has_math(parsed: list[Any]) -> bool:
    """Whether math-verify parsed a math object, not only its fallback string."""
    return any(not isinstance(item, str) for item in parsed)


def _grade_texts(
    gold_text: str, answer_text: str, gold_cache: dict[str, list[Any]] | None = None
) -> tuple[str, str | None]:
    """(status, extracted text) for one prepared pair; no timeout here: the caller bounds the time."""
    from math_verify import parse, verify

    gold_parsed = gold_cache.get(gold_text) if gold_cache is not None else None
    if gold_parsed is None:
        gold_parsed = [] if _gold_is_nonsense(gold_text) else parse(gold_text, parsing_timeout=None)  # type: ignore[arg-type]
        if gold_cache is not None:
            if len(gold_cache) >= _GOLD_CACHE_SIZE:
                gold_cache.clear()
            gold_cache[gold_text] = gold_parsed
    if not _has_math(gold_parsed):
        return GOLD_INVALID, None
    answer_parsed = parse(answer_text, parsing_timeout=None)  # type: ignore[arg-type]
    if not _has_math(answer_parsed):
        return NO_ANSWER, None
    is_correct = verify(gold_parsed, answer_parsed, timeout_seconds=None)  # gold first: verify is asymmetric
    return (CORRECT if is_correct else INCORRECT), _first_string(answer_parsed)


def _verdict(status: str, boxed: str | None, parsed_extracted: str | None) -> Verdict:
    """Assemble a Verdict; the boxed content (from the raw text) is preferred as the extracted answer."""
    extracted = boxed if boxed else parsed_extracted
    return Verdict(extracted=extracted or None, status=status, correct=status == CORRECT)


def grade_one(gold: str, completion: str) -> Verdict:
    """Grade one completion in this process with no time limit; untrusted model text goes to `GradingPool`."""
    answer_text, boxed = answers.answer_text(answers.as_text(completion))
    status, parsed_extracted = _grade_texts(answers.gold_text(answers.as_text(gold)), answer_text)
    return _verdict(status, boxed, parsed_extracted)


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the process that started it dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _cpu_backstop(budget_s: float) -> None:
    """Let the kernel end this worker (SIGXCPU) after `budget_s` more CPU seconds.

    The parent kills an overrunning worker long before (CPU time never outruns wall time here); this only
    matters if the parent itself died or hung, so a worker stuck in sympy can never spin forever.
    """
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime + budget_s)
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _worker_main(conn: Connection, timeout_s: float) -> None:
    """Worker loop: receive a batch of (item id, gold text, answer text), send one result per item."""
    _die_with_parent()
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a worker ended by SIGXCPU leaves no core file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it will kill us
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notices: ours is enforced
    _cpu_backstop(_START_TIMEOUT_S)
    _grade_texts("\\boxed{1}", "\\boxed{1}")  # import and warm up the LaTeX parser before declaring ready
    conn.send(("ready",))
    gold_cache: dict[str, list[Any]] = {}
    budget_s = _BACKSTOP_FACTOR * timeout_s + 1.0
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for item_id, gold_text, answer_text in batch:
            _cpu_backstop(budget_s)
            status, extracted = _grade_texts(gold_text, answer_text, gold_cache)
            conn.send(("result", item_id, status, extracted))


# --------------------------------------------------------------------------- the pool (parent side)


@dataclass(frozen=True)
class GradingStats:
    """What the last `GradingPool.grade` call did: pairs asked, distinct keys graded, timeouts, restarts."""

    n_pairs: int = 0
    n_keys: int = 0
    n_timeouts: int = 0
    n_restarts: int = 0


class _Worker:
    """One grading process, its pipe, and the items it holds (first = the one it is working on)."""

    def __init__(self, ctx: Any, timeout_s: float) -> None:
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child_conn, timeout_s), name="quagmire-grader", daemon=True
        )
        self.process.start()
        child_conn.close()
        self.conn: Connection = parent_conn
        self.ready = False
        self.started_at = time.monotonic()
        self.item_started_at = 0.0  # when the worker began its current item (monotonic seconds)
        self.inflight: deque[int] = deque()

    def kill(self) -> None:
        """Stop the process now (SIGTERM, then SIGKILL), whatever it is doing, and reap it."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(_KILL_GRACE_S)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self.conn.close()


def _worker_context() -> Any:
    """A multiprocessing context that never forks the parent (it may hold torch threads).

    forkserver: a clean server process imports math-verify once, and each worker (or replacement after a
    timeout) is a cheap fork of it instead of a fresh interpreter. spawn where forkserver is unavailable.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # Takes effect only if this process has not started its forkserver yet. "__main__" is deliberately not
    # preloaded: a caller's script without an `if __name__ == "__main__"` guard would run again in the server.
    ctx.set_forkserver_preload([__name__, "math_verify"])
    return ctx


class GradingPool:
    """Long-lived math-verify workers with a hard per-item timeout; use as a context manager.

    `timeout_s` bounds the seconds one distinct (gold, answer) pair may take inside a worker; a worker that
    overruns is killed and replaced, its item marked `timeout`, and the rest of its batch re-dispatched.
    """

    def __init__(self, workers: int = 1, timeout_s: float = 5.0) -> None:
        if workers < 1:
            raise QuagmireError(f"grading workers must be at least 1 (got {workers})")
        if not timeout_s > 0:
            raise QuagmireError(f"grading timeout must be a positive number of seconds (got {timeout_s})")
        self.timeout_s = float(timeout_s)
        self.last_stats = GradingStats()
        self._ctx = _worker_context()
        self._workers: list[_Worker | None] = [None] * workers
        self._closed = False
        self._lock = threading.Lock()  # one grade() at a time: the workers' pipes carry one conversation
        self._ensure_workers()

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every worker; safe to call twice."""
        self._closed = True
        for slot, worker in enumerate(self._workers):
            if worker is not None:
                worker.kill()
                self._workers[slot] = None

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring; a killed one is replaced on the next call)."""
        return [w.process.pid for w in self._workers if w is not None and w.process.pid is not None]

    def _ensure_workers(self) -> int:
        """Start a worker in every empty slot or in place of a dead one; return how many were started."""
        started = 0
        for slot, worker in enumerate(self._workers):
            if worker is not None and worker.process.is_alive():
                continue
            if worker is not None:
                worker.kill()
            self._workers[slot] = _Worker(self._ctx, self.timeout_s)
            started += 1
        return started

    def grade(self, pairs: Sequence[Pair]) -> list[Verdict]:
        """Grade (gold, completion) pairs; each distinct (gold, boxed answer) is graded once. Input order."""
        with self._lock:
            return self._grade_locked(pairs)

    def _grade_locked(self, pairs: Sequence[Pair]) -> list[Verdict]:
        """`grade`, with the pool's lock held."""
        if self._closed:
            raise QuagmireError("the grading pool is closed")
        prepared = [
            (answers.gold_text(answers.as_text(gold)), *answers.answer_text(answers.as_text(completion)))
            for gold, completion in pairs
        ]
        key_index: dict[_Key, int] = {}
        pair_keys = [key_index.setdefault((gold, answer), len(key_index)) for gold, answer, _ in prepared]
        keys = list(key_index)
        outcomes, n_timeouts, n_restarts = self._run(keys)
        self.last_stats = GradingStats(len(pairs), len(keys), n_timeouts, n_restarts)
        verdicts = []
        for key, (_, _, boxed) in zip(pair_keys, prepared, strict=True):
            status, extracted = outcomes[key]
            verdicts.append(_verdict(status, boxed, extracted))
        return verdicts

    def _run(self, keys: list[_Key]) -> tuple[list[tuple[str, str | None]], int, int]:
        """Grade each key once across the workers; returns (status, extracted) per key, timeouts, restarts."""
        outcomes: list[tuple[str, str | None] | None] = [None] * len(keys)
        pending: deque[int] = deque(range(len(keys)))
        remaining = len(keys)
        n_timeouts = 0
        n_restarts = self._ensure_workers()
        crashes: dict[int, int] = {}  # key -> times a worker died (not timed out) while on it
        start_failures = 0  # workers that died before they were ready (killed from outside, or a broken env)

        def record(key: int, status: str, extracted: str | None) -> None:
            nonlocal remaining
            outcomes[key] = (status, extracted)
            remaining -= 1

        def replace(slot: int, cause: str) -> None:
            """Kill and restart the worker in `slot`; its unanswered items go back in line, except the one it
            was on when it overran (`cause="timeout"`) or when it died for the second time (`"crash"`)."""
            nonlocal n_timeouts, n_restarts
            worker = self._workers[slot]
            assert worker is not None
            if worker.inflight and cause != "idle":
                current = worker.inflight[0]
                crashes[current] = crashes.get(current, 0) + (cause == "crash")
                if cause == "timeout" or crashes[current] >= _MAX_CRASHES:
                    record(worker.inflight.popleft(), TIMEOUT, None)
                    n_timeouts += 1
            pending.extendleft(reversed(worker.inflight))
            worker.inflight.clear()
            worker.kill()
            self._workers[slot] = _Worker(self._ctx, self.timeout_s)
            n_restarts += 1

        def drain(slot: int) -> None:
            """Read every message waiting from the worker in `slot`; a closed pipe means it died."""
            nonlocal start_failures
            worker = self._workers[slot]
            assert worker is not None
            try:
                while worker.conn.poll():
                    message = worker.conn.recv()
                    if message[0] == "ready":
                        worker.ready = True
                    else:
                        _, key, status, extracted = message
                        if not worker.inflight or worker.inflight[0] != key:
                            raise QuagmireError(f"grading worker answered item {key} out of turn")
                        worker.inflight.popleft()
                        record(key, status, extracted)
                        worker.item_started_at = time.monotonic()
            except (EOFError, OSError):
                if not worker.ready:  # it holds no item yet; a broken environment fails every start
                    start_failures += 1
                    if start_failures >= _MAX_START_FAILURES:
                        raise QuagmireError(
                            f"grading workers died while starting, {start_failures} times (is math-verify "
                            "installed?); see their stderr"
                        ) from None
                    replace(slot, cause="idle")
                    return
                replace(slot, cause="crash")

        try:
            while remaining:
                workers = [w for w in self._workers if w is not None]
                for slot, worker in enumerate(self._workers):
                    assert worker is not None
                    if worker.ready and not worker.inflight and pending:
                        size = min(_MAX_BATCH, max(1, math.ceil(len(pending) / len(workers))))
                        batch = [pending.popleft() for _ in range(min(size, len(pending)))]
                        worker.inflight.extend(batch)
                        worker.item_started_at = time.monotonic()
                        try:
                            worker.conn.send([(key, *keys[key]) for key in batch])
                        except OSError:  # it died while idle: nothing to blame
                            replace(slot, cause="idle")
                now = time.monotonic()
                first_deadline = min(self._deadline(w) for w in self._workers if w is not None)
                wait_s = None if math.isinf(first_deadline) else max(0.0, first_deadline - now)
                wait([w.conn for w in self._workers if w is not None], timeout=wait_s)
                for slot in range(len(self._workers)):
                    drain(slot)
                now = time.monotonic()
                for slot, worker in enumerate(self._workers):
                    assert worker is not None
                    if not worker.ready and now > worker.started_at + _START_TIMEOUT_S:
                        raise QuagmireError(f"a grading worker did not start within {_START_TIMEOUT_S:.0f} s")
                    if worker.inflight and now > worker.item_started_at + self.timeout_s:
                        drain(slot)  # a last look: it may have answered just now
                        worker = self._workers[slot]
                        assert worker is not None
                        if worker.inflight and now > worker.item_started_at + self.timeout_s:
                            replace(slot, cause="timeout")
        except BaseException:
            for slot, worker in enumerate(self._workers):  # busy workers hold stale items: start afresh
                if worker is not None and worker.inflight:
                    worker.kill()
                    self._workers[slot] = None
            raise
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(keys), "every key is graded or timed out before the loop ends"
        return done, n_timeouts, n_restarts

    def _deadline(self, worker: _Worker) -> float:
        """Monotonic time by which `worker` must report: item deadline if busy, start deadline if starting."""
        if worker.inflight:
            return worker.item_started_at + self.timeout_s
        if not worker.ready:
            return worker.started_at + _START_TIMEOUT_S
        return math.inf
