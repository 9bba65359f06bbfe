"""The Harbor / Terminal-Bench 2.0 task format: ``--benchflow harbor:PATH`` runs a directory of task
directories (task.toml, instruction.md, environment/, tests/test.sh, solution/solve.sh) as a benchmark.

docs/harbor.md describes what is supported; :func:`check_harbor` is the author's checklist.
"""

from __future__ import annotations

from .bench import HARBOR_SCHEME, HarborBench, HarborFieldWarning, NopAgent, OracleAgent, harbor_bench_class
from .check import Finding, check_harbor
from .config import FIELDS, SCHEMA_VERSIONS, HarborTask, HarborTaskError, find_tasks, load_task
from .images import BuildError, image_tag
from .trial import HARNESS_AGENTS, HarborVerifierError, Trial, TrialOutcome, run_trial

__all__ = [
    "FIELDS",
    "HARBOR_SCHEME",
    "HARNESS_AGENTS",
    "SCHEMA_VERSIONS",
    "BuildError",
    "Finding",
    "HarborBench",
    "HarborFieldWarning",
    "HarborTask",
    "HarborTaskError",
    "HarborVerifierError",
    "NopAgent",
    "OracleAgent",
    "Trial",
    "TrialOutcome",
    "check_harbor",
    "find_tasks",
    "harbor_bench_class",
    "image_tag",
    "load_task",
    "run_trial",
]
