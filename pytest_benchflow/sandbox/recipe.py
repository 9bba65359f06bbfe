"""``ProviderRecipe``: the session's sandbox provider as another process makes it again (a Ray node, a task
process), from its class and the settings' values the session made it from; never a copy of the session's
own, whose connections belong to the session's process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import SandboxError, SandboxProvider

__all__ = ["ProviderRecipe"]


@dataclass(frozen=True)
class ProviderRecipe:
    """How to make ``provider`` again: its class (importable there, as the bench's code is) and its settings'
    values; ``cls`` is None for a provider a plugin's hook made, which no other process can make again."""

    name: str
    cls: type[SandboxProvider] | None
    values: dict[str, str]

    @classmethod
    def of(cls, provider: SandboxProvider) -> ProviderRecipe:
        made_from = provider.made_from
        kind = type(provider)
        return cls(kind.name or kind.__name__, kind if made_from is not None else None, dict(made_from or {}))

    def build(self, run_id: str, where: str, instead: str) -> SandboxProvider:
        """The provider, made here; for one that cannot be, a provider whose ``open`` says so: it cannot be
        made by ``where``, and what to do ``instead``."""
        if self.cls is None:
            return _NotMadeAgain(self.name, where, instead)
        return self.cls.from_options(self.values, run_id)


class _NotMadeAgain(SandboxProvider):
    def __init__(self, name: str, where: str, instead: str) -> None:
        self.shown, self.where, self.instead = name, where, instead

    def open(self, spec: Any) -> Any:
        raise SandboxError(
            f"sandbox provider {self.shown!r} was not made from the session's settings, so {self.where} cannot "
            f"make it again: {self.instead}"
        )

    def close_all(self) -> None:
        pass
