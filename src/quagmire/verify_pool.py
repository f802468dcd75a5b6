"""Grade model completions against gold answers with math-verify, under a hard per-item CPU-time limit.

math-verify's own timeout uses `signal.alarm`, which fails off the main thread and cannot interrupt sympy
while it holds the GIL inside C code (e.g. `9^{9^{9^{9}}}` never returns). So untrusted pairs are graded in
long-lived worker processes that the parent kills when an item overruns its budget. Model text is only
ever handed to math-verify's parser, never executed, and a parsed sympy object is never turned back into a
string (sympy may evaluate it forever): every `extracted` answer is a slice of the original text.

Deterministic verdicts: the budget is the worker's own CPU time on the item, not wall time, so the same inputs
get the same verdicts on an idle machine and on a loaded one (a wall-clock limit let load turn slow-but-finite
answers into timeouts). A wall-clock backstop, far above the budget, ends a worker that burns no CPU; each
worker's address space is capped (`MEMORY_LIMIT_BYTES`), so one huge answer cannot exhaust the machine.

Golds first: each distinct gold of a call is parsed alone, with its own budget, before any answer is graded; a
gold that does not parse or runs out of time makes its pairs `gold_invalid` (never `timeout`: a bad gold is
never charged to a model), with `Verdict.reason` saying which, and is named once in the log.

Statuses: `correct`, `incorrect`, `no_answer` (nothing parseable), `timeout` (out of CPU time or memory, scored
wrong) and `gold_invalid` (the gold itself does not parse in time; excluded from every denominator, never scored).

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
import dataclasses
import logging
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from quagmire import answers
from quagmire.errors import QuagmireError
from quagmire.processes import die_with_parent
from quagmire.statuses import CORRECT, GOLD_INVALID, INCORRECT, NO_ANSWER, STATUSES, TIMEOUT  # noqa: F401 (re-exported)

GOLD_UNPARSEABLE = "gold_unparseable"  # Verdict.reason of a gold_invalid verdict: math-verify finds nothing in it
GOLD_TIMEOUT = "gold_timeout"  # Verdict.reason of a gold_invalid verdict: its parse ran out of CPU time or memory
MEMORY_LIMIT_BYTES = 4 << 30  # address space per worker (RLIMIT_AS); a worker needs ~0.5 GiB to start

_GOLD_VALID = "gold_valid"  # a worker's answer for a gold checked alone (never a Verdict status)
_MIN_MEMORY_LIMIT_BYTES = 256 << 20

_MAX_BATCH = 32  # items per message to a worker; a timeout only blames the item that hung
_START_TIMEOUT_S = 120.0  # a worker that is not ready by then points at a broken environment
_KILL_GRACE_S = 1.0  # seconds between SIGTERM and SIGKILL
_MAX_CRASHES = 2  # a worker dying twice on the same item marks it `timeout` (it cannot be graded)
_MAX_START_FAILURES = 3  # workers dying before they are ready, per grading call, before the environment is blamed
_BACKSTOP_FACTOR = 2.0  # an orphaned worker is ended by the kernel after 2 * timeout_s + 1 CPU seconds per item
_BACKSTOP_WALL_FACTOR = 10.0  # wall-clock backstop per item: max(10 * timeout_s, timeout_s + 60 s)
_BACKSTOP_WALL_EXTRA_S = 60.0
_MIN_WAIT_S = 0.002  # shortest sleep of the parent between looks at its busy workers
_LOOK_S = 0.005  # the parent's look at workers that all have work queued (a batch is ~32 items, >= ~10 ms)
_GOLD_CACHE_SIZE = 4096  # parsed golds kept per worker (a benchmark has few distinct golds)

_log = logging.getLogger(__name__)

Pair = tuple[str, str]
_Key = tuple[str, str]  # (gold text for math-verify, answer text for math-verify)


# --------------------------------------------------------------------------- math-verify (worker side)


@dataclass(frozen=True)
class Verdict:
    """The grade of one completion: the answer as text, its status, and whether it counts as correct.

    `reason` says why when the status alone does not: for `gold_invalid` from a `GradingPool`, `gold_unparseable`
    or `gold_timeout` (the data filters' drop reasons). It is not part of equality: two verdicts that grade the
    same are equal whichever path produced them.
    """

    extracted: str | None
    status: str
    correct: bool
    reason: str | None = field(default=None, compare=False)


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


def prepared_pair(gold: Any, completion: Any) -> tuple[str, str, str | None]:
    """(gold text, answer text, displayed answer) as math-verify reads them: the one preparation of a (gold,
    completion) pair, shared by the pool (evaluation, the GRPO reward, the filters' gold check) and `grade_one`."""
    answer_text, boxed = answers.answer_text(answers.as_text(completion))
    return answers.gold_text(answers.as_text(gold)), answer_text, boxed


def _prepared_pairs(pairs: Sequence[Pair]) -> list[tuple[str, str, str | None]]:
    """`prepared_pair` of every pair, each distinct (gold, completion) prepared once: short answers repeat a lot
    among n samples of one problem, and the parent's text preparation competes with the workers for the CPUs."""
    memo: dict[tuple[Any, Any], tuple[str, str, str | None]] = {}
    out = []
    for gold, completion in pairs:
        try:
            prepared = memo.get((gold, completion))
        except TypeError:  # a chat completion (a list of messages) is not hashable: prepare it as it comes
            out.append(prepared_pair(gold, completion))
            continue
        if prepared is None:
            prepared = memo[(gold, completion)] = prepared_pair(gold, completion)
        out.append(prepared)
    return out


def grade_one(gold: str, completion: str) -> Verdict:
    """Grade one completion in this process with no time limit; untrusted model text goes to `GradingPool`."""
    gold_text, answer_text, boxed = prepared_pair(gold, completion)
    status, parsed_extracted = _grade_texts(gold_text, answer_text)
    return _verdict(status, boxed, parsed_extracted)


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


def _limit_memory(limit_bytes: int | None) -> None:
    """Cap this worker's address space, so one huge or deeply nested answer cannot take the machine down.

    Past the cap an allocation fails with MemoryError (math-verify turns most into "no parse" / "not equal"; the
    worker loop turns the rest into `timeout`) instead of the kernel's OOM killer choosing a victim.
    """
    if limit_bytes is None:
        return
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        soft = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _check_gold(gold_text: str, gold_cache: dict[str, list[Any]]) -> str:
    """`_GOLD_VALID` or `GOLD_INVALID` for one gold, parsed (and cached) exactly as `_grade_texts` parses golds.

    An empty answer parses to nothing, so the call costs the gold's parse alone and never reaches `verify`.
    """
    status, _ = _grade_texts(gold_text, "", gold_cache)
    return GOLD_INVALID if status == GOLD_INVALID else _GOLD_VALID


def _worker_main(conn: Connection, timeout_s: float, memory_limit_bytes: int | None = None) -> None:
    """Worker loop: receive a batch of (item id, gold text, answer text or None), send one result per item.

    An answer of None asks for the gold alone (`_check_gold`). Every message carries this process's CPU time
    (`time.process_time()`), so the parent knows the CPU time at which the current item began and bounds the CPU
    seconds the item itself spends, whatever the load on the machine. A pair whose gold this worker has not
    parsed yet parses it first and sends a "mark": the gold's parse (bounded when the gold was checked) is not
    charged to the answer, so a pair's verdict does not depend on which worker drew it.
    """
    die_with_parent()
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a worker ended by SIGXCPU leaves no core file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it will kill us
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notices: ours is enforced
    _limit_memory(memory_limit_bytes)
    _cpu_backstop(_START_TIMEOUT_S)
    _grade_texts("\\boxed{1}", "\\boxed{1}")  # import and warm up the LaTeX parser before declaring ready
    conn.send(("ready", time.process_time()))
    gold_cache: dict[str, list[Any]] = {}
    budget_s = _BACKSTOP_FACTOR * timeout_s + 1.0  # a gold's parse and its answer's, each within timeout_s
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for item_id, gold_text, answer_text in batch:
            _cpu_backstop(budget_s)
            try:
                if answer_text is None:
                    status, extracted = _check_gold(gold_text, gold_cache), None
                else:
                    if gold_text not in gold_cache:
                        _check_gold(gold_text, gold_cache)
                        conn.send(("mark", time.process_time()))
                    status, extracted = _grade_texts(gold_text, answer_text, gold_cache)
            except (MemoryError, RecursionError):  # past the memory cap or the stack: it cannot be graded
                gold_cache.clear()
                status, extracted = TIMEOUT, None
            conn.send(("result", item_id, status, extracted, time.process_time()))


# --------------------------------------------------------------------------- the pool (parent side)


@dataclass(frozen=True)
class GradingStats:
    """What the last `GradingPool.grade` call did.

    `n_keys` distinct (gold, answer) pairs were graded, `n_timeouts` of them timed out; `n_golds` distinct golds
    were checked first, `n_gold_invalid` did not parse and `n_gold_timeouts` ran out of time (their pairs are
    `gold_invalid`, not graded). `n_backstops` items (of either kind) were ended by the wall-clock backstop rather
    than their CPU budget; `n_restarts` workers were started in place of killed or dead ones.
    """

    n_pairs: int = 0
    n_keys: int = 0
    n_timeouts: int = 0
    n_restarts: int = 0
    n_golds: int = 0
    n_gold_invalid: int = 0
    n_gold_timeouts: int = 0
    n_backstops: int = 0


_CpuClock = Callable[[], float | None]


def _cpu_clock(pid: int) -> _CpuClock | None:
    """A reader of process `pid`'s CPU seconds (all threads, user + system), or None where none is available.

    Preferred: the process's own CPU-time clock (`clock_getcpuclockid`), the clock `time.process_time()` reads in
    the worker, so the parent and the worker's stamps agree to the nanosecond and a read costs one system call.
    Else /proc/<pid>/stat (utime + stime, in clock ticks: ~10 ms resolution, never ahead of the worker's own
    stamps). Elsewhere (no Linux) None: the pool falls back to wall time per item, which load can stretch.
    The reader returns None once the process is gone.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError, ValueError):
            libc = ctypes.CDLL(None, use_errno=True)
            clock_id = ctypes.c_int()
            if libc.clock_getcpuclockid(pid, ctypes.byref(clock_id)) == 0:
                time.clock_gettime(clock_id.value)  # fails here, not in the loop, if the clock is unusable

                def read_clock(clock: int = clock_id.value) -> float | None:
                    try:
                        return time.clock_gettime(clock)
                    except OSError:
                        return None

                return read_clock
    stat = f"/proc/{pid}/stat"
    if os.path.exists(stat):
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

        def read_proc() -> float | None:
            try:
                with open(stat, "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                return None
            return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime: fields 14 and 15 of the line

        return read_proc
    return None


class _Worker:
    """One grading process, its pipe, its CPU clock, and the items it holds (first = the one it is working on)."""

    def __init__(self, ctx: Any, timeout_s: float, memory_limit_bytes: int | None) -> None:
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main,
            args=(child_conn, timeout_s, memory_limit_bytes),
            name="quagmire-grader",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self.conn: Connection = parent_conn
        self.cpu_clock = _cpu_clock(self.process.pid) if self.process.pid is not None else None
        self.ready = False
        self.started_at = time.monotonic()
        self.item_started_at = 0.0  # when the worker began its current item (monotonic seconds, for the backstop)
        self.last_cpu = 0.0  # the worker's CPU seconds in its last message
        self.item_cpu = 0.0  # the worker's CPU seconds when its current item began (its own stamp)
        self.inflight: deque[int] = deque()

    def cpu_seconds(self) -> float | None:
        """The worker's CPU seconds now; None without a CPU clock or once the process is gone."""
        return self.cpu_clock() if self.cpu_clock is not None else None

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


class _WorkQueue:
    """Items waiting for a worker, grouped by gold, so that a gold's pairs go to the worker that parsed it.

    A worker parses each gold once and keeps it (the golds round parses every gold, so without affinity about half
    of the golds would be parsed a second time by the other worker). `owners` maps a gold text to the worker that
    holds it parsed; it is the pool's, so it outlives one round. A free worker takes, in order: items of its own
    golds; items of an unclaimed gold (which it then claims); else, rather than idle, the tail of the largest
    group left (the only case in which a gold is parsed twice).
    """

    def __init__(self, items: list[tuple[str, str | None]], owners: dict[str, _Worker]) -> None:
        self._items = items
        self._owners = owners
        self._groups: dict[str, deque[int]] = {}
        for index, (gold, _) in enumerate(items):
            self._groups.setdefault(gold, deque()).append(index)
        self._size = len(items)

    def __len__(self) -> int:
        return self._size

    def take(self, worker: _Worker, size: int) -> list[int]:
        """Up to `size` items for `worker`."""
        batch: list[int] = []
        for claimed in (True, False):
            for gold in list(self._groups):
                if len(batch) >= size:
                    break
                owner = self._owners.get(gold)
                if (owner is worker) if claimed else (owner is None):
                    self._owners[gold] = worker
                    group = self._groups[gold]
                    while group and len(batch) < size:
                        batch.append(group.popleft())
                    if not group:
                        del self._groups[gold]
        if not batch and self._groups:  # everything left belongs to busy workers: help with the largest group
            gold = max(self._groups, key=lambda g: len(self._groups[g]))
            group = self._groups[gold]
            while group and len(batch) < size:
                batch.append(group.pop())
            if not group:
                del self._groups[gold]
            batch.reverse()
        self._size -= len(batch)
        return batch

    def put_back(self, items: Sequence[int]) -> None:
        """Return items a dead worker held, ahead of the rest of their golds' items."""
        for index in reversed(items):
            self._groups.setdefault(self._items[index][0], deque()).appendleft(index)
        self._size += len(items)


class GradingPool:
    """Long-lived math-verify workers with a hard per-item CPU-time limit; use as a context manager.

    Golds first: every distinct gold of a call is parsed once, as its own item with its own budget. A gold that
    does not parse, or runs out of time, makes each of its pairs `gold_invalid` (reason `gold_unparseable` /
    `gold_timeout`): never graded, never `timeout`, never charged to a model. Then each distinct (gold, answer)
    pair with a valid gold is graded once.

    `timeout_s` bounds the CPU seconds one item (a gold's parse, or an answer's parse + verify) may spend inside a
    worker, measured on the worker's own CPU clock: a verdict does not depend on how busy the machine is. A worker
    that overruns is killed and replaced, its item marked `timeout`, and the rest of its batch re-dispatched. A
    wall-clock backstop (`backstop_s`, default max(10 x timeout_s, timeout_s + 60 s)) ends an item that burns no CPU
    (a worker starved or stuck in the kernel), so nothing hangs; such ends are counted apart
    (`GradingStats.n_backstops`). Without a CPU clock (not Linux) the limit falls back to wall time per item.
    `memory_limit_bytes` caps each worker's address space (None: no cap).
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 5.0,
        memory_limit_bytes: int | None = MEMORY_LIMIT_BYTES,
        backstop_s: float | None = None,
    ) -> None:
        if workers < 1:
            raise QuagmireError(f"grading workers must be at least 1 (got {workers})")
        if not timeout_s > 0:
            raise QuagmireError(f"grading timeout must be a positive number of seconds (got {timeout_s})")
        if memory_limit_bytes is not None and memory_limit_bytes < _MIN_MEMORY_LIMIT_BYTES:
            raise QuagmireError(
                f"grading memory limit must be at least {_MIN_MEMORY_LIMIT_BYTES >> 20} MiB (got {memory_limit_bytes})"
            )
        self.timeout_s = float(timeout_s)
        default_backstop_s = max(_BACKSTOP_WALL_FACTOR * self.timeout_s, self.timeout_s + _BACKSTOP_WALL_EXTRA_S)
        self.backstop_s = float(backstop_s) if backstop_s is not None else default_backstop_s
        if not self.backstop_s > 0:
            raise QuagmireError(f"grading backstop must be a positive number of seconds (got {backstop_s})")
        self.memory_limit_bytes = memory_limit_bytes
        self.last_stats = GradingStats()
        self._ctx = _worker_context()
        self._workers: list[_Worker | None] = [None] * workers
        self._golds: dict[str, str | None] = {}  # gold text -> None (valid) or the reason it is invalid
        self._owners: dict[str, _Worker] = {}  # gold text -> the worker that holds it parsed (see _WorkQueue)
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

    def _new_worker(self) -> _Worker:
        return _Worker(self._ctx, self.timeout_s, self.memory_limit_bytes)

    def _ensure_workers(self) -> int:
        """Start a worker in every empty slot or in place of a dead one; return how many were started."""
        started = 0
        for slot, worker in enumerate(self._workers):
            if worker is not None and worker.process.is_alive():
                continue
            if worker is not None:
                worker.kill()
            self._workers[slot] = self._new_worker()
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
        prepared = _prepared_pairs(pairs)
        golds = list(dict.fromkeys(gold for gold, _, _ in prepared))
        counters = _Counters()
        gold_reasons = self._check_golds(golds, counters)
        key_index: dict[_Key, int] = {}
        pair_keys = [
            key_index.setdefault((gold, answer), len(key_index)) if gold_reasons[gold] is None else -1
            for gold, answer, _ in prepared
        ]
        keys = list(key_index)
        outcomes = self._run([(gold, answer) for gold, answer in keys], counters)
        reasons = [gold_reasons[gold] for gold in golds]
        self.last_stats = GradingStats(
            n_pairs=len(pairs),
            n_keys=len(keys),
            n_timeouts=sum(status == TIMEOUT for status, _ in outcomes),
            n_restarts=counters.restarts,
            n_golds=len(golds),
            n_gold_invalid=reasons.count(GOLD_UNPARSEABLE),
            n_gold_timeouts=reasons.count(GOLD_TIMEOUT),
            n_backstops=counters.backstops,
        )
        verdicts = []
        made: dict[tuple[int, str, str | None], Verdict] = {}  # frozen: equal samples share one verdict object
        for key, (gold, _, boxed) in zip(pair_keys, prepared, strict=True):
            verdict = made.get((key, gold, boxed))
            if verdict is None:
                if key < 0:
                    verdict = dataclasses.replace(_verdict(GOLD_INVALID, boxed, None), reason=gold_reasons[gold])
                else:
                    status, extracted = outcomes[key]
                    verdict = _verdict(status, boxed, extracted)
                made[(key, gold, boxed)] = verdict
            verdicts.append(verdict)
        return verdicts

    def _check_golds(self, golds: list[str], counters: _Counters) -> dict[str, str | None]:
        """Gold text -> None when it parses within its budget, else `GOLD_UNPARSEABLE` / `GOLD_TIMEOUT`.

        Each gold is checked once per pool (remembered, up to `_GOLD_CACHE_SIZE` golds; not when the wall-clock
        backstop ended its check, which says nothing about the gold) and each invalid one is logged once, by
        name, so the grading log says which problem was excluded and why.
        """
        unknown = [gold for gold in golds if gold not in self._golds]
        reasons = {gold: self._golds[gold] for gold in golds if gold in self._golds}
        if unknown:
            outcomes = self._run([(gold, None) for gold in unknown], counters)
            if len(self._golds) + len(unknown) > _GOLD_CACHE_SIZE:
                self._golds.clear()
            for index, (gold, (status, _)) in enumerate(zip(unknown, outcomes, strict=True)):
                reason = {GOLD_INVALID: GOLD_UNPARSEABLE, TIMEOUT: GOLD_TIMEOUT}.get(status)
                reasons[gold] = reason
                if index not in counters.backstopped:  # a stalled worker says nothing about the gold: ask again
                    self._golds[gold] = reason
                if reason == GOLD_UNPARSEABLE:
                    _log.warning("gold_invalid: math-verify cannot parse the gold %s", _short(gold))
                elif reason == GOLD_TIMEOUT:
                    _log.warning(
                        "gold_invalid: the gold %s did not parse within %g CPU seconds", _short(gold), self.timeout_s
                    )
        return reasons

    def _run(self, items: list[tuple[str, str | None]], counters: _Counters) -> list[tuple[str, str | None]]:
        """Grade each item (gold text, answer text or None for the gold alone) once across the workers.

        Returns (status, extracted) per item; a gold alone gets `_GOLD_VALID`, `GOLD_INVALID` or `TIMEOUT`.
        """
        outcomes: list[tuple[str, str | None] | None] = [None] * len(items)
        counters.backstopped = set()
        if len(self._owners) > _GOLD_CACHE_SIZE:  # the workers' gold caches are cleared as often
            self._owners.clear()
        pending = _WorkQueue(items, self._owners)
        remaining = len(items)
        counters.restarts += self._ensure_workers()
        crashes: dict[int, int] = {}  # item -> times a worker died (not timed out) while on it
        start_failures = 0  # workers that died before they were ready (killed from outside, or a broken env)
        limit_s = self.timeout_s

        def record(item: int, status: str, extracted: str | None) -> None:
            nonlocal remaining
            outcomes[item] = (status, extracted)
            remaining -= 1

        def replace(slot: int, cause: str) -> None:
            """Kill and restart the worker in `slot`; its unanswered items go back in line, except the one it
            was on when it overran (`cause` "timeout" or "backstop") or died for the second time ("crash")."""
            worker = self._workers[slot]
            assert worker is not None
            if worker.inflight and cause != "idle":
                current = worker.inflight[0]
                crashes[current] = crashes.get(current, 0) + (cause == "crash")
                if cause in ("timeout", "backstop") or crashes[current] >= _MAX_CRASHES:
                    item = worker.inflight.popleft()
                    record(item, TIMEOUT, None)
                    if cause == "backstop":
                        counters.backstops += 1
                        counters.backstopped.add(item)
            pending.put_back(list(worker.inflight))
            worker.inflight.clear()
            worker.kill()
            for gold in [gold for gold, owner in self._owners.items() if owner is worker]:
                del self._owners[gold]  # its parsed golds died with it
            self._workers[slot] = self._new_worker()
            counters.restarts += 1

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
                        worker.last_cpu = message[1]
                    elif message[0] == "mark":  # the gold is parsed: the answer's own budget starts now
                        worker.item_cpu = worker.last_cpu = message[1]
                    else:
                        _, item, status, extracted, cpu = message
                        if not worker.inflight or worker.inflight[0] != item:
                            raise QuagmireError(f"grading worker answered item {item} out of turn")
                        worker.inflight.popleft()
                        record(item, status, extracted)
                        worker.item_started_at = time.monotonic()
                        worker.item_cpu = worker.last_cpu = cpu
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

        def wait_s(worker: _Worker, now: float) -> float:
            """Seconds until `worker` may next need a look: its item cannot exceed its CPU budget any sooner
            (one thread's CPU time never outruns the wall clock), nor its backstop, nor a start its deadline."""
            if worker.inflight:
                left = worker.item_started_at + self.backstop_s - now
                cpu = worker.cpu_seconds()
                if cpu is None:  # no CPU clock: wall time bounds the item
                    return min(left, worker.item_started_at + limit_s - now)
                return min(left, limit_s - (cpu - worker.item_cpu))
            if not worker.ready:
                return worker.started_at + _START_TIMEOUT_S - now
            return math.inf

        try:
            while remaining:
                n_workers = len(self._workers)
                for slot, worker in enumerate(self._workers):
                    assert worker is not None
                    size = min(_MAX_BATCH, max(1, math.ceil(len(pending) / n_workers)))
                    # Double-buffered: a worker holds its next batch before it finishes this one, so it never waits
                    # for the parent, and the parent need not wake for every result (see the look below).
                    if worker.ready and len(worker.inflight) <= size and pending:
                        idle = not worker.inflight
                        batch = pending.take(worker, size)
                        worker.inflight.extend(batch)
                        if idle:
                            worker.item_started_at = time.monotonic()
                            worker.item_cpu = worker.last_cpu  # an idle worker spends no CPU: its item starts here
                        try:
                            worker.conn.send([(item, *items[item]) for item in batch])
                        except OSError:  # it died: while idle, nothing to blame; else `drain` finds it dead
                            if idle:
                                replace(slot, cause="idle")
                now = time.monotonic()
                live = [w for w in self._workers if w is not None]
                first = min(wait_s(w, now) for w in live)
                if all(w.ready and w.inflight for w in live):
                    # Every worker is busy with work queued behind its current item: look again after a short
                    # quantum (or sooner, when a budget may run out) instead of on every result. Results wait in
                    # the pipes; their CPU stamps keep every budget exact, only a kill comes up to _LOOK_S later.
                    time.sleep(max(_MIN_WAIT_S, min(_LOOK_S, first)))
                else:
                    wait([w.conn for w in live], timeout=None if math.isinf(first) else max(_MIN_WAIT_S, first))
                # CPU times are read before the pipes are drained: a stamp read after is at least as late, so an
                # item is never charged CPU time spent before it began (at worst its check waits a round).
                cpu_now = {slot: w.cpu_seconds() for slot, w in enumerate(self._workers) if w and w.inflight}
                for slot in range(len(self._workers)):
                    drain(slot)
                now = time.monotonic()
                for slot, worker in enumerate(self._workers):
                    assert worker is not None
                    if not worker.ready and now > worker.started_at + _START_TIMEOUT_S:
                        raise QuagmireError(f"a grading worker did not start within {_START_TIMEOUT_S:.0f} s")
                    if not worker.inflight or slot not in cpu_now:
                        continue
                    cpu = cpu_now[slot]
                    if cpu is not None and cpu - worker.item_cpu > limit_s:
                        replace(slot, cause="timeout")
                    elif worker.cpu_clock is None and now > worker.item_started_at + limit_s:
                        replace(slot, cause="timeout")
                    elif now > worker.item_started_at + self.backstop_s:
                        replace(slot, cause="backstop")
        except BaseException:
            for slot, worker in enumerate(self._workers):  # busy workers hold stale items: start afresh
                if worker is not None and worker.inflight:
                    worker.kill()
                    self._workers[slot] = None
            raise
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(items), "every item is graded or timed out before the loop ends"
        return done


@dataclass
class _Counters:
    """Restarts and backstop ends across the gold and pair rounds of one `grade` call."""

    restarts: int = 0
    backstops: int = 0
    backstopped: set[int] = field(default_factory=set)  # items of the current round ended by the backstop


def _short(text: str, limit: int = 80) -> str:
    """`text` as repr, cut to about `limit` characters, for a log line that names a gold."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
