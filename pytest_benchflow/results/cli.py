"""The ``pytest-benchflow`` command (also ``python -m pytest_benchflow``): report, compare and list, reading the
results files the plugin writes. Not ``benchflow``: BenchFlow 0.2 and later ship a command of that name."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..authoring.cli import add_commands
from ..bench_lookup import installed_benchmarks, load_bench_class
from ..errors import ResultsFormatError
from ..runners import installed_runners
from .compare import (
    ALLOW_DATA_CHANGE,
    NOTHING_COMPARED,
    BaselineChoiceError,
    BenchComparison,
    DataCheck,
    check_run_data,
    compare_runs,
    format_comparison,
)
from .html import render_html
from .reader import RunData, load_run

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_REGRESSION", "PROG", "main"]

#: Exit codes: success (no regression); a regression with --fail-on-regression; bad input.
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2
#: The command's name, in its usage line and messages (``python -m pytest_benchflow`` runs the same).
PROG = "pytest-benchflow"


def _load(path: str) -> RunData:
    run = load_run(Path(path))
    for warning in run.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return run


#: The option naming the baseline agent compared with (``compare``, ``report``), when the agent sets differ.
BASELINE_AGENT = "--baseline-agent"


def _same_data(args: argparse.Namespace, base: RunData, new: RunData) -> DataCheck | None:
    """The runs' data check, or None (after saying why on one line) when their data differs and the user did
    not allow comparing it (a comparison of different questions says nothing about the agent), or the runs'
    agents do not say which to compare."""
    try:
        data = check_run_data(base, new, base_agent=args.baseline_agent, flag=BASELINE_AGENT)
    except BaselineChoiceError as e:
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
        return None
    if data.changed and not args.allow_data_change:
        print(f"{PROG} {args.command}: {data.refusal()}", file=sys.stderr)
        return None
    for note in data.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    return data


def _report(args: argparse.Namespace) -> int:
    run = _load(args.results_dir)
    output = Path(args.output)
    if args.baseline_agent and not args.baseline:
        print(f"{PROG} report: {BASELINE_AGENT} {args.baseline_agent}: give --baseline BASE too", file=sys.stderr)
        return EXIT_ERROR
    base = _load(args.baseline) if args.baseline else None
    data = _same_data(args, base, run) if base else None
    if base and data is None:
        return EXIT_ERROR
    comparisons = _comparisons(args, base, run) if base else None
    if comparisons == []:  # asked for a comparison and got none: never a report that looks compared
        print(f"{PROG} report: --baseline {base.path if base else ''}: {NOTHING_COMPARED}", file=sys.stderr)
        return EXIT_ERROR
    output.write_text(render_html(run, comparisons, base, data=data), encoding="utf-8")
    print(f"report of {run.path} written to {output}")
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    base, new = _load(args.base_dir), _load(args.new_dir)
    data = _same_data(args, base, new)
    if data is None:
        return EXIT_ERROR
    comparisons = _comparisons(args, base, new)
    if not comparisons:
        # A gate that compared nothing must not pass: say so, with the input-error code.
        print(format_comparison(comparisons, base, new), file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        payload = {
            **data.to_json(),  # first: a reader sees at once that the data changed
            "base": str(base.path),
            "new": str(new.path),
            "alpha": args.alpha,
            "max_drop": args.max_drop,
            "benches": [c.to_json() for c in comparisons],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_comparison(comparisons, base, new, data))
    regressed = any(c.regression for c in comparisons)
    return EXIT_REGRESSION if regressed and args.fail_on_regression else EXIT_OK


def _comparisons(args: argparse.Namespace, base: RunData, new: RunData) -> list[BenchComparison]:
    # The pairing was checked with the data (_same_data): no BaselineChoiceError here.
    return compare_runs(
        base, new, alpha=args.alpha, max_drop=args.max_drop, base_agent=args.baseline_agent, flag=BASELINE_AGENT
    )


def _list(args: argparse.Namespace) -> int:
    found = installed_benchmarks()
    if not found:
        print("no benchmarks installed (packages register them under the pytest_benchflow.benchmarks entry point)")
    for name, ref in sorted(found.items()):
        try:
            cls = load_bench_class(name)
            spec = cls().get_args(None)
        except Exception as e:  # one broken registration must not hide the others
            print(f"{name}  ({ref}): cannot load: {e}")
            continue
        print(f"{name}  ({ref})")
        if cls.description:
            print(f"  {cls.description}")
        print(f"  splits: {', '.join(cls.splits)}")
        for arg in spec.names:
            default = "required" if arg in spec.required else f"default {spec.optional.get(arg)!r}"
            choices = f"; one of {', '.join(map(str, spec.choices[arg]))}" if arg in spec.choices else ""
            print(f"  {arg}: {default}{choices}")
    print(f"runners: {', '.join(sorted(installed_runners()))} (--benchflow-runner NAME)")
    return EXIT_OK


_ALLOW_HELP = (
    "compare runs whose benches' data fingerprints differ (refused otherwise, exit 2); the output says so first"
)


_BASELINE_AGENT_HELP = (
    "with a base run of several agents: the one each agent of the new run is compared with (required when the new "
    "run evaluated one agent)"
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Read, compare and list pytest-benchflow results; write, build and check benchmarks.",
        epilog="exit codes: 0 success, 1 regression (compare --fail-on-regression), 2 bad input or different data",
    )
    sub = top.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="write the HTML report of a results directory")
    report.add_argument("results_dir", help="a run directory, or an output directory (its newest run is used)")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    report.add_argument("--baseline", help="an earlier run to compare with: verdicts and flipped samples in the report")
    report.add_argument("--alpha", type=float, default=0.05, help="significance level of the comparison")
    report.add_argument("--max-drop", type=float, default=0.0, help="tolerated fall, e.g. 0.02 (default 0)")
    report.add_argument(ALLOW_DATA_CHANGE, action="store_true", help=_ALLOW_HELP)
    report.add_argument(BASELINE_AGENT, metavar="NAME", help=_BASELINE_AGENT_HELP)
    report.set_defaults(run=_report)
    compare = sub.add_parser("compare", help="compare two runs; optionally fail on a significant regression")
    compare.add_argument("base_dir")
    compare.add_argument("new_dir")
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    compare.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a benchmark regressed")
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    compare.add_argument(
        "--max-drop", type=float, default=0.0, help="tolerated fall of the resolution rate, e.g. 0.02 (default 0)"
    )
    compare.add_argument(ALLOW_DATA_CHANGE, action="store_true", help=_ALLOW_HELP)
    compare.add_argument(BASELINE_AGENT, metavar="NAME", help=_BASELINE_AGENT_HELP)
    compare.set_defaults(run=_compare)
    listing = sub.add_parser("list", help="list installed benchmarks (splits, arguments) and runners")
    listing.set_defaults(run=_list)
    add_commands(sub)  # new, build, check: writing a benchmark (pytest_benchflow.authoring)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ResultsFormatError as e:
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # never a traceback with exit code 1, which a CI gate would read as "regression"
        print(f"{PROG} {args.command}: unexpected {type(e).__name__}: {e} (please report this)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
