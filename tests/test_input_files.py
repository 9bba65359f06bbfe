"""Data into containers: ``BaseBench.get_input_files`` copied in through the Engine API before the task starts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from container_toy import junit

from pytest_benchflow import BaseBench, BenchArgs, ResolvedArgs, TaskError, TaskSpec
from pytest_benchflow.runners.input_files import INPUTS_DIR, task_inputs

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "tests" / "data" / "mmlu_pro_gpt4o" / "history_result.json"


def _questions(path: Path, count: int = 12) -> Path:
    path.write_text(json.dumps(json.loads(HISTORY.read_text())[:count]))
    return path


@pytest.mark.docker
def test_mmlu_pro_in_docker_reads_a_host_data_file(pytester: pytest.Pytester, mmlu_image: str) -> None:
    _questions(pytester.path / "questions.json")
    common = [
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent",
        "--benchflow-arg=DATA_FILE=questions.json",  # relative to here, on the host
        "--benchflow-arg=NUM_SHOTS=0",
        "-p",
        "no:randomly",
    ]
    local = pytester.runpytest_subprocess(*common, "--benchflow-runner=local", "--junitxml=local.xml")
    in_docker = pytester.runpytest_subprocess(*common, "--benchflow-runner=docker", "--junitxml=docker.xml")
    assert "data file not found" not in in_docker.stdout.str()
    assert in_docker.parseoutcomes().get("errors") is None, in_docker.stdout.str()
    cases = junit(pytester.path / "docker.xml")
    assert list(cases) == ["history"] and cases["history"][1]["metric.total"] == "12"
    assert local.parseoutcomes() == in_docker.parseoutcomes()
    assert junit(pytester.path / "local.xml") == cases


class _Files(BaseBench):
    def __init__(self, files: Any) -> None:
        super().__init__()
        self.files = files

    def get_args(self, task_id: str | None) -> BenchArgs:
        return BenchArgs(None)

    def get_all_tasks(self, split: str) -> dict[str, Any]:
        return {"task_ids": ["t"], "error_message": None}

    def get_result(self, task_id: str) -> Any:
        return {"is_resolved": True}

    def get_input_files(self, task_id: str) -> Any:
        if isinstance(self.files, Exception):
            raise self.files
        return self.files


def _spec(tmp_path: Path, secret: str | None = None) -> TaskSpec:
    args = ResolvedArgs({"API_KEY": secret} if secret else {}, ["API_KEY"])
    return TaskSpec(
        "files", "t", "http://127.0.0.1:1", args, tmp_path / "r", tmp_path / "l",
        secret_values=[secret] if secret else [], transcripts=False,
    )  # fmt: skip


def test_files_are_packed_under_their_argument_and_the_environment_names_the_copies(tmp_path: Path) -> None:
    one, two = tmp_path / "a.json", tmp_path / "sub" / "b.json"
    two.parent.mkdir()
    one.write_text("one")
    two.write_text("two")
    inputs = task_inputs(_Files({"DATA_FILE": str(one), "SHOTS": [one, two]}), _spec(tmp_path))
    assert inputs.environment == {
        "DATA_FILE": f"{INPUTS_DIR}/DATA_FILE/a.json",
        "SHOTS": f"{INPUTS_DIR}/SHOTS/0/a.json:{INPUTS_DIR}/SHOTS/1/b.json",
    }
    with inputs.archive() as archive, tarfile.open(fileobj=archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert files == {
        "benchflow/inputs/DATA_FILE/a.json": b"one",
        "benchflow/inputs/SHOTS/0/a.json": b"one",
        "benchflow/inputs/SHOTS/1/b.json": b"two",
    }
    assert modes["benchflow/inputs"] == 0o755 and modes["benchflow/inputs/SHOTS/1/b.json"] == 0o644


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"DATA_FILE": "missing.json"}, "input file DATA_FILE=missing.json: no such file on this machine"),
        ({"DATA_FILE": "."}, "input file DATA_FILE=.: not a regular file"),
        ({"DATA_FILE": []}, "_Files.get_input_files: DATA_FILE must be a path or a non-empty list of paths"),
        ({"not a name": "x"}, "_Files.get_input_files: 'not a name' is not an argument name"),
        (["x"], "_Files.get_input_files returned list: expected {argument name: path(s)}"),
        (OSError("disk gone"), "_Files.get_input_files('t') raised OSError: disk gone"),
    ],
)
def test_bad_declarations_are_one_line_task_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: Any, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskError) as error:
        task_inputs(_Files(files), _spec(tmp_path))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_file_holding_a_secret_is_refused_even_across_read_pieces(tmp_path: Path) -> None:
    secret = "sk-secret-value-123"
    data = tmp_path / "data.json"
    # The secret straddles the 1 MiB boundary the file is read in.
    data.write_bytes(b"x" * ((1 << 20) - 5) + secret.encode() + b"y" * 10)
    with pytest.raises(TaskError, match=r"holds the value of a secret argument: not copied into the container"):
        task_inputs(_Files({"DATA_FILE": data}), _spec(tmp_path, secret))
    assert task_inputs(_Files({"DATA_FILE": data}), _spec(tmp_path, "another-secret")).files


def test_inputs_over_the_cap_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data.json"
    data.write_bytes(b"x" * 100)
    monkeypatch.setenv("BENCHFLOW_MAX_INPUT_BYTES", "150")
    with pytest.raises(TaskError, match=r"input files add up to more than 150 bytes at B=.*BENCHFLOW_MAX_INPUT_BYTES"):
        task_inputs(_Files({"A": data, "B": data}), _spec(tmp_path))
    monkeypatch.setenv("BENCHFLOW_MAX_INPUT_BYTES", "lots")
    with pytest.raises(TaskError, match=r"BENCHFLOW_MAX_INPUT_BYTES='lots' must be an integer"):
        task_inputs(_Files({"A": data}), _spec(tmp_path))
