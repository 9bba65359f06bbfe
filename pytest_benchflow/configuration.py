"""How a setting of pytest-benchflow is declared: one type for the plugin's own options and every runner's.

The plugin registers each :class:`Setting` with pytest (an ini setting, and a flag when asked) and reads
its value once per session (``plugin/settings.py``); a runner lists its own in ``Runner.options()`` and
receives their values, as strings, in ``Runner.from_options``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Setting"]


@dataclass(frozen=True)
class Setting:
    """An ini setting ``name`` and, when ``flag``, a ``--name-with-dashes`` flag (the command line wins).

    The flag is ``--flag-name-with-dashes`` when ``flag_name`` is given. A ``repeatable`` flag may be
    given several times; its values are read joined by spaces, as the ini setting's whitespace-separated
    words are. A ``lines`` setting is a list: each flag given is one item, and so is each line of the ini
    setting (``--benchflow``, ``--benchflow-arg``).
    """

    name: str
    help: str
    default: str = ""
    #: Off by default: a runner's setting takes a command-line flag only when it asks for one.
    flag: bool = False
    flag_name: str = ""
    repeatable: bool = False
    lines: bool = False

    @property
    def shown(self) -> str:
        """How a user gives the setting, for error messages: its flag, else its ini name."""
        return "--" + (self.flag_name or self.name).replace("_", "-") if self.flag else self.name
