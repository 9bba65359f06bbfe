"""Writing a benchmark: ``pytest-benchflow new``, ``build`` and ``check``, run as a user runs them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from images import base_image, build, engine

from pytest_benchflow.authoring.check import BENCH_ITEMS

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "pytest_benchflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=900,
    )


def statuses(output: str) -> dict[str, str]:
    """Each checklist item's status, as printed."""
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition("  ")
        name = rest.strip().partition(":")[0]
        if name in BENCH_ITEMS:
            found[name] = status.strip()
    return found


def not_held(output: str) -> set[str]:
    return {name for name, status in statuses(output).items() if status == "not held"}


# --- new -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my-bench", "'my-bench' is not a Python identifier: use letters, digits and _ (e.g. my_bench)"),
        ("2fast", "'2fast' is not a Python identifier: use letters, digits and _ (e.g. my_bench)"),
        ("class", "'class' is a Python keyword: choose another name (e.g. class_bench)"),
        ("json", "'json' would shadow the module of that name: choose another (e.g. json_bench)"),
    ],
)
def test_new_refuses_a_name_that_is_not_a_package_name(tmp_path: Path, name: str, message: str) -> None:
    done = cli("new", name, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"pytest-benchflow new: {message}\n"
    assert not list(tmp_path.iterdir())


def test_new_refuses_a_non_empty_directory_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    done = cli("new", "taken", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "pytest-benchflow new: taken is not empty: refusing to write over it (choose another name or directory)"
    ]
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    (tmp_path / "afile").write_text("x")
    assert "exists and is not a directory" in cli("new", "afile", cwd=tmp_path).stderr


def test_new_writes_a_package_whose_checklist_holds_in_process(tmp_path: Path) -> None:
    assert cli("new", "plain_bench", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "plain_bench" / "Dockerfile").exists()
    done = cli("check", "plain_bench", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(done.stdout) == {
        **dict.fromkeys(BENCH_ITEMS[:8], "held"),
        "image_builds": "skipped",
        "in_container": "skipped",
    }


# --- check on planted faults ------------------------------------------------------------------


def _plant(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _planted(tmp_path: Path, name: str) -> Path:
    assert cli("new", name, cwd=tmp_path).returncode == 0
    return tmp_path / name / name


def test_check_reports_an_undocumented_input_key_and_only_that(tmp_path: Path) -> None:
    package = _planted(tmp_path, "key_bench")
    _plant(
        package / "evaluate.py",
        'return {"question": raw_step_inputs["question"]}',
        'return {"question": raw_step_inputs["question"], "hint": "arithmetic"}',
    )
    done = cli("check", "key_bench", cwd=tmp_path)
    assert done.returncode == 1 and not_held(done.stdout) == {"input_keys"}
    assert (
        "not held  input_keys: the agent receives hint, not documented in the README's Input keys section — fix: "
        "name each key prepare_input returns there in backticks, with its meaning"
    ) in done.stdout


def test_check_reports_an_undocumented_argument_and_only_that(tmp_path: Path) -> None:
    package = _planted(tmp_path, "arg_bench")
    _plant(
        package / "evaluate.py",
        'DEFAULTS: dict[str, Any] = {"DATA_FILE": ""}',
        'DEFAULTS: dict[str, Any] = {"DATA_FILE": "", "SEED": 7}',
    )
    done = cli("check", "arg_bench", cwd=tmp_path)
    assert done.returncode == 1 and not_held(done.stdout) == {"arguments"}
    assert "not held  arguments: SEED not documented in the README's Arguments section" in done.stdout


def test_check_reports_a_label_leak_and_only_that(tmp_path: Path) -> None:
    package = _planted(tmp_path, "leak_bench")
    # The gold answer, nested in a documented key: the agent still solves the task, and sees the label.
    _plant(
        package / "evaluate.py",
        'return {"question": raw_step_inputs["question"]}',
        'return {"question": {"text": raw_step_inputs["question"], "answer": raw_step_inputs["answer"]}}',
    )
    _plant(
        package / "evaluate.py",
        '{"question": task["question"]}, sample_id',
        '{"question": task["question"], "answer": task["answer"]}, sample_id',
    )
    done = cli("check", "leak_bench", cwd=tmp_path)
    assert done.returncode == 1 and not_held(done.stdout) == {"no_label_leak"}
    assert "not held  no_label_leak: the agent receives the gold answer at question.answer" in done.stdout


def test_check_on_a_bench_without_readme_or_whose_get_args_raises(tmp_path: Path) -> None:
    package = _planted(tmp_path, "bare_bench")
    (package / "README.md").unlink()
    done = cli("check", "bare_bench", cwd=tmp_path)
    assert done.returncode == 1 and not_held(done.stdout) == {"readme"}
    assert "not held  readme: no README.md (the model card) beside the bench's module — fix: write one" in done.stdout
    _plant(
        package / "bench.py",
        "        return BenchArgs({",
        "        raise RuntimeError('no arguments today')\n        return BenchArgs({",
    )
    done = cli("check", "bare_bench", cwd=tmp_path)
    assert (
        "not held  arguments: get_args(None) raised RuntimeError: no arguments today — fix: make get_args work "
        "without a task"
    ) in done.stdout


def test_check_of_something_that_is_not_a_bench_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = cli("check", "empty", cwd=tmp_path)
    assert done.returncode == 1
    assert "not held  loads: empty has no pyproject.toml: give a bench project directory or a bench name" in done.stdout
    assert cli("check", "no_such_bench", cwd=tmp_path).stdout.startswith(
        "not held  loads: unknown benchmark 'no_such_bench'"
    )


# --- build: bad inputs --------------------------------------------------------------------------


def test_build_without_docker_says_so(tmp_path: Path) -> None:
    cli("new", "box_bench", "--container", cwd=tmp_path)
    done = cli("build", "box_bench", cwd=tmp_path, DOCKER_HOST=f"unix://{tmp_path}/no.sock")
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"pytest-benchflow build: no Docker engine answers at unix://{tmp_path}/no.sock: start one"
    )
    assert len(done.stderr.splitlines()) == 1


def test_build_of_a_bench_without_a_dockerfile_says_so(tmp_path: Path) -> None:
    cli("new", "flat_bench", cwd=tmp_path)
    done = cli("build", "flat_bench", cwd=tmp_path)
    assert done.returncode == 2 and "has no Dockerfile: only container benches have an image" in done.stderr


@pytest.mark.docker
def test_build_on_a_base_image_whose_python_is_too_old(tmp_path: Path) -> None:
    client = engine()
    old = build(
        client,
        "benchflow-test/old-python:1",
        {
            "Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
            "RUN printf '#!/bin/sh\\necho 3.8 x86_64 2 36\\n' > /usr/local/bin/python3 && chmod 755 /usr/local/bin/python3\n"
        },
    )
    cli("new", "old_bench", "--container", cwd=tmp_path)
    done = cli("build", "old_bench", "--base-image", old, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"pytest-benchflow build: base image {old} has Python 3.8; pytest-benchflow needs 3.10 or later: "
        "give --base-image with a newer python3"
    )


@pytest.mark.docker
def test_build_of_a_bench_that_does_not_install(tmp_path: Path) -> None:
    client = engine()
    cli("new", "broken_bench", "--container", cwd=tmp_path)
    _plant(tmp_path / "broken_bench" / "pyproject.toml", 'packages = ["broken_bench"]', 'packages = ["not_there"]')
    done = cli("build", "broken_bench", "--base-image", base_image(client), cwd=tmp_path)
    assert done.returncode == 2
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"pytest-benchflow build: the bench at {tmp_path / 'broken_bench'} does not install: ")


@pytest.mark.docker
def test_check_reports_a_broken_image_and_only_that(tmp_path: Path) -> None:
    client = engine()
    cli("new", "cracked_bench", "--container", cwd=tmp_path)
    _plant(
        tmp_path / "cracked_bench" / "Dockerfile", "COPY wheels /tmp/wheels\n", "COPY wheels /tmp/wheels\nRUN exit 3\n"
    )
    done = cli("check", "cracked_bench", "--base-image", base_image(client), cwd=tmp_path)
    assert done.returncode == 1 and not_held(done.stdout) == {"image_builds"}, done.stdout
    assert (
        "not held  image_builds: the image cracked_bench:0.1.0 did not build: The command '/bin/sh -c exit 3'"
        in done.stdout
    )
    assert statuses(done.stdout)["in_container"] == "skipped"


# --- from a fresh virtual environment: new → build → check → pytest, in-process and in Docker ----------------


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with pytest-benchflow installed from its wheel, as a user installs it (once per session)."""
    root = tmp_path_factory.mktemp("fresh")
    # One build at a time: setuptools builds in the checkout's build/ (tests/images.py takes the same lock).
    with open(Path(tempfile.gettempdir()) / "benchflow-wheel-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "dist", ROOT], check=True)
    subprocess.run([sys.executable, "-m", "venv", root / "venv"], check=True)
    (wheel,) = (root / "dist").glob("pytest_benchflow-*.whl")
    subprocess.run([root / "venv/bin/python", "-m", "pip", "install", "-q", wheel], check=True)
    return root / "venv" / "bin"


@pytest.mark.docker
def test_new_build_check_and_run_from_a_fresh_virtual_environment(fresh_venv: Path, tmp_path: Path) -> None:
    client = engine()
    python, env = str(fresh_venv / "python"), {"BENCHFLOW_BASE_IMAGE": base_image(client)}
    work = tmp_path / "work"
    work.mkdir()
    assert (fresh_venv / "pytest-benchflow").exists()
    done = subprocess.run(
        [fresh_venv / "pytest-benchflow", "new", "demo_bench", "--container"], cwd=work, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    subprocess.run([python, "-m", "pip", "install", "-q", "./demo_bench"], cwd=work, check=True)
    try:
        built = cli("build", "demo_bench", cwd=work, python=python, **env)
        assert built.returncode == 0, built.stderr
        assert built.stdout.startswith("built demo_bench:0.1.0 on ")
        checked = cli("check", "demo_bench", cwd=work, python=python, **env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert statuses(checked.stdout) == dict.fromkeys(BENCH_ITEMS, "held")
        for runner in ("local", "docker"):
            run = subprocess.run(
                [python, "-m", "pytest", "--benchflow=demo_bench", "--agent=demo_bench.agent:ReferenceAgent",
                 f"--benchflow-runner={runner}", "-p", "no:cacheprovider"],
                cwd=work, capture_output=True, text=True, env={**os.environ, **env},
            )  # fmt: skip
            assert run.returncode == 0 and "5 passed" in run.stdout, run.stdout[-3000:]
        # The scaffold's own test passes as written.
        own = subprocess.run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "demo_bench/tests"],
            cwd=work,
            capture_output=True,
            text=True,
        )
        assert own.returncode == 0, own.stdout[-3000:]
    finally:
        with contextlib.suppress(Exception):
            client.images.remove("demo_bench:0.1.0")


@pytest.mark.docker
def test_build_images_script_builds_mmlu_pro_with_pytest_benchflow_build() -> None:
    client = engine()
    base, tag = base_image(client), "benchflow-test/mmlu-pro-script:1"
    env = {**os.environ, "BENCHFLOW_BASE_IMAGE": base, "BENCHFLOW_MMLU_IMAGE": tag, "PYTHON": sys.executable}
    try:
        done = subprocess.run(
            ["bash", ROOT / "scripts" / "build-images.sh"], env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines()[-1] == base
        assert "build: downloading dependencies as wheels for Python" in done.stderr
        probe = "import example_bench.mmlu_pro.bench, pytest_benchflow; print('ok')"
        out = client.containers.run(
            tag, entrypoint=["/opt/venv/bin/python", "-c", probe], remove=True, network_mode="none"
        )
        assert out.strip() == b"ok"
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(tag)


def test_build_of_a_project_with_several_benches_asks_which_and_refuses_an_unknown_one() -> None:
    def build_here(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pytest_benchflow", "build", str(ROOT), *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    several = build_here()
    assert several.returncode == 2
    assert "registers 2 benchmarks (humaneval, mmlu_pro)" in several.stderr
    assert "choose one with --bench NAME" in several.stderr
    unknown = build_here("--bench", "nosuch")
    assert unknown.returncode == 2
    assert "--bench 'nosuch': " in unknown.stderr and "registers no such benchmark" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
