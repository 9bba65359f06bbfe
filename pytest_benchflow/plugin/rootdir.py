"""Undoing what the values of the plugin's options do to pytest's rootdir and configuration file.

pytest chooses its rootdir and configuration file from the command line before any plugin is
loaded, so it cannot know that ``--benchflow-output ../out`` takes a value: it takes ``../out``
for a test path, and an existing directory outside the current one widens the rootdir to their
common parent. Every node id is then printed from there (``../benchflow:mmlu_pro::biology``),
and the configuration file is looked for from that parent, so the project's own
(``[tool.pytest.ini_options]``) is missed. Once the plugin's options are known, this module
chooses again as pytest would have without those values.
"""

from __future__ import annotations

import inspect
import itertools
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from _pytest.config.findpaths import determine_setup

__all__ = ["choose_rootdir_again"]


def _values_taken_for_paths(args: list[str], flags: set[str]) -> list[str]:
    """The values given to ``flags`` as a separate argument (``--flag VALUE``)."""
    return [value for flag, value in itertools.pairwise(args) if flag in flags]


def choose_rootdir_again(config: pytest.Config, args: list[str], flags: Iterable[str]) -> None:
    """Choose the rootdir and configuration file as pytest would have without the values of ``flags``.

    Called from ``pytest_load_initial_conftests`` (before conftests are found and the command line
    is parsed for good). Nothing changes when no value of ``flags`` named an existing path, or when
    the user named the rootdir or the configuration file.
    """
    taken = [v for v in _values_taken_for_paths(args, set(flags)) if (config.invocation_params.dir / v).exists()]
    ns = config.known_args_namespace
    if not taken or ns.rootdir or ns.inifilename:
        return
    given: dict[str, Any] = {
        "inifile": None,
        "override_ini": ns.override_ini,
        # Parsed with the plugin's options known: their values are no longer here.
        "args": ns.file_or_dir,
        "rootdir_cmd_arg": None,
        "invocation_dir": config.invocation_params.dir,
    }
    accepted = inspect.signature(determine_setup).parameters
    rootpath, inipath, inicfg, *_ = determine_setup(**{k: v for k, v in given.items() if k in accepted})
    if (rootpath, inipath) == (config.rootpath, config.inipath):
        return
    if not _replace_setup(config, rootpath, inipath, inicfg, args):
        raise pytest.UsageError(
            f"pytest took {taken[0]} (an option's value) for a test path and chose the rootdir "
            f"{config.rootpath} from it; write the option as --option={taken[0]}"
        )


def _replace_setup(config: pytest.Config, rootpath: Path, inipath: Path | None, inicfg: Any, args: list[str]) -> bool:
    """Put the rootdir and configuration file in place; False when this pytest keeps them elsewhere."""
    inicfg_attribute = "_inicfg" if hasattr(config, "_inicfg") else "inicfg"  # pytest 9; pytest 8
    if not all(hasattr(config, a) for a in ("_rootpath", "_inipath", "_inicache", inicfg_attribute)):
        return False
    old_rootpath, old_inipath = config.rootpath, config.inipath
    old_paths = {str(p) for p in config.getini("pythonpath")}
    config._rootpath = rootpath
    config._inipath = inipath
    setattr(config, inicfg_attribute, inicfg)
    config._inicache.clear()
    config._parser.extra_info.update(rootdir=str(rootpath), inifile=str(inipath))
    ns = config.known_args_namespace
    # pytest derived the conftest boundary from the configuration file it had found.
    if ns.confcutdir == str(old_inipath.parent if old_inipath else old_rootpath):
        ns.confcutdir = str(inipath.parent if inipath else rootpath)
    if old_inipath is None:
        # The options the project's file adds, parsed with the command line after this hook. (Plugins it
        # names with -p are not loaded: pytest loaded plugins before; give those on the command line.)
        args[:0] = config.getini("addopts")
    for path in reversed(config.getini("pythonpath")):
        if str(path) not in old_paths:
            sys.path.insert(0, str(path))
    return True
