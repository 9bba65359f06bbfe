"""The data the SDK exchanges: benchmark arguments (``BenchArgs``) and task results (``BenchmarkResult``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from .errors import ArgumentError, ResultError
from .redaction import MASK, is_secret_name

__all__ = ["BenchArgs", "BenchmarkResult", "MetricValue", "ResolvedArgs", "SampleResult", "to_result"]

MetricValue = bool | int | float | str


class ResolvedArgs(dict[str, str]):
    """Argument values ready for a process environment; secret ones never show in ``repr``."""

    def __init__(self, values: Mapping[str, str] = {}, secret_names: Iterable[str] = ()) -> None:
        super().__init__(values)
        self.secret_names = frozenset(secret_names)

    def public(self) -> dict[str, str]:
        """The values with every secret replaced by ``***``: safe to log or write to a report."""
        return {k: MASK if k in self.secret_names else v for k, v in self.items()}

    def secret_values(self) -> list[str]:
        return [v for k, v in self.items() if k in self.secret_names and v]

    def __repr__(self) -> str:
        return f"ResolvedArgs({self.public()!r})"

    __str__ = __repr__


def to_env_value(value: Any) -> str:
    """How a Python value is written into a process environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class BenchArgs(BaseModel):
    """The arguments a benchmark task accepts.

    Built as in BenchFlow 0.1.x from a dict, a YAML file path or ``None``::

        BenchArgs({"required": ["API_KEY"], "optional": [{"LIMIT": 10}], "choices": {"MODE": ["a", "b"]}})

    ``secret`` lists further names to treat as secret, beyond those containing
    KEY, TOKEN, SECRET or PASSWORD.
    """

    required: list[str] = Field(default_factory=list)
    optional: dict[str, Any] = Field(default_factory=dict)
    choices: dict[str, list[Any]] = Field(default_factory=dict)
    secret: list[str] = Field(default_factory=list)

    def __init__(self, config_source: str | Mapping[str, Any] | None = None, **fields: Any) -> None:
        if isinstance(config_source, str):
            try:
                with open(config_source, encoding="utf-8") as f:
                    data = yaml.safe_load(f) or {}
            except OSError as e:
                raise ArgumentError(f"cannot read benchmark arguments file {config_source}: {e.strerror}") from e
        elif isinstance(config_source, Mapping):
            data = dict(config_source)
        elif config_source is None:
            data = {}
        else:
            raise ArgumentError(f"BenchArgs takes a dict, a YAML file path or None, not {type(config_source).__name__}")
        super().__init__(**{**data, **fields})

    @field_validator("optional", mode="before")
    @classmethod
    def _merge_optional(cls, v: Any) -> Any:
        # 0.1.x benches write optional arguments as a list of one-key dicts.
        if v is None:
            return {}
        if isinstance(v, list):
            merged: dict[str, Any] = {}
            for item in v:
                if not isinstance(item, dict):
                    raise ValueError("each item of 'optional' must be a {NAME: default} dict")
                merged.update(item)
            return merged
        return v

    @property
    def names(self) -> list[str]:
        """Every argument name the bench declares, required first."""
        seen = dict.fromkeys([*self.required, *self.optional, *self.choices, *self.secret])
        return list(seen)

    def is_secret(self, name: str) -> bool:
        return is_secret_name(name, self.secret)

    def resolve(self, values: Mapping[str, Any] | None = None, *, allow_unknown: bool = False) -> ResolvedArgs:
        """Check the user's ``values`` against the declaration and return the task's arguments.

        Missing required arguments are all reported in one error; a value outside its
        choices is an error; optional arguments take their defaults (a ``None`` default
        leaves the argument unset); values become strings for a process environment.
        Unknown names are rejected unless ``allow_unknown`` (then they are ignored).

        Raises:
            ArgumentError: with every problem found, secret values never shown.
        """
        values = {k: v for k, v in (values or {}).items() if v is not None}
        problems: list[str] = []
        missing = [name for name in self.required if values.get(name) in (None, "")]
        if missing:
            problems.append("missing required argument" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
        unknown = [name for name in values if name not in self.names]
        if unknown and not allow_unknown:
            known = ", ".join(self.names) or "none"
            problems.append(f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (known: {known})")
        merged: dict[str, Any] = {}
        for name in self.names:
            if name in values:
                merged[name] = values[name]
            elif self.optional.get(name) is not None:
                merged[name] = self.optional[name]
        for name, allowed in self.choices.items():
            if name in merged and to_env_value(merged[name]) not in [to_env_value(a) for a in allowed]:
                shown = MASK if self.is_secret(name) else repr(to_env_value(merged[name]))
                problems.append(f"{name}={shown} is not one of {', '.join(map(to_env_value, allowed))}")
        if problems:
            raise ArgumentError("; ".join(problems))
        return ResolvedArgs(
            {k: to_env_value(v) for k, v in merged.items()},
            secret_names=[k for k in merged if self.is_secret(k)],
        )

    def get_args(self, runtime_args: Mapping[str, Any] | None = None) -> ResolvedArgs:
        """BenchFlow 0.1.x's name for :meth:`resolve`; like 0.1.x it ignores unknown names."""
        return self.resolve(runtime_args, allow_unknown=True)


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """``value``, when JSON can hold it. Results are written to results.jsonl, samples.jsonl and the report as they
    are: an object, a set or a cycle is refused here, naming the field, not when the record is written (a pytest
    INTERNALERROR then)."""
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"holds what JSON cannot: {e}") from None
    except RecursionError:
        pass  # nested past the stack: the writers cut such a value (test_secrets, nested answers)
    return value


class SampleResult(BaseModel):
    """How one sample of a task went (a question, one exchange with the agent): its id and score.

    ``score`` is in 0..1; ``True``/``False`` count as 1/0. ``sample_id`` may be given as a
    number. ``metadata`` is free-form (shown in reports; keep it small).
    """

    sample_id: str
    score: float = Field(ge=0.0, le=1.0)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("sample_id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("metadata")
    @classmethod
    def _json_only(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _jsonable(v)

    @field_validator("score", mode="before")
    @classmethod
    def _bool_score(cls, v: Any) -> Any:
        return float(v) if isinstance(v, bool) else v


class BenchmarkResult(BaseModel):
    """The outcome of one task.

    ``task_id`` may be left out (the framework fills it in); a plain string ``log`` is
    kept as ``{"text": log}``. ``samples`` (optional, unknown to 0.1.x) says how each of the
    task's samples went; sample ids are unique within the task.
    """

    task_id: str = ""
    is_resolved: bool
    log: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, MetricValue]
    other: dict[str, Any] = Field(default_factory=dict)
    samples: list[SampleResult] | None = None

    @field_validator("log", mode="before")
    @classmethod
    def _text_log(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"text": v}
        return {} if v is None else v

    @field_validator("other", mode="before")
    @classmethod
    def _none_other(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("log", "other")
    @classmethod
    def _json_only(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _jsonable(v)

    @field_validator("samples")
    @classmethod
    def _unique_samples(cls, v: list[SampleResult] | None) -> list[SampleResult] | None:
        if v:
            seen: set[str] = set()
            for sample in v:
                if sample.sample_id in seen:
                    raise ValueError(f"sample id {sample.sample_id!r} appears twice")
                seen.add(sample.sample_id)
        return v


def to_result(value: Any, task_id: str) -> BenchmarkResult:
    """Validate what ``get_result`` returned into a :class:`BenchmarkResult` for ``task_id``.

    Raises:
        ResultError: naming the task and every invalid field.
    """
    if isinstance(value, BenchmarkResult):
        return value if value.task_id else value.model_copy(update={"task_id": task_id})
    if not isinstance(value, Mapping):
        raise ResultError(
            f"task {task_id!r}: get_result returned {type(value).__name__}, expected a BenchmarkResult or a dict"
        )
    try:
        return BenchmarkResult.model_validate({"task_id": task_id, **value} if not value.get("task_id") else value)
    except ValidationError as e:
        fields = "; ".join(f"field {'.'.join(map(str, err['loc'])) or '?'}: {err['msg']}" for err in e.errors())
        raise ResultError(f"task {task_id!r}: invalid result: {fields}") from None
