"""The container toy benchmark of the Docker tests: its image, entrypoint, bench and agent; reading JUnit files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

TOY_IMAGE = "benchflow-test/toy:1"
TOY_DOCKERFILE = """
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels requests pydantic PyYAML \\
 && /opt/venv/bin/pip install -q --no-index --no-deps /tmp/wheels/pytest_benchflow-*.whl && rm -rf /tmp/wheels
COPY entry.py /app/entry.py
RUN mkdir -p /app/results /app/logs && chmod 1777 /app/results /app/logs
ENTRYPOINT ["/opt/venv/bin/python", "-u", "/app/entry.py"]
"""
TOY_ENTRY = """
import json, os, sys, time
from pytest_benchflow import BenchClient, report_progress

task = os.environ["TEST_START_ID"]
results = os.environ["BENCHFLOW_RESULTS_DIR"]
os.makedirs(results, exist_ok=True)
print("env keys:", ",".join(sorted(os.environ)))
if task == "exit1":
    print("fatal: something broke", file=sys.stderr)
    sys.exit(1)
if task == "sleep":
    time.sleep(120)
if task.startswith("nap"):
    time.sleep(float(os.environ.get("NAP", "2")))
if task == "flood":
    # FLOOD_BYTES of output in 100-byte lines between a first and a last line.
    sys.stdout.write("first line of the flood\\n")
    block = ("flood " + "x" * 93 + "\\n") * 10000
    for _ in range(int(os.environ["FLOOD_BYTES"]) // len(block)):
        sys.stdout.write(block)
    sys.stdout.write("last line of the flood\\n")
    sys.stdout.flush()
if task == "longline":
    # FLOOD_BYTES without a newline, the secret straddling the 64 KiB pieces a long line is read in.
    token = os.environ.get("TOY_TOKEN") or "none"
    filler = "y" * (64 * 1024 - len(token) // 2)
    sys.stdout.write("start:" + filler[6:] + token)
    block = "z" * (1024 * 1024)
    for _ in range(int(os.environ["FLOOD_BYTES"]) // len(block)):
        sys.stdout.write(block)
    sys.stdout.write(":end\\n")
    sys.stdout.flush()
if task == "noresults":
    sys.exit(0)
if task == "invalid":
    open(os.path.join(results, "result.json"), "w").write("{not json")
    sys.exit(0)
if task == "symlink":
    os.symlink("/etc", os.path.join(results, "etc"))
if task == "linkescape":
    # Lexically inside, physically the parent of the results directory.
    os.symlink(".", os.path.join(results, "here"))
    os.symlink("here/..", os.path.join(results, "up"))
if task == "bigresults":
    open(os.path.join(results, "big.bin"), "wb").write(os.urandom(3 * 1024 * 1024))
if task == "manyfiles":
    for i in range(10000):
        open(os.path.join(results, f"f{i}.txt"), "w").write(str(i))

class Client(BenchClient):
    def prepare_input(self, raw):
        return {"question": raw}
    def parse_response(self, raw):
        return {"answer": raw}

answer = Client(os.environ["INTELLIGENCE_URL"], retries=0, connect_timeout=3).get_response(task)["answer"]
report_progress(os.environ, 1, 1)
print("secret in container:", os.environ.get("TOY_TOKEN"))
json.dump({"answer": answer, "token_seen": bool(os.environ.get("TOY_TOKEN")), "uid": os.getuid()}, open(os.path.join(results, "result.json"), "w"))
os.makedirs("/app/logs", exist_ok=True)
open("/app/logs/trace.txt", "w").write("trace of " + task)
"""
TOY_BENCH = """
import json
from pathlib import Path
from pytest_benchflow import AgentAnswer, BaseAgent, BaseBench, BenchArgs

class DockerToy(BaseBench):
    def get_args(self, task_id):
        return BenchArgs({"optional": {"TOY_TOKEN": None, "NAP": "2", "FLOOD_BYTES": "0"}})
    def get_image_name(self):
        return "IMAGE"
    def get_results_dir_in_container(self):
        return "/app/results"
    def get_log_files_dir_in_container(self):
        return "/app/logs"
    def get_all_tasks(self, split):
        import os
        return {"task_ids": json.loads(os.environ["TOY_TASKS"]), "error_message": None}
    def get_result(self, task_id):
        data = json.loads(Path(self.results_dir, "result.json").read_text())
        trace = Path(self.log_files_dir, "trace.txt").read_text()
        return {"is_resolved": data["answer"] == task_id.upper(), "metrics": {"token_seen": data["token_seen"], "uid": data.get("uid", -1)}, "log": trace}

class Upper(BaseAgent):
    def call_api(self, inputs):
        return AgentAnswer(inputs["question"].upper(), {"input_tokens": 7, "output_tokens": 2})
""".replace("IMAGE", TOY_IMAGE)


ARGS = [
    "--benchflow=docker_toy.py:DockerToy",
    "--agent=docker_toy:Upper",
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
]


def junit(path: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {
            p.get("name", ""): p.get("value", "")
            for p in case.iter("property")
            if p.get("name") not in ("duration", "engine")
        }
        cases[case.get("name", "")] = ([c.tag for c in case if c.tag in ("failure", "error")], props)
    return cases
