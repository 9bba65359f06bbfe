"""pytest-benchflow's benchmarks: `python3 dev.py bench [section ...]` prints each figure as a ratio.

Sections: client, server, concurrency, scale, docker, adapter, transcripts, engines, many (default: all).
MANY_QUESTIONS, MANY_TASKS and MANY_SLOTS scale `many` down (default 2000, 128, 32); MANY_LATENCY sets its
agent's latency in seconds (default 0.1); MANY_TASKS=0 leaves the containers out.
BENCH_ROUNDS (default 5) sets the rounds; BENCH_SCALE_SIZES (e.g. 12032) the task counts of `scale`;
BENCH_OUTPUT the results directory of `scale` (default: a temporary directory on disk).
Every comparison runs its contenders side by side, alternating, in the same run; figures
are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
from legacy import legacy_python  # noqa: E402 - the same 0.1.13 environment the interop tests use

PY = sys.executable
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))

LEGACY_AGENT = """
import sys, time
from benchflow import BaseAgent
class Agent(BaseAgent):
    def call_api(self, task_step_inputs):
        if len(sys.argv) > 2:
            time.sleep(float(sys.argv[2]))
        return "The answer is (A)."
Agent().run_with_endpoint("127.0.0.1", int(sys.argv[1]))
"""


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<58} {value:>14}  {note}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(argv: list[str], port: int) -> Iterator[str]:
    """Run an agent server process until it answers, yield its URL, stop it."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url + "/", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"agent {argv} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ours(kind: str = "instant", latency: float = 0.0) -> tuple[list[str], int]:
    port = free_port()
    return [PY, str(HERE / "agents.py"), kind, str(port), str(latency)], port


def legacy(latency: float | None = None) -> tuple[list[str], int]:
    port = free_port()
    script = Path(tempfile.gettempdir()) / "benchflow_legacy_agent.py"
    script.write_text(LEGACY_AGENT)
    return [str(legacy_python()), str(script), str(port), *([str(latency)] if latency is not None else [])], port


def median_rate(runs: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in runs.items()}


# 1 -------------------------------------------------------------------------------------------
def bench_client() -> None:
    print("\n1. client cost per call (sequential calls to an instant local agent, calls/s)")
    n = 2000
    pythons = {
        "plain requests.Session": PY,
        "pytest-benchflow BenchClient": PY,
        "benchflow 0.1.13 BenchClient": str(legacy_python()),
    }
    modes = {
        "plain requests.Session": "plain",
        "pytest-benchflow BenchClient": "ours",
        "benchflow 0.1.13 BenchClient": "legacy",
    }
    rates: dict[str, list[float]] = {k: [] for k in modes}
    argv, port = ours()
    with serve(argv, port) as url:
        for _ in range(ROUNDS):
            for name in random.sample(list(modes), len(modes)):
                out = subprocess.run(
                    [pythons[name], str(HERE / "client_loop.py"), modes[name], url, str(n)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rates[name].append(n / float(out.stdout.strip().splitlines()[-1]))
    med = median_rate(rates)
    for name, rate in med.items():
        row(name, f"{rate:,.0f}/s")
    row(
        "ours / plain loop (goal >= 0.95)",
        f"{med['pytest-benchflow BenchClient'] / med['plain requests.Session']:.2f}x",
    )
    row(
        "ours / 0.1.13 client (goal >= 1.25)",
        f"{med['pytest-benchflow BenchClient'] / med['benchflow 0.1.13 BenchClient']:.2f}x",
    )


# 2 -------------------------------------------------------------------------------------------
WRK_SCRIPT = (
    'wrk.method = "POST"\n'
    'wrk.body = \'{"prompt": "p", "input_text": "q"}\'\n'
    'wrk.headers["Content-Type"] = "application/json"\n'
)


def wrk(url: str, connections: int, seconds: int = 4) -> float:
    script = Path(tempfile.gettempdir()) / "benchflow_wrk.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url + "/response"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def bench_server() -> None:
    print("\n2. agent server throughput (wrk on loopback, requests/s)")
    if not shutil.which("wrk"):
        row("skipped: wrk not installed (apt-get install wrk)", "")
        return
    cases = [
        ("trivial call_api, 1 connection", None, 1),
        ("trivial call_api, 32 connections", None, 32),
        ("call_api sleeping 20 ms, 32 connections", 0.02, 32),
    ]
    for label, latency, connections in cases:
        rates: dict[str, list[float]] = {"ours": [], "0.1.13 FastAPI": []}
        servers = {"ours": ours("slow" if latency else "instant", latency or 0.0), "0.1.13 FastAPI": legacy(latency)}
        for name, (argv, port) in servers.items():
            with serve(argv, port) as url:
                wrk(url, connections, 1)  # warm-up
                for _ in range(ROUNDS if latency is None else 2):
                    rates[name].append(wrk(url, connections, 3))
        med = median_rate(rates)
        row(
            label,
            f"{med['ours']:,.0f} vs {med['0.1.13 FastAPI']:,.0f}",
            f"ours/0.1.13 = {med['ours'] / med['0.1.13 FastAPI']:.2f}x",
        )
        if latency:
            row("  ours vs ideal concurrent throughput (32 / 20 ms = 1600/s)", f"{med['ours'] / 1600:.2f}")


# 3 -------------------------------------------------------------------------------------------
def synthetic_questions(n: int, categories: int = 14, seed: int = 0) -> list[dict[str, Any]]:
    """MMLU-Pro-schema questions; every answer is A, so an agent answering (A) resolves all."""
    rnd = random.Random(seed)
    names = [
        "biology",
        "business",
        "chemistry",
        "computer science",
        "economics",
        "engineering",
        "health",
        "history",
        "law",
        "math",
        "other",
        "philosophy",
        "physics",
        "psychology",
    ][:categories]
    return [
        {
            "question_id": i,
            "question": f"Synthetic question {i} " + "x" * rnd.randint(50, 400),
            "options": [f"option {j}" for j in range(10)],
            "answer": "A",
            "answer_index": 0,
            "cot_content": "",
            "category": names[i % categories],
            "src": "synthetic",
        }
        for i in range(n)
    ]


def bench_concurrency() -> None:
    print("\n3. concurrency against an agent with 100 ms latency (throughput / ideal concurrency/latency)")
    sys.path.insert(0, str(ROOT))
    from example_bench.mmlu_pro.evaluate import evaluate
    from pytest_benchflow import BenchClient, TaskEnvironment

    class Client(BenchClient):
        def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
            return raw_step_inputs

        def parse_response(self, raw_response: str) -> dict[str, Any]:
            return {"answer": raw_response}

    argv, port = ours("slow", 0.1)
    with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp:
        client = Client(url)
        for c in (1, 8, 32, 64, 128):
            calls = min(2000, 25 * c)
            started = time.perf_counter()
            client.get_responses([{"i": i} for i in range(calls)], max_concurrency=c)
            batch = calls / (time.perf_counter() - started) / (c / 0.1)
            data = Path(tmp) / f"q{c}.json"
            data.write_text(json.dumps(synthetic_questions(calls, categories=1)))
            env = TaskEnvironment(
                {
                    "INTELLIGENCE_URL": url,
                    "TEST_START_ID": "biology",
                    "BENCHFLOW_RESULTS_DIR": str(Path(tmp) / f"r{c}"),
                    "DATA_FILE": str(data),
                    "NUM_SHOTS": "0",
                    "MAX_CONCURRENCY": str(c),
                }
            )
            env.progress_callback = lambda done, total: None
            started = time.perf_counter()
            evaluate(env)
            e2e = calls / (time.perf_counter() - started) / (c / 0.1)
            row(
                f"max_concurrency {c:>3} ({calls} calls): client batch / MMLU-Pro task",
                f"{batch:.2f} / {e2e:.2f}",
                "goal >= 0.9 up to 64",
            )


# 4 + 6 ---------------------------------------------------------------------------------------
PLAIN_TEST = """
import json, os, pytest, requests
URL = os.environ["AGENT_URL"] + "/response"
SESSION = requests.Session()
QUESTIONS = json.load(open(os.environ["DATA_FILE"]))

@pytest.mark.parametrize("q", QUESTIONS, ids=[f"{q['category']}/{q['question_id']}" for q in QUESTIONS])
def test_question(q):
    question = {k: q[k] for k in ("question_id", "question", "options")}
    body = {"prompt": "", "input_text": q["question"], "question": question}
    answer = SESSION.post(URL, json=body).json()
    assert "answer is (A)" in answer
"""


def per_question_run(url: str, data: Path, output: Path, quiet: list[str]) -> list[str]:
    """The pytest command running ``data`` as per-question MMLU-Pro items against ``url``."""
    return [
        PY,
        "-m",
        "pytest",
        "--benchflow=mmlu_pro",
        f"--agent-url={url}",
        "--benchflow-arg=TASK_UNIT=question",
        f"--benchflow-arg=DATA_FILE={data}",
        "--benchflow-arg=NUM_SHOTS=0",
        f"--benchflow-output={output}",
        *quiet,
    ]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the process tree's largest process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"{argv} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024


def bench_scale(sizes: tuple[int, ...] = (100, 1000, 12032)) -> None:
    sizes = tuple(int(n) for n in os.environ.get("BENCH_SCALE_SIZES", "").split(",") if n) or sizes
    print(
        "\n4. pytest at benchmark scale: per-question MMLU-Pro items vs a plain parametrized test (zero-latency agent)"
    )
    argv, port = ours()
    with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "test_plain.py").write_text(PLAIN_TEST)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        env = {**os.environ, "AGENT_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}
        quiet = ["-q", "-p", "no:cacheprovider", "--tb=no", "-rN"]
        for n in sizes:
            data = tmp / f"data{n}.json"
            data.write_text(json.dumps(synthetic_questions(n)))
            env["DATA_FILE"] = str(data)
            # BENCH_OUTPUT=/dev/shm/x puts the results on tmpfs, separating the harness from the disk.
            output = Path(os.environ.get("BENCH_OUTPUT") or tmp / "out")
            bench = per_question_run(url, data, output, quiet)
            plain = [PY, "-m", "pytest", "test_plain.py", *quiet]
            variants = [("", []), (" --junitxml", ["--junitxml=j.xml"])] if n == sizes[-1] else [("", [])]
            if n == sizes[-1]:
                variants.append((" -n 2", ["-n", "2"]))
            for label, extra in variants:
                results: dict[str, list[tuple[float, float]]] = {"plain": [], "benchflow": []}
                for _ in range(3 if n == sizes[-1] else ROUNDS):
                    for name, command in random.sample([("plain", plain), ("benchflow", bench)], 2):
                        results[name].append(timed([*command, *extra], tmp, env))
                        # Each run starts from an empty output directory, as a user's would:
                        # 12,032 task directories per round would otherwise pile up and slow the disk.
                        shutil.rmtree(output, ignore_errors=True)
                p_wall = statistics.median(w for w, _ in results["plain"])
                b_wall = statistics.median(w for w, _ in results["benchflow"])
                p_mem = statistics.median(m for _, m in results["plain"])
                b_mem = statistics.median(m for _, m in results["benchflow"])
                row(
                    f"{n:>6} tasks{label}: wall {b_wall:.1f}s vs {p_wall:.1f}s",
                    f"{b_wall / p_wall:.2f}x",
                    "goal <= 1.3x",
                )
                row(f"{'':>6}       peak RSS {b_mem:.0f} vs {p_mem:.0f} MiB", f"{b_mem / p_mem:.2f}x", "goal <= 1.5x")
                if n == sizes[-1] and not label:
                    collect = statistics.median(timed([*bench, "--collect-only"], tmp, env)[0] for _ in range(3))
                    plain_collect = statistics.median(timed([*plain, "--collect-only"], tmp, env)[0] for _ in range(3))
                    row(
                        f"{'':>6}       collection (whole process) {collect:.2f}s vs {plain_collect:.2f}s",
                        f"{collect:.2f}s",
                        "goal <= 2 s",
                    )


# 5 -------------------------------------------------------------------------------------------
def bench_docker() -> None:
    print("\n5. container overhead per task: DockerRunner vs a bare `docker run --rm` of the same image and work")
    try:
        import docker

        docker.from_env().images.get("benchflow/mmlu-pro:0.2")
    except Exception as e:
        row(f"skipped: {type(e).__name__} (needs an engine and scripts/build-images.sh)", "")
        return
    sys.path.insert(0, str(ROOT))
    from example_bench.mmlu_pro import MMLUProBench
    from pytest_benchflow.runners import TaskSpec, prepare_task
    from pytest_benchflow.runners.docker import DockerRunner
    from pytest_benchflow.schemas import ResolvedArgs

    argv, port = ours()
    bench = MMLUProBench()
    runner = DockerRunner("bench-run")
    with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp:
        times: dict[str, list[float]] = {"runner": [], "bare": []}
        for i in range(max(ROUNDS, 8)):
            spec = TaskSpec(
                bench_name="mmlu_pro",
                task_id="law",
                agent_url=url,
                args=ResolvedArgs(),
                results_dir=Path(tmp) / str(i) / "results",
                log_dir=Path(tmp) / str(i) / "logs",
            )
            env = prepare_task(spec)
            bare_env = {
                **env,
                "BENCHFLOW_RESULTS_DIR": str(bench.get_results_dir_in_container()),
                "BENCHFLOW_LOG_DIR": str(bench.get_log_files_dir_in_container()),
            }
            bare = [
                "docker",
                "run",
                "--rm",
                "--network",
                "host",
                *[a for k, v in bare_env.items() for a in ("-e", f"{k}={v}")],
                "benchflow/mmlu-pro:0.2",
            ]
            for name in random.sample(["runner", "bare"], 2):
                started = time.perf_counter()
                if name == "runner":
                    runner.execute(bench, spec, env)
                else:
                    subprocess.run(bare, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - started)
        r, b = statistics.median(times["runner"]), statistics.median(times["bare"])
        row(
            f"per task: DockerRunner {r * 1000:.0f} ms vs docker run --rm {b * 1000:.0f} ms",
            f"{r / b:.2f}x",
            "goal <= 1.15x",
        )


def bench_adapter() -> None:
    print(
        "\n6. the OpenAI adapter hop: 2,000 questions, 64 in flight, a 100 ms model "
        "(wall, through OpenAIChatAgent / straight to a BenchFlow agent)"
    )
    agent_argv, agent_port = ours("slow", 0.1)
    model_port = free_port()
    model_argv = [PY, str(HERE / "agents.py"), "model", str(model_port), "0.1"]
    with serve(agent_argv, agent_port) as agent_url, serve(model_argv, model_port) as model_url:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "pytest.ini").write_text("[pytest]\n")
            data = tmp / "data.json"
            data.write_text(json.dumps(synthetic_questions(2000, categories=1)))
            common = [
                PY,
                "-m",
                "pytest",
                "--benchflow=mmlu_pro",
                f"--benchflow-arg=DATA_FILE={data}",
                "--benchflow-arg=NUM_SHOTS=0",
                "--benchflow-arg=MAX_CONCURRENCY=64",
                f"--benchflow-output={tmp / 'out'}",
                "-q",
                "-p",
                "no:cacheprovider",
            ]
            contenders = {
                "direct": [*common, f"--agent-url={agent_url}"],
                "adapter": [*common, "--agent=pytest_benchflow.agents:OpenAIChatAgent"],
            }
            env = {**os.environ, "OPENAI_BASE_URL": model_url + "/v1"}
            walls: dict[str, list[float]] = {"direct": [], "adapter": []}
            for _ in range(ROUNDS):
                for name in random.sample(list(contenders), 2):
                    walls[name].append(timed(contenders[name], tmp, env)[0])
    direct, adapter = (statistics.median(walls[k]) for k in ("direct", "adapter"))
    row(
        f"direct {direct:.1f}s, through the adapter {adapter:.1f}s (ideal 3.1s + start-up)",
        f"{adapter / direct:.2f}x",
        "goal <= 1.3x",
    )


# 7 -------------------------------------------------------------------------------------------
def bench_transcripts() -> None:
    print("\n7. transcripts on vs off (--benchflow-transcripts), the same work side by side")
    sys.path.insert(0, str(ROOT))
    from example_bench.mmlu_pro.evaluate import evaluate
    from pytest_benchflow import TaskEnvironment
    from pytest_benchflow.transcript import Transcript, no_transcript

    argv, port = ours("slow", 0.1)
    calls, c = 2000, 64
    with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "q.json"
        data.write_text(json.dumps(synthetic_questions(calls, categories=1)))
        seconds: dict[str, list[float]] = {"on": [], "off": []}
        for round_ in range(ROUNDS):
            for mode in random.sample(["on", "off"], 2):
                out = tmp / f"{mode}{round_}"
                env = TaskEnvironment(
                    {
                        "INTELLIGENCE_URL": url,
                        "TEST_START_ID": "biology",
                        "BENCHFLOW_RESULTS_DIR": str(out / "results"),
                        "DATA_FILE": str(data),
                        "NUM_SHOTS": "0",
                        "MAX_CONCURRENCY": str(c),
                    }
                )
                env.progress_callback = lambda done, total: None
                transcript = Transcript(out / "logs" / "transcript.jsonl")
                context = transcript.scope() if mode == "on" else no_transcript()
                started = time.perf_counter()
                context.run(evaluate, env)
                seconds[mode].append(time.perf_counter() - started)
                transcript.close()
        on, off = statistics.median(seconds["on"]), statistics.median(seconds["off"])
        row(
            f"MMLU-Pro task, {calls} questions, {c} in flight: {on:.2f}s on vs {off:.2f}s off",
            f"{on / off:.2f}x",
            f"{calls / on / (c / 0.1):.2f} of ideal with transcripts",
        )

    argv, port = ours()
    with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "test_plain.py").write_text(PLAIN_TEST)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        n = int(os.environ.get("BENCH_TRANSCRIPT_TASKS", "12032"))
        data = tmp / "data.json"
        data.write_text(json.dumps(synthetic_questions(n)))
        env = {**os.environ, "AGENT_URL": url, "PYTHONDONTWRITEBYTECODE": "1", "DATA_FILE": str(data)}
        output = Path(os.environ.get("BENCH_OUTPUT") or tmp / "out")
        quiet = ["-q", "-p", "no:cacheprovider", "--tb=no", "-rN"]
        bench = per_question_run(url, data, output, quiet)
        commands = {
            "plain": [PY, "-m", "pytest", "test_plain.py", *quiet],
            "on": [*bench, "--benchflow-transcripts=on"],
            "off": [*bench, "--benchflow-transcripts=off"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(3):
            for name in random.sample(list(commands), len(commands)):
                walls[name].append(timed(commands[name], tmp, env)[0])
                shutil.rmtree(output, ignore_errors=True)
        on, off, plain = (statistics.median(walls[k]) for k in ("on", "off", "plain"))
        row(f"{n:>6} per-question tasks: transcripts on {on:.1f}s vs off {off:.1f}s", f"{on / off:.2f}x", "")
        row(
            f"{'':>6} vs a plain parametrized test {plain:.1f}s: on / off",
            f"{on / plain:.2f}x / {off / plain:.2f}x",
            "goal <= 1.3x",
        )


# 8 -------------------------------------------------------------------------------------------
NAP_BENCH = """
from pytest_benchflow import BaseAgent, BaseBench, BenchArgs

class Nap(BaseBench):
    def get_args(self, task_id):
        return BenchArgs({"optional": {"NAP": "3"}})
    def get_image_name(self):
        return "benchflow-perf/nap:1"
    def get_results_dir_in_container(self):
        return "/r"
    def get_log_files_dir_in_container(self):
        return "/l"
    def get_all_tasks(self, split):
        import os
        return {"task_ids": [f"n{i}" for i in range(int(os.environ.get("NAP_TASKS", "24")))], "error_message": None}
    def get_result(self, task_id):
        return {"is_resolved": True, "metrics": {}}

class Idle(BaseAgent):
    def call_api(self, inputs):
        return ""
"""
NAP_SCRIPT = (
    "import json, os, time\n"
    "time.sleep(float(os.environ['NAP']))\n"
    "os.makedirs('/r', exist_ok=True)\n"
    "json.dump({'done': True}, open('/r/result.json', 'w'))\n"
)


def bench_engines() -> None:
    print(
        "\n8. two Docker engines vs one: container-bound tasks (each sleeps 3 s in its container), 2 slots per engine"
    )
    try:
        import docker

        client = docker.from_env()
        base = os.environ.get("BENCHFLOW_BASE_IMAGE") or "benchflow/base:bookworm"
        client.images.get(base)
    except Exception as e:
        row(f"skipped: {type(e).__name__} (needs an engine and scripts/build-images.sh)", "")
        return
    script = ROOT / "scripts" / "docker-engine.sh"
    second = subprocess.run(["bash", str(script), "start", "d2"], capture_output=True, text=True)
    if second.returncode:
        row(f"skipped: no second engine ({second.stderr.strip()[-200:]}; needs root)", "")
        return
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "nap.py").write_text(NAP_SCRIPT)
        (Path(ctx) / "Dockerfile").write_text(f'FROM {base}\nCOPY nap.py /nap.py\nENTRYPOINT ["python3", "/nap.py"]\n')
        client.images.build(path=ctx, tag="benchflow-perf/nap:1", rm=True)
    subprocess.run(["bash", str(script), "load", "d2", "benchflow-perf/nap:1"], check=True)
    main = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    tasks = int(os.environ.get("NAP_TASKS", "24"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "nap_bench.py").write_text(NAP_BENCH)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        command = [PY, "-m", "pytest", "--benchflow=nap_bench.py:Nap", "--agent=nap_bench:Idle", "-q"]
        command += ["--benchflow-runner=docker", "--benchflow-docker-slots=2", "-n", "4", "-p", "no:cacheprovider"]
        command += [f"--benchflow-output={tmp / 'out'}"]
        engines = {"one": [f"--benchflow-docker-host={main}"]}
        engines["two"] = [*engines["one"], f"--benchflow-docker-host={second.stdout.strip()}"]
        env = {**os.environ, "PYTHONPATH": str(tmp), "NAP_TASKS": str(tasks)}
        walls: dict[str, list[float]] = {"one": [], "two": []}
        for _ in range(3):
            for name in random.sample(list(walls), 2):
                walls[name].append(timed([*command, *engines[name]], tmp, env)[0])
        one, two = statistics.median(walls["one"]), statistics.median(walls["two"])
        rates = f"{tasks / one:.2f} vs {tasks / two:.2f} tasks/s"
        row(f"{tasks} tasks: one engine {one:.1f}s, two {two:.1f}s ({rates})", f"{one / two:.2f}x", "goal >= 1.7x")


# 9 -------------------------------------------------------------------------------------------
def tree_peak_rss(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak MiB of the RSS of the process and all its descendants summed), sampled every 0.1 s."""

    def tree_rss(root: int) -> int:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        total, stack = 0, [root]
        while stack:
            pid = stack.pop()
            total += rss.get(pid, 0)
            stack += [child for child, parent in parents.items() if parent == pid]
        return total

    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{argv} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return wall, peak / 2**20


def bench_many() -> None:
    """--benchflow-concurrency: per-question items many at once vs one grouped task; containers from one
    process vs one process per container."""
    questions = int(os.environ.get("MANY_QUESTIONS", "2000"))
    latency = float(os.environ.get("MANY_LATENCY", "0.1"))
    print(f"\n9. many tasks from one process: {questions} per-question items at --benchflow-concurrency 64 vs one")
    print(f"   category task at MAX_CONCURRENCY=64 (agent latency {latency * 1000:g} ms)")
    argv, port = ours("slow", latency)
    quiet = ["-q", "-p", "no:cacheprovider", "--tb=no", "-rN", "-p", "no:randomly"]
    # The run's files go where a user's run puts them, beside the project (here: perf/), not in /tmp: on
    # the CI VMs /tmp makes a file ~15x slower than another directory of the same disk (docs/performance.md).
    with serve(argv, port) as url, tempfile.TemporaryDirectory(dir=HERE, prefix=".many-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        data = tmp / "data.json"
        data.write_text(json.dumps(synthetic_questions(questions, categories=1)))
        output = tmp / "out"
        common = [*per_question_run(url, data, output, quiet), "--benchflow-arg=MAX_CONCURRENCY=64"]
        commands = {
            "items": [*common, "--benchflow-concurrency=64"],
            "processes": [*common, "--benchflow-concurrency=64", "--benchflow-task-processes=auto"],
            "task": [arg for arg in common if "TASK_UNIT" not in arg],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(min(ROUNDS, 3)):
            for name in random.sample(list(commands), len(commands)):
                walls[name].append(timed(commands[name], tmp, dict(os.environ))[0])
                shutil.rmtree(output, ignore_errors=True)
        items, processes, task = (statistics.median(walls[name]) for name in ("items", "processes", "task"))
        row(f"{questions} items at 64: {items:.1f}s, one task at 64: {task:.1f}s", f"{items / task:.2f}x", "")
        row(
            f"the items in task processes (auto: {len(os.sched_getaffinity(0))}): {processes:.1f}s",
            f"{processes / task:.2f}x",
            "goal <= 1.3x",
        )
    bench_many_containers()


def bench_many_containers() -> None:
    tasks, slots = int(os.environ.get("MANY_TASKS", "128")), int(os.environ.get("MANY_SLOTS", "32"))
    if tasks <= 0:
        return
    print(
        f"\n   {tasks} container tasks of 2 s, one engine with {slots} slots: "
        f"--benchflow-concurrency {slots} vs -n {slots}"
    )
    try:
        import docker

        client = docker.from_env()
        base = os.environ.get("BENCHFLOW_BASE_IMAGE") or "benchflow/base:bookworm"
        client.images.get(base)
    except Exception as e:
        row(f"skipped: {type(e).__name__} (needs an engine and scripts/build-images.sh)", "")
        return
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "nap.py").write_text(NAP_SCRIPT)
        (Path(ctx) / "Dockerfile").write_text(f'FROM {base}\nCOPY nap.py /nap.py\nENTRYPOINT ["python3", "/nap.py"]\n')
        client.images.build(path=ctx, tag="benchflow-perf/nap:1", rm=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "nap_bench.py").write_text(NAP_BENCH)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        command = [PY, "-m", "pytest", "--benchflow=nap_bench.py:Nap", "--agent=nap_bench:Idle", "-q"]
        command += ["--benchflow-runner=docker", f"--benchflow-docker-slots={slots}", "-p", "no:cacheprovider"]
        command += [f"--benchflow-output={tmp / 'out'}", "--benchflow-arg=NAP=2"]
        variants = {"threads": [f"--benchflow-concurrency={slots}"], "processes": ["-n", str(slots)]}
        env = {**os.environ, "PYTHONPATH": str(tmp), "NAP_TASKS": str(tasks)}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(min(ROUNDS, 3)):
            for name in random.sample(list(variants), 2):
                runs[name].append(tree_peak_rss([*command, *variants[name]], tmp, env))
        wall = {name: statistics.median(w for w, _ in found) for name, found in runs.items()}
        memory = {name: statistics.median(m for _, m in found) for name, found in runs.items()}
        row(
            f"wall: one process {wall['threads']:.1f}s, {slots} processes {wall['processes']:.1f}s",
            f"{wall['threads'] / wall['processes']:.2f}x",
            "goal <= 1.1x",
        )
        row(
            f"harness peak RSS (all processes): {memory['threads']:.0f} vs {memory['processes']:.0f} MiB",
            f"{memory['threads'] / memory['processes']:.2f}x",
            "goal <= 0.2x",
        )


SECTIONS: dict[str, Callable[[], None]] = {
    "client": bench_client,
    "server": bench_server,
    "concurrency": bench_concurrency,
    "scale": bench_scale,
    "docker": bench_docker,
    "adapter": bench_adapter,
    "transcripts": bench_transcripts,
    "engines": bench_engines,
    "many": bench_many,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], default=[])
    chosen = parser.parse_args().sections or list(SECTIONS)
    print(
        f"pytest-benchflow benchmarks on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"{platform.platform()}; medians of {ROUNDS} rounds"
    )
    for name in chosen:
        SECTIONS[name]()


if __name__ == "__main__":
    main()
