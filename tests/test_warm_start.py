"""Warm start (quagmire.warm_start): a job forked from the server behaves as the cold job would.

The server here preloads nothing heavy and runs a small entry module written by the test instead of the CLI, so
each behaviour (fds, env, exit codes, signals, refusals, lifetime) is checked in well under a second of work; the
real preload and the real CLI are exercised by the workflow test at the end (a real Snakemake run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quagmire import warm_start

REPO = Path(__file__).resolve().parents[1]

ENTRY = '''
import os, sys, time

def main(argv):
    command, *rest = argv
    if command == "echo":
        print(" ".join(rest))
        print("to stderr", file=sys.stderr)
        return 0
    if command == "env":
        print(os.environ.get(rest[0], "<unset>"))
        return None
    if command == "exit":
        return int(rest[0])
    if command == "raise":
        raise SystemExit(int(rest[0]))
    if command == "stdin":
        print(sys.stdin.read().upper())
        return 0
    if command == "crash":
        os.kill(os.getpid(), 9)
    if command == "sleep":
        print(os.getpid(), os.getppid(), flush=True)
        time.sleep(float(rest[0]))
        return 0
    raise ValueError(command)
'''


@pytest.fixture()
def entry_dir(tmp_path: Path) -> Path:
    (tmp_path / "warm_entry_for_tests.py").write_text(ENTRY)
    return tmp_path


def _env(entry_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(entry_dir)])
    env.pop(warm_start.SOCKET_ENV, None)
    env.update(extra)
    return env


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"the server exited ({process.returncode})"
        assert time.monotonic() < deadline, "the server never listened"
        time.sleep(0.05)


@pytest.fixture()
def server(entry_dir: Path, tmp_path: Path):
    """A server on a socket in tmp_path, run from the repository root as Snakemake's jobs are."""
    socket_path = tmp_path / "s"
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "quagmire.warm_start", str(socket_path), "--preload", "json",
         "--entry", "warm_entry_for_tests:main"],
        cwd=REPO, env=_env(entry_dir), stdout=log, stderr=log,
    )
    _wait_for(socket_path, process)
    yield socket_path, process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    log.close()


def _job(server_socket: Path | str, entry_dir: Path, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    """`python -m quagmire ARGV` as a Snakemake job runs it, with the server's socket in its environment."""
    env = _env(entry_dir, **{warm_start.SOCKET_ENV: str(server_socket)}, **kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "quagmire", *argv], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, **kwargs,
    )


def test_a_job_runs_in_a_child_of_the_server_writing_to_its_own_stdout_and_stderr(server, entry_dir) -> None:
    socket_path, process = server
    job = _job(socket_path, entry_dir, "echo", "hello", "world")
    assert job.returncode == 0, job.stderr
    assert job.stdout == "hello world\n"
    assert job.stderr == "to stderr\n"  # no "warm start not used": it was served


def test_the_child_has_the_jobs_environment_and_stdin(server, entry_dir) -> None:
    socket_path, _ = server
    job = _job(socket_path, entry_dir, "env", "ONLY_IN_THIS_JOB", env={"ONLY_IN_THIS_JOB": "yes"})
    assert (job.returncode, job.stdout) == (0, "yes\n"), job.stderr
    job = _job(socket_path, entry_dir, "stdin", input="from the job\n")
    assert (job.returncode, job.stdout) == (0, "FROM THE JOB\n\n"), job.stderr


@pytest.mark.parametrize(
    ("argv", "code"), [(("exit", "3"), 3), (("raise", "4"), 4), (("crash",), 128 + 9), (("nonsense",), 1)]
)
def test_the_job_exits_as_its_child_did(server, entry_dir, argv, code) -> None:
    socket_path, _ = server
    job = _job(socket_path, entry_dir, *argv)
    assert job.returncode == code, job.stderr
    if argv == ("nonsense",):
        assert "ValueError: nonsense" in job.stderr  # the traceback goes to the job's log


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by the server) counts as ended
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def _start_sleeping_job(socket_path: Path, entry_dir: Path) -> tuple[subprocess.Popen, int, int]:
    env = _env(entry_dir, **{warm_start.SOCKET_ENV: str(socket_path)})
    job = subprocess.Popen(
        [sys.executable, "-m", "quagmire", "sleep", "60"], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    child, parent = map(int, job.stdout.readline().split())
    return job, child, parent


def test_a_signal_to_the_job_reaches_its_child_and_the_job_exits_as_the_child_did(server, entry_dir) -> None:
    socket_path, process = server
    job, child, parent = _start_sleeping_job(socket_path, entry_dir)
    assert parent == process.pid and child != job.pid  # it really runs in a child of the server
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=30) == 128 + signal.SIGTERM
    assert not _pid_alive(child)


def test_a_job_killed_outright_takes_its_child_with_it(server, entry_dir) -> None:
    socket_path, _ = server
    job, child, _ = _start_sleeping_job(socket_path, entry_dir)
    job.kill()  # SIGKILL: nothing to forward; the child sees the job's connection close
    job.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _pid_alive(child):
        assert time.monotonic() < deadline, "the child outlived its job"
        time.sleep(0.05)


def test_a_job_that_would_import_otherwise_is_refused_and_runs_cold(server, entry_dir) -> None:
    socket_path, _ = server
    flipped = "0" if os.environ.get("HF_HUB_OFFLINE") == "1" else "1"
    job = _job(socket_path, entry_dir, "--help", env={"HF_HUB_OFFLINE": flipped})
    assert "warm start not used (environment variables read at import time differ: HF_HUB_OFFLINE)" in job.stderr
    assert job.returncode == 0 and job.stdout.startswith("usage: quagmire")  # the real CLI, run cold


def test_without_a_server_the_job_says_so_and_runs_cold(entry_dir, tmp_path) -> None:
    job = _job(tmp_path / "nobody-listens", entry_dir, "--help")
    assert "warm start not used (no server at" in job.stderr
    assert job.returncode == 0 and job.stdout.startswith("usage: quagmire")


def test_without_the_variable_nothing_is_tried(entry_dir) -> None:
    env = _env(entry_dir)
    job = subprocess.run(
        [sys.executable, "-m", "quagmire", "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert job.returncode == 0 and job.stderr == ""


def test_mismatch_names_what_differs() -> None:
    own = warm_start.identity({"HF_HUB_OFFLINE": "1", "HOME": "/a"})
    assert warm_start.mismatch(own, own) is None
    assert warm_start.mismatch({**own, "import_env": {"HF_HUB_OFFLINE": "1"}}, own) is None  # HOME: not read
    assert "interpreter" in warm_start.mismatch({**own, "executable": "/other/python"}, own)
    assert "environment (" in warm_start.mismatch({**own, "prefix": "/other/venv"}, own)
    assert warm_start.mismatch({**own, "path": ["/elsewhere"]}, own) == "another sys.path"
    other = warm_start.identity({"HF_HUB_OFFLINE": "0", "OMP_NUM_THREADS": "2", "HOME": "/b"})
    assert warm_start.mismatch(other, own).endswith("differ: HF_HUB_OFFLINE, OMP_NUM_THREADS")


def test_the_switch() -> None:
    assert warm_start.enabled({})
    assert warm_start.enabled({warm_start.SWITCH_ENV: "1"})
    assert not any(warm_start.enabled({warm_start.SWITCH_ENV: v}) for v in ("0", "false", "Off", "no"))


def test_job_environment_is_a_local_jobs() -> None:
    """What rules/common.smk starts the server in: this checkout's src/ first on PYTHONPATH, as the jobs' shell
    prefix puts it, and the thread variables Snakemake sets for a job of `threads` threads."""
    env = warm_start.job_environment({"PYTHONPATH": "/elsewhere", "HOME": "/h"}, "/repo/src", threads=3)
    assert env["PYTHONPATH"] == f"/repo/src{os.pathsep}/elsewhere" and env["HOME"] == "/h"
    assert {env[name] for name in warm_start.THREAD_VARIABLES} == {"3"}
    assert warm_start.job_environment({}, "/repo/src", threads=1)["PYTHONPATH"] == "/repo/src"


def test_wait_ready_says_when_the_server_cannot_start(entry_dir, tmp_path) -> None:
    server = warm_start.Server(tmp_path / "warm.log", preload=["no_such_module_anywhere"])
    server.start(_env(entry_dir))
    try:
        with pytest.raises(RuntimeError, match="the warm-start server exited"):
            server.wait_ready(timeout_s=60)
    finally:
        server.stop()
    assert "No module named 'no_such_module_anywhere'" in (tmp_path / "warm.log").read_text()


def test_a_server_ends_when_the_process_that_started_it_dies(entry_dir, tmp_path) -> None:
    """The Snakefile stops its server on success and on error; if Snakemake itself is killed, the kernel does."""
    socket_path = tmp_path / "s"
    starter = (
        "import subprocess, sys; "
        f"p = subprocess.Popen([sys.executable, '-m', 'quagmire.warm_start', {str(socket_path)!r}, "
        "'--preload', 'json']); print(p.pid, flush=True); sys.stdin.readline()"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", starter], cwd=REPO, env=_env(entry_dir), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    server_pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 60
    while not socket_path.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait(timeout=30)
    while _pid_alive(server_pid):
        assert time.monotonic() < deadline + 30, "the server outlived the process that started it"
        time.sleep(0.05)
    assert not socket_path.exists()  # it stopped cleanly (SIGTERM), removing its socket


def test_server_start_and_stop(entry_dir, tmp_path) -> None:
    """`Server` as the Snakefile uses it: a socket path to export, a log, and nothing left behind."""
    server = warm_start.Server(tmp_path / "logs" / "warm.log", preload=["json"], entry="warm_entry_for_tests:main")
    path = Path(server.start(_env(entry_dir)))
    try:
        server.wait_ready()
        job = _job(path, entry_dir, "echo", "served")
        assert (job.returncode, job.stdout) == (0, "served\n"), job.stderr
    finally:
        server.stop()
    assert server.process.returncode == 0 and not path.parent.exists()
    log = (tmp_path / "logs" / "warm.log").read_text()
    assert "imported 1 modules" in log and "stopping after 1 jobs (0 still running)" in log


def test_the_smoke_study_ran_warm_and_every_cold_job_says_why(smoke_study) -> None:
    """The real preload and the real CLI, in a real local Snakemake run (the session's smoke study).

    Jobs that started while the server was still importing ran cold and say so; none was refused. That the
    warm jobs computed what cold ones do is pinned by the Slurm test (cluster jobs always run cold): its tables
    equal this run's byte for byte.
    """
    import re

    workdir, _ = smoke_study
    log = (workdir / "logs" / "warm_start.log").read_text()  # other tests may have run more DAGs here since
    started = re.findall(r"imported \d+ modules in [\d.]+ s; listening on ", log)
    stopped = [int(n) for n in re.findall(r"stopping after (\d+) jobs \(0 still running\)", log)]
    assert started and len(stopped) == len(started) and stopped[0] > 0
    job_logs = [p for p in (workdir / "logs").rglob("*.log") if p.name != "warm_start.log"]
    cold = [p for p in job_logs if "warm start not used" in p.read_text()]
    assert len(cold) < len(job_logs)
    assert all("warm start not used (no server at" in p.read_text() for p in cold)
