"""Warm start: local Snakemake jobs fork from one process that has already imported torch, transformers and TRL.

Why: at the embedded study's scale a job's imports cost more than its work. `import torch` plus
`from transformers import LlamaForCausalLM` is about 6 s on a 2-core machine (transformers pulls in
torch.distributed.tensor, torch._dynamo, sympy), TRL another second, and the study runs 64 torch jobs: over 6
minutes of CPU spent importing the same modules. A local run therefore starts one server (`serve`) that imports
them once; each job's `python -m quagmire ...` (`quagmire.__main__`) hands its argv, working directory,
environment and its stdin/stdout/stderr file descriptors to the server (`run_warm`), which forks a child that runs
the command exactly as the cold process would have, writing straight into the job's log. What a job computes is
the same either way: the child runs the same code on the same inputs, seeds everything itself as a cold job does,
and the server never runs a torch op (so no thread pool exists at fork time). The embedded study's tables are
byte-identical with and without it.

The job stays the job: it keeps running until the child ends, exits with the child's code (128 + N for a child
killed by signal N), passes SIGINT/SIGTERM/SIGHUP on to the child, and the child ends itself when the job's
process goes away (Snakemake killed it). A server is only used where it would import what the cold job imports:
the same interpreter, the same `sys.path`, and the same environment variables that modules read at import time
(`IMPORT_TIME_PREFIXES`); otherwise, or when no server is up (not started, still importing, or gone), the job
says why on its stderr and runs cold. Nothing here decides a result.

Scope: local execution only (`snakemake --cores N`; the Snakefile starts and stops the server, see
rules/common.smk). Cluster jobs run cold on their nodes, as do jobs under any `--sdm` (a conda env or a
container: another interpreter).
`QUAGMIRE_WARM_START=0` turns it off.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

SOCKET_ENV = "QUAGMIRE_WARM_SOCKET"  # set for jobs by the Snakefile while a server is up
SWITCH_ENV = "QUAGMIRE_WARM_START"  # "0": never start a server
# Environment variables read while the preloaded modules import (offline switches, caches, thread and device
# settings, Python's own): a job whose values differ would not be importing what the server imported.
IMPORT_TIME_PREFIXES = (
    "HF_",
    "HUGGINGFACE",
    "TRANSFORMERS",
    "TOKENIZERS",
    "TRL",
    "ACCELERATE",
    "TORCH",
    "PYTORCH",
    "CUDA",
    "ATEN_",  # the CPU kernel variant torch picks at its first operation (quagmire.determinism)
    "ONEDNN",
    "DNNL",
    "OMP_",
    "MKL_",
    "OPENBLAS",
    "GOTO_",
    "VECLIB",
    "NUMEXPR",
    "PYTHON",
    "XDG_CACHE",
)
# What Snakemake sets to a job's thread count (snakemake/shell.py): the server is started with the study's value
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# What a study's jobs import: the server imports it once (every module is imported by some job anyway).
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "trl",
    "datasets",
    "pandas",
    "pyarrow.parquet",
    "math_verify",
    "quagmire.cli",
    "quagmire.train.sft",
    "quagmire.train.grpo",
    "quagmire.eval.sampling",
    "quagmire.eval.grading",
)
ENTRY = "quagmire.cli:main"
_LENGTH = struct.Struct("!Q")


def job_environment(environ: Mapping[str, str], src: str | os.PathLike[str], threads: int) -> dict[str, str]:
    """The environment a local Snakemake job of this workflow gets, for the server to import in: `environ` with
    `src` first on PYTHONPATH (as rules/common.smk's shell prefix puts it) and Snakemake's thread variables set to
    `threads` (a job's threads; jobs of other thread counts differ and run cold)."""
    env = dict(environ, **{name: str(threads) for name in THREAD_VARIABLES})
    env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [environ.get("PYTHONPATH")])])
    return env


def import_time_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` that modules read at import time (`IMPORT_TIME_PREFIXES`)."""
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES)}


def mismatch(request: Mapping[str, Any], server: Mapping[str, Any]) -> str | None:
    """Why a job described by `request` must not fork from `server` (None: it may). Both are `identity()`s."""
    if request["executable"] != server["executable"]:
        return f"another interpreter ({request['executable']}, the server runs {server['executable']})"
    if request["prefix"] != server["prefix"]:
        return f"another environment ({request['prefix']}, the server runs in {server['prefix']})"
    if request["path"] != server["path"]:
        return "another sys.path"
    ours, theirs = request["import_env"], server["import_env"]
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differ:
        return f"environment variables read at import time differ: {', '.join(differ)}"
    return None


def identity(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What decides whether this process imports what another does: interpreter, sys.path, import-time env."""
    return {
        "executable": os.path.realpath(sys.executable),
        "prefix": os.path.realpath(sys.prefix),
        "path": [os.path.abspath(p or os.curdir) for p in sys.path],
        "import_env": import_time_env(os.environ if env is None else env),
    }


# ---- the job's side -------------------------------------------------------------------------------------------
def _send(sock: socket.socket, payload: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(payload).encode()
    if fds:
        socket.send_fds(sock, [_LENGTH.pack(len(data))], list(fds))
    else:
        sock.sendall(_LENGTH.pack(len(data)))
    sock.sendall(data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket, maxfds: int = 0) -> tuple[dict[str, Any], list[int]]:
    if maxfds:
        head, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, maxfds)
        if not head:
            raise EOFError("connection closed")
        head += _recv_exact(sock, _LENGTH.size - len(head))
    else:
        head, fds = _recv_exact(sock, _LENGTH.size), []
    (size,) = _LENGTH.unpack(head)
    return json.loads(_recv_exact(sock, size)), list(fds)


def _cold(reason: str) -> None:
    print(f"quagmire: warm start not used ({reason}); starting cold", file=sys.stderr, flush=True)


def run_warm(argv: Sequence[str]) -> int | None:
    """Run `argv` in a child of the warm server; its exit code, or None when the caller must run it cold.

    None without a word when no server is configured for this job ($QUAGMIRE_WARM_SOCKET unset); with a line
    on stderr saying why when one is configured but cannot be used.
    """
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        _cold(f"no server at {path}: {exc.strerror or exc}")
        return None
    with sock:
        request = {"argv": [sys.argv[0], *argv], "cwd": os.getcwd(), "env": dict(os.environ), **identity()}
        request["umask"] = os.umask(0o022)
        os.umask(request["umask"])
        try:
            _send(sock, request, fds=(0, 1, 2))
            reply, _ = _recv(sock)
        except (OSError, EOFError) as exc:
            _cold(f"the server did not answer: {exc}")
            return None
        if "refused" in reply:
            _cold(reply["refused"])
            return None
        child = int(reply["pid"])
        _forward_signals(child)
        try:
            status, _ = _recv(sock)
        except (OSError, EOFError):
            # The server went away while the child ran: the child ends itself (it watches this connection too).
            print("quagmire: the warm-start server went away before the job ended", file=sys.stderr, flush=True)
            return 1
        return int(status["code"])


def _forward_signals(child: int) -> None:
    """Pass what would have stopped the cold job on to the child that runs it."""

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)


# ---- the server's side ----------------------------------------------------------------------------------------
def _load_entry(entry: str) -> Callable[[list[str]], int | None]:
    import importlib

    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def _child(
    conn: socket.socket, request: Mapping[str, Any], fds: Sequence[int], entry: str, inherited: Sequence[int]
) -> None:
    """In the forked child: become the job (its fds, cwd, env, argv), watch the job's process, run, exit.

    `inherited`: the server's descriptors (listener, wake-up pipe, other jobs' connections), closed first, so a
    job waiting on its connection sees the server go away even while other children still run.
    """
    import logging
    import tempfile
    import threading

    code = 1
    try:
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        for key, value in request.get("import_added", {}).items():
            os.environ.setdefault(key, value)
        sys.argv = list(request["argv"])
        tempfile.tempdir = None  # read $TMPDIR again: Snakemake gives each job its own
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        root = logging.getLogger()
        for handler in list(root.handlers):  # the job configures its own logging, as a cold process would
            root.removeHandler(handler)

        def watch() -> None:  # the job's process is gone (killed): so is its work
            with contextlib.suppress(OSError):
                while conn.recv(1):
                    pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True, name="warm-start-watch").start()
        try:
            result = _load_entry(entry)(list(request["argv"][1:]))
            code = 0 if result is None else int(result)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def serve(
    path: str | os.PathLike[str],
    preload: Sequence[str] = PRELOAD,
    entry: str = ENTRY,
    log: Callable[[str], None] | None = None,
) -> None:
    """Import `preload`, listen on the Unix socket `path`, and run each request in a forked child until SIGTERM
    (or until the process that started the server dies: see `main`).

    One thread throughout, so a fork never copies a lock held by another thread; children are reaped as they end
    (SIGCHLD wakes the loop) and their exit codes sent to their jobs.
    """
    import importlib
    import selectors
    import time

    def stamp(message: str) -> None:
        print(
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} quagmire warm-start [{os.getpid()}]: {message}",
            file=sys.stderr,
            flush=True,
        )

    say = log or stamp
    start = time.monotonic()
    own = identity()  # before the imports, which set variables of their own (torch: TORCHINDUCTOR_CACHE_DIR)
    before = dict(os.environ)
    for module in preload:
        importlib.import_module(module)
    # What the imports put into the environment, put into each job's too: as its own cold imports would have
    own["import_added"] = {k: v for k, v in os.environ.items() if k not in before}
    say(f"imported {len(preload)} modules in {time.monotonic() - start:.1f} s; listening on {path}")

    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    tmp = f"{path}.{os.getpid()}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    listener.listen(64)
    os.replace(tmp, path)  # the path appears only once the server accepts
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    running: dict[int, socket.socket] = {}
    served = 0
    try:
        while not stopping:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                elif not stopping:
                    conn, _ = listener.accept()
                    inherited = [listener.fileno(), wake_r, wake_w, selector.fileno()]
                    inherited += [c.fileno() for c in running.values()]
                    pid = _start(conn, own, entry, say, inherited)
                    if pid is not None:
                        running[pid] = conn
                        served += 1
            _reap(running, block=False)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        listener.close()
        say(f"stopping after {served} jobs ({len(running)} still running)")
        _reap(running, block=True)


def _start(
    conn: socket.socket,
    own: Mapping[str, Any],
    entry: str,
    say: Callable[[str], None],
    inherited: Sequence[int] = (),
) -> int | None:
    """Read one request from `conn` and fork its child; the child's pid, or None (refused or broken)."""
    try:
        conn.settimeout(10.0)
        request, fds = _recv(conn, maxfds=3)
        conn.settimeout(None)
    except (OSError, EOFError, ValueError) as exc:
        say(f"dropped a request: {exc}")
        conn.close()
        return None
    reason = mismatch(request, own) if len(fds) == 3 else "no stdin/stdout/stderr passed"
    if reason:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            _send(conn, {"refused": reason})
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(conn, {**request, "import_added": own["import_added"]}, fds, entry, inherited)  # never returns
    for fd in fds:
        os.close(fd)
    try:
        _send(conn, {"pid": pid})
    except OSError:
        pass  # the job is gone already: the child notices and ends
    return pid


def _reap(running: dict[int, socket.socket], block: bool) -> None:
    """Collect ended children and tell their jobs how they ended."""
    while running:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            running.clear()
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                _send(conn, {"code": _exit_code(status)})
            conn.close()


# ---- starting and stopping a server (the Snakefile's onstart / onsuccess / onerror) ----------------------------
class Server:
    """A warm-start server process for one Snakemake run: `start()` returns the socket path to export to jobs."""

    def __init__(self, log_path: str | os.PathLike[str], preload: Sequence[str] = PRELOAD, entry: str = ENTRY):
        self.log_path = Path(log_path)
        self.preload = tuple(preload)
        self.entry = entry
        self.process: Any = None
        self.folder: str | None = None

    @property
    def socket_path(self) -> str:
        assert self.folder is not None
        return os.path.join(self.folder, "s")  # short: a Unix socket path is limited to ~107 bytes

    def start(self, env: Mapping[str, str] | None = None) -> str:
        import subprocess
        import tempfile

        self.folder = tempfile.mkdtemp(prefix="quagmire-warm-")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "quagmire.warm_start", self.socket_path, "--entry", self.entry]
        command += [arg for module in self.preload for arg in ("--preload", module)]
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=dict(env or os.environ)
            )
        return self.socket_path

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until the server listens (its imports done); raise if it exits or takes longer than `timeout_s`.

        Snakemake never waits (a job that comes early runs cold); the performance suite and tests do.
        """
        import time

        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None:
                raise RuntimeError(f"the warm-start server exited ({self.process.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the warm-start server did not listen within {timeout_s:g} s")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 30.0) -> None:
        import shutil
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """False when $QUAGMIRE_WARM_START says no ("0", "false", "no", "off")."""
    value = (os.environ if env is None else env).get(SWITCH_ENV, "1").strip().lower()
    return value not in {"0", "false", "no", "off"}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m quagmire.warm_start SOCKET [--preload MODULE ...] [--entry MODULE:FUNCTION]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m quagmire.warm_start", description=__doc__.splitlines()[0])
    parser.add_argument("socket")
    parser.add_argument("--preload", action="append", default=None)
    parser.add_argument("--entry", default=ENTRY)
    args = parser.parse_args(argv)
    from quagmire.processes import die_with_parent

    die_with_parent(signal.SIGTERM)  # Snakemake killed outright: the kernel stops the server
    if os.getppid() == 1:  # the parent died before that request: nobody is left to serve
        return 0
    serve(args.socket, PRELOAD if args.preload is None else args.preload, args.entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
