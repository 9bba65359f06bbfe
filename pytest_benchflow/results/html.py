"""The self-contained HTML report of a run: statistics, charts, tasks, their samples and transcripts."""

from __future__ import annotations

import html
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from ..runfiles import escape_surrogates
from ..stats import Z95, percent, wilson_interval
from .compare import BenchComparison, DataCheck, verdict
from .leaderboard import Leaderboard
from .reader import RunData
from .records import BenchSummary, agent_label, bench_key
from .transcript_reader import read_transcript
from .writer import group_samples, run_key

__all__ = ["MAX_FLIPS_SHOWN", "MAX_SAMPLES", "TRANSCRIPT_BUDGET", "render_html"]

#: Characters of transcripts embedded in one report at most: the page stays small enough to open.
TRANSCRIPT_BUDGET = 20_000_000
#: Samples listed in one report at most.
MAX_SAMPLES = 200_000
#: Flipped samples listed per bench in the comparison section.
MAX_FLIPS_SHOWN = 500

_ASSETS = Path(__file__).parent / "assets"


@cache
def _asset(name: str) -> str:
    # Inlined into every report, so it opens with no network and no other files.
    return (_ASSETS / name).read_text(encoding="utf-8")


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else html.escape(str(x))


def _is_count_row(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("correct"), int) and isinstance(row.get("total"), int)


def _chart_rows(bench: BenchSummary) -> list[tuple[str, float, float, float, bool]]:
    """(label, value, low, high, is_overall) bars: the bench's breakdown, else its rates and 0–1 metrics."""
    breakdown = bench.info.breakdown or {}
    stats = bench.stats
    rows = []
    if breakdown and all(_is_count_row(r) for r in breakdown.values()):
        for label, r in breakdown.items():
            if r["total"]:
                low, high = wilson_interval(int(r["correct"]), int(r["total"]))
                rows.append((label, r["correct"] / r["total"], low, high, label == "overall"))
        return rows
    if stats.tasks and stats.resolution_rate is not None:
        low, high = stats.resolution_rate_ci95
        rows.append(("resolution rate", stats.resolution_rate, low, high, True))
    for name, m in stats.metrics.items():
        if 0 <= m.mean <= 1 and not math.isnan(m.stderr):
            rows.append((name, m.mean, max(0.0, m.mean - Z95 * m.stderr), min(1.0, m.mean + Z95 * m.stderr), False))
    return rows


def _svg_chart(bench_name: str, rows: list[tuple[str, float, float, float, bool]]) -> str:
    label_w, bar_w, row_h, right = 170, 460, 24, 150
    width, height = label_w + bar_w + right, row_h * len(rows) + 34

    def x(v: float) -> float:
        return label_w + bar_w * v

    parts = [
        f'<svg class="chart" role="img" aria-label="{html.escape(bench_name)}: value per row with 95% intervals" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{x(tick):.1f}" y1="4" x2="{x(tick):.1f}" y2="{height - 22}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 6}" text-anchor="middle">{int(tick * 100)}%</text>')
    for i, (label, value, low, high, overall) in enumerate(rows):
        y = 6 + i * row_h
        mid = y + row_h / 2 - 2
        parts.append(
            f'<g class="row{" overall" if overall else ""}" data-label="{html.escape(label)}" data-value="{value:.4f}" '
            f'data-low="{low:.4f}" data-high="{high:.4f}">'
            f'<text x="{label_w - 8}" y="{mid + 4:.1f}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar_w * value:.1f}" height="{row_h - 10}" rx="2"/>'
            f'<line class="ci" x1="{x(low):.1f}" y1="{mid:.1f}" x2="{x(high):.1f}" y2="{mid:.1f}"/>'
            f'<line class="ci" x1="{x(low):.1f}" y1="{mid - 5:.1f}" x2="{x(low):.1f}" y2="{mid + 5:.1f}"/>'
            f'<line class="ci" x1="{x(high):.1f}" y1="{mid - 5:.1f}" x2="{x(high):.1f}" y2="{mid + 5:.1f}"/>'
            f'<text x="{label_w + bar_w + 8}" y="{mid + 4:.1f}">'
            f"{100 * value:.1f}% [{100 * low:.1f}–{100 * high:.1f}]</text>"
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in kinds.items())


def _bench_section(name: str, bench: BenchSummary) -> str:
    stats = bench.stats
    low, high = stats.resolution_rate_ci95
    rate_label = "resolution rate"
    if stats.resolution_rate is not None:
        how = ", clustered by task" if stats.epochs_per_task > 1 else ""
        rate_label += f", 95% CI {percent(low)}–{percent(high)}{how}"
    tasks = (str(stats.tasks), "tasks", "")
    if stats.epochs_per_task > 1:
        tasks = (f"{stats.task_ids} × {stats.epochs_per_task}", f"tasks × epochs ({stats.tasks} runs)", "")
    cards = [
        tasks,
        (str(stats.resolved), "resolved", "passed"),
        (str(stats.failed), "unresolved", "failed"),
        (str(stats.errors), "errors" + (f" ({_kinds(stats.error_kinds)})" if stats.error_kinds else ""), "error"),
        (percent(stats.resolution_rate), rate_label, ""),
    ]
    if stats.infra_errors:
        # Beside the strict rate, never in its place: labelled so neither is taken for the other.
        cards[-1] = (cards[-1][0], rate_label.replace("resolution rate", "strict resolution rate", 1), "")
        f_low, f_high = stats.resolution_rate_without_infra_ci95
        cards.append(
            (
                percent(stats.resolution_rate_without_infra),
                f"resolution rate without infrastructure errors, 95% CI {percent(f_low)}–{percent(f_high)} "
                f"({stats.infra_errors} task runs with infra, budget or interrupted errors left out)",
                "without-infra",
            )
        )
    if stats.samples is not None:
        s_low, s_high = stats.samples.ci95
        cards.append(
            (
                percent(stats.samples.mean),
                f"mean sample score, 95% CI {percent(max(0.0, s_low))}–{percent(min(1.0, s_high))} "
                f"({stats.samples.samples:,} samples, clustered by task)",
                "samples",
            )
        )
    if stats.epochs is not None:
        e = stats.epochs
        k = str(e.epochs)
        cards.append(
            (
                f"{percent(e.pass_at_k.get(k))} / {percent(e.pass_hat_k.get(k))}",
                f"pass@{k} / pass^{k} over {e.epochs} epochs; {len(e.flaky)} flaky tasks",
                "epochs",
            )
        )
    metric_rows = "".join(
        f'<tr data-metric="{html.escape(m)}"><td>{html.escape(m)}</td><td class="num">{_fmt(s.mean)}</td>'
        f'<td class="num">{_fmt(s.mean - Z95 * s.stderr)} – {_fmt(s.mean + Z95 * s.stderr)}</td>'
        f'<td class="num">{s.count}</td></tr>'
        for m, s in stats.metrics.items()
    )
    rows = _chart_rows(bench)
    args = bench.info.args
    fingerprint = bench.info.data_fingerprint or {}
    engine_rows = "".join(
        f'<tr class="engine"><td>{html.escape(url)}</td><td class="num">{int(r["tasks"])}</td>'
        f'<td class="num">{int(r["errors"])}</td><td class="num">{r["seconds"]:.1f}</td></tr>'
        for url, r in (stats.engines or {}).items()
    )
    return (
        f'<section class="bench" data-bench="{html.escape(name)}"><h2>{html.escape(name)}</h2>'
        + '<div class="cards">'
        + "".join(f'<div class="card {c}"><b>{v}</b><span>{html.escape(t)}</span></div>' for v, t, c in cards)
        + "</div>"
        + (
            '<table class="metrics"><thead><tr><th>metric</th><th class="num">mean</th>'
            f'<th class="num">95% CI</th><th class="num">n</th></tr></thead><tbody>{metric_rows}</tbody></table>'
            if metric_rows
            else ""
        )
        + (f"<figure>{_svg_chart(name, rows)}</figure>" if rows else "")
        + (
            '<table class="engines"><thead><tr><th>engine</th><th class="num">tasks</th>'
            f'<th class="num">errors</th><th class="num">seconds</th></tr></thead><tbody>{engine_rows}</tbody></table>'
            if engine_rows
            else ""
        )
        + (
            f'<p class="data">data: <code>{html.escape(fingerprint.get("digest", ""))}</code>'
            + (f" {html.escape(fingerprint['label'])}" if fingerprint.get("label") else "")
            + "</p>"
            if fingerprint
            else ""
        )
        + (
            '<p class="args">arguments: '
            + ", ".join(f"<code>{html.escape(k)}={html.escape(str(v))}</code>" for k, v in args.items())
            + "</p>"
            if args
            else ""
        )
        + "</section>"
    )


def _task_rows(run: RunData) -> list[dict[str, Any]]:
    rows = []
    epochs = any(r.epoch > 1 for r in run.records)
    for i, r in enumerate(run.records):
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in r.metrics.items())
        rows.append(
            {
                "index": i,
                "bench": bench_key(r.bench, r.agent),
                "task_id": f"{r.task_id} (epoch {r.epoch})" if epochs else r.task_id,
                "outcome": r.outcome,
                "duration": float(r.duration),
                "metrics": html.unescape(metrics),
                "reason": r.reason or "",
                "details": r.details or "",
            }
        )
    return rows


def _sample_data(run: RunData, budget: int) -> dict[str, Any]:
    """Samples per task row and the transcripts of as many as ``budget`` characters allow, wrong ones first.

    ``samples``: ``[task index, sample id, score, metadata text, [transcript indices]]`` (every exchange of
    the sample in order: an agentic task's whole trajectory, then its verifier's output);
    ``exchanges``: per task index, transcripts of exchanges without a sample id.
    """
    groups = group_samples(run.samples)
    per_task = [groups.get(run_key(r), []) for r in run.records]
    # What one reads first: tasks that failed or have wrong samples.
    order = sorted(
        range(len(run.records)),
        key=lambda i: (run.records[i].outcome == "passed" and all(s.score == 1 for s in per_task[i]), i),
    )
    transcripts: list[dict[str, Any]] = []
    by_sample: dict[tuple[int, str], list[int]] = {}
    exchanges: dict[int, list[int]] = {}
    used = 0
    capped = False
    for i in order:
        for exchange in read_transcript(run.path, run.records[i].log_dir):
            size = sum(len(str(v)) for v in exchange.values())
            if used + size > budget:
                capped = True
                break
            used += size
            transcripts.append(exchange)
            if exchange["sample_id"] is None:
                exchanges.setdefault(i, []).append(len(transcripts) - 1)
            else:
                by_sample.setdefault((i, exchange["sample_id"]), []).append(len(transcripts) - 1)
        if capped:
            break
    samples = [
        [
            i,
            s.sample_id,
            s.score,
            json.dumps(s.metadata, ensure_ascii=False) if s.metadata else "",
            by_sample.get((i, s.sample_id), []),
        ]
        for i, group in enumerate(per_task)
        for s in group
    ]
    shown = samples[:MAX_SAMPLES]
    notes = []
    if len(samples) > len(shown):
        notes.append(f"{len(shown):,} of {len(samples):,} samples listed; all are in samples.jsonl")
    if capped:
        notes.append(
            f"transcripts embedded up to {budget / 1e6:g} million characters (tasks that failed first); "
            "every exchange is in its task's logs/…/transcript.jsonl"
        )
    return {"samples": shown, "transcripts": transcripts, "exchanges": exchanges, "notes": notes}


def _comparison_section(comparisons: list[BenchComparison], base: RunData, data: DataCheck | None) -> str:
    """The baseline comparison: the data that changed first, then each bench's verdict and the samples that flipped."""
    parts = [
        f'<section id="comparison"><h2>Compared with {html.escape(str(base.metadata.get("run_id", base.path)))}</h2>'
    ]
    for line in data.header() if data is not None else []:
        kind = "data-changed verdict error" if line.startswith("DATA CHANGED") else "note data-note"
        parts.append(f'<p class="{kind}">{html.escape(line)}</p>')
    for c in comparisons:
        parts.append(
            f'<div class="verdict {"error" if c.regression else "passed"}" data-bench="{html.escape(c.bench)}">'
            f"<b>{html.escape(c.label)}</b>: resolution rate {percent(c.base_rate)} → {percent(c.new_rate)}; "
            f"{len(c.regressed)} tasks resolved → unresolved, {len(c.fixed)} unresolved → resolved; "
            f"{html.escape(verdict(c).replace('REGRESSION', 'regression'))}</div>"
        )
        s = c.samples
        if s is None:
            continue
        parts.append(
            f'<p class="sample-verdict">{s.paired:,} samples in both runs: mean score {percent(s.base_mean)} → '
            f"{percent(s.new_mean)} ({100 * s.difference:+.1f}pp, 95% CI {100 * s.ci95[0]:+.1f} to "
            f"{100 * s.ci95[1]:+.1f}pp, clustered by task); {s.worse:,} worse, {s.better:,} better; "
            f"{html.escape(s.test)} p={s.p_value:.3g}</p>"
        )
        if s.flipped:
            rows = "".join(
                f'<tr class="flip {"failed" if new < old else "passed"}"><td>{html.escape(task)}</td>'
                f'<td>{html.escape(sample)}</td><td class="num">{epoch}</td>'
                f'<td class="num">{old:g}</td><td class="num">{new:g}</td></tr>'
                for task, sample, epoch, old, new in s.flipped[:MAX_FLIPS_SHOWN]
            )
            more = (
                f'<p class="note">{MAX_FLIPS_SHOWN} of {len(s.flipped):,} flipped samples shown (worst first); '
                "`pytest-benchflow compare --json` lists them all</p>"
                if len(s.flipped) > MAX_FLIPS_SHOWN
                else ""
            )
            parts.append(
                '<table class="flips"><thead><tr><th>task</th><th>sample</th><th class="num">epoch</th>'
                f'<th class="num">base</th><th class="num">new</th></tr></thead><tbody>{rows}</tbody></table>{more}'
            )
    parts.append("</section>")
    return "".join(parts)


def _pair_id(bench: str, a: str, b: str) -> str:
    return "pair-" + "-".join(f"{len(x)}{x}" for x in (bench, a, b))  # lengths first: never two pairs' ids alike


def _leaderboard_section(board: Leaderboard) -> str:
    """A bench's agents ranked, the pairwise matrix (row minus column), and each pair's disagreements."""
    e = html.escape
    rows = "".join(
        f'<tr class="agent-row" data-agent="{e(r.agent)}"><td>{rank}</td><td>{e(r.agent)}</td>'
        f'<td class="num">{r.resolved}/{r.tasks}</td><td class="num">{percent(r.resolution_rate)} '
        f"[{percent(r.resolution_rate_ci95[0])}–{percent(r.resolution_rate_ci95[1])}]</td>"
        f'<td class="num">{percent(r.sample_mean)}'
        + (f" [{percent(r.sample_ci95[0])}–{percent(r.sample_ci95[1])}]" if r.sample_ci95 else "")
        + f'</td><td class="num">{r.tokens or 0:,}</td>'
        f'<td class="num">{"" if r.cost is None else f"${r.cost:.4f}"}</td>'
        f"<td>{e(', '.join(f'{n} {k}' for k, n in r.error_kinds.items()) or '0')}</td></tr>"
        for rank, r in enumerate(board.agents, 1)
    )
    names = [r.agent for r in board.agents]
    matrix = ["<tr><th></th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
    details = []
    for a in names:
        cells = [f"<th>{e(a)}</th>"]
        for b in names:
            pair = board.pair(a, b) if a != b else None
            if pair is None:
                cells.append('<td class="self">—</td>')
                continue
            target = _pair_id(board.bench, *sorted((a, b)))
            mark = " significant" if pair.significant else ""
            cells.append(
                f'<td class="pair{mark}" data-a="{e(a)}" data-b="{e(b)}" data-target="{e(target)}" '
                f'data-difference="{pair.difference:.6f}" data-p-holm="{pair.p_holm:.6g}" tabindex="0">'
                f"{100 * pair.difference:+.1f}pp{' *' if pair.significant else ''}<small>"
                f"[{100 * pair.ci95[0]:+.1f}, {100 * pair.ci95[1]:+.1f}] p={pair.p_holm:.2g}</small></td>"
            )
        matrix.append("<tr>" + "".join(cells) + "</tr>")
    for pair in board.pairs:
        shown = pair.disagreements[:MAX_FLIPS_SHOWN]
        listed = "".join(
            f'<tr class="disagreement"><td>{e(t)}</td><td>{e(s)}</td><td class="num">{ep}</td>'
            f'<td class="num">{x:g}</td><td class="num">{y:g}</td></tr>'
            for t, s, ep, x, y in shown
        )
        more = (
            f'<p class="note">{len(shown)} of {len(pair.disagreements):,} shown; all are in samples.jsonl</p>'
            if len(pair.disagreements) > len(shown)
            else ""
        )
        details.append(
            f'<div class="disagreements" id="{e(_pair_id(board.bench, *sorted((pair.a, pair.b))))}" hidden>'
            f"<h3>{e(pair.a)} vs {e(pair.b)}: {pair.a_better} + {pair.b_better} {e(pair.level)} where they disagree "
            f"({pair.test} p={pair.p_value:.3g}, Holm p={pair.p_holm:.3g})</h3>"
            '<table><thead><tr><th>task</th><th>sample</th><th class="num">epoch</th>'
            f'<th class="num">{e(pair.a)}</th><th class="num">{e(pair.b)}</th></tr></thead>'
            f"<tbody>{listed}</tbody></table>{more}</div>"
        )
    return (
        f'<section class="leaderboard" data-bench="{e(board.bench)}"><h2>{e(board.bench)}: leaderboard</h2>'
        '<table class="agents"><thead><tr><th>#</th><th>agent</th><th class="num">resolved</th>'
        '<th class="num">resolution rate [95% CI]</th><th class="num">mean sample score [95% CI]</th>'
        '<th class="num">tokens</th><th class="num">cost</th><th>errors</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f"<p>Pairwise: row minus column, paired over the {e(board.pairs[0].level if board.pairs else 'samples')} "
        f"both answered, 95% CI clustered by task; p Holm-corrected across pairs, * significant at {board.alpha:g}. "
        "Click a cell for the samples where the two disagree.</p>"
        f'<table class="matrix">{"".join(matrix)}</table>' + "".join(details) + "</section>"
    )


def _script_json(value: Any) -> str:
    # Inside <script>, "<!--", "<script" and "</script" change how the page parses: no "<" stays literal.
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def render_html(
    run: RunData,
    comparisons: list[BenchComparison] | None = None,
    base: RunData | None = None,
    transcript_budget: int = TRANSCRIPT_BUDGET,
    *,
    data: DataCheck | None = None,
    boards: list[Leaderboard] | None = None,
) -> str:
    """The report as one HTML string: inline CSS, SVG and script, nothing fetched at view time.

    With ``comparisons`` (against ``base``), a section shows each bench's verdict and flipped samples, after
    ``data``'s lines: the benches whose data changed (compared anyway) and the notes about data.
    """
    meta = run.metadata
    shown_meta = [
        ("run", meta.get("run_id")),
        ("split", meta.get("split")),
        ("agent", agent_label(meta.get("agent")) or meta.get("agent_url")),
        ("started", meta.get("started_at")),
        ("finished", meta.get("finished_at")),
        ("exit status", meta.get("exit_status")),
        ("interrupted", meta.get("interrupted")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()) or None),
    ]
    samples = _sample_data(run, transcript_budget)
    benches = run.benches()
    # Lone surrogates (an agent's "\ud800" is valid JSON) cannot be written as UTF-8: their escapes are shown.
    return escape_surrogates(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>pytest-benchflow report {html.escape(str(meta.get('run_id', '')))}</title>"
        f"<style>{_asset('report.css')}</style></head>"
        '<body><main><header><h1>Benchmark report</h1><dl class="meta">'
        + "".join(f"<dt>{k}</dt><dd>{html.escape(str(v))}</dd>" for k, v in shown_meta if v is not None)
        + "</dl></header>"
        + "".join(_leaderboard_section(board) for board in boards or [])
        + "".join(_bench_section(name, bench) for name, bench in benches.items())
        + (_comparison_section(comparisons, base, data) if comparisons and base is not None else "")
        + '<section id="tasks"><h2>Tasks</h2><div class="controls">'
        '<label>outcome <select id="outcome-filter"><option value="all">all</option>'
        '<option value="passed">passed</option>'
        '<option value="failed">failed</option><option value="error">error</option></select></label>'
        '<input id="search" type="search" placeholder="filter by task id or bench"><span id="shown"></span></div>'
        '<table id="task-table"><thead><tr><th data-key="bench">bench</th><th data-key="task_id">task</th>'
        '<th data-key="outcome">outcome</th><th data-key="duration" class="num">seconds</th>'
        '<th data-key="metrics">metrics</th><th data-key="reason">reason (click a row for details)</th></tr></thead>'
        "<tbody></tbody></table>"
        + "".join(f'<p class="note">{html.escape(n)}</p>' for n in samples.pop("notes"))
        + "</section></main>"
        f'<script type="application/json" id="task-data">{_script_json(_task_rows(run))}</script>'
        f'<script type="application/json" id="sample-data">{_script_json(samples)}</script>'
        f"<script>{_asset('report.js')}</script>"
        + (f"<script>{_asset('leaderboard.js')}</script>" if boards else "")
        + "</body></html>"
    )
