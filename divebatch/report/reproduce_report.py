"""The reproduction's tables and its report (Markdown and HTML), from `reproduce.results`."""

from __future__ import annotations

import html
import os
import platform
from pathlib import Path

from divebatch.experiments import verdicts
from divebatch.experiments.claims import explanation, finding_line, findings
from divebatch.experiments.paper_setup import (BENCHMARKS, METHODS, PAPER, PAPER_BASELINE,
                                               paper_change, paper_speedup)
from divebatch.experiments.reproduce import ReproResults, curves_records


# --- tables

def side_by_side(result: ReproResults) -> list[dict]:
    """The headline table: the paper's three datasets, then ours. Speed-ups are over SGD at
    the small batch of the same source (and seed); accuracy changes are in points."""
    rows = []
    for dataset in PAPER:
        row = {"source": "paper",
               "benchmark": f"{dataset} (ResNet-18, 200 epochs, {PAPER_BASELINE[dataset]})",
               "sgd_acc": f"{PAPER[dataset]['sgd_small'][1]:.1f} %",
               "sgd_time": f"{PAPER[dataset]['sgd_small'][0]} s"}
        for method in ("adabatch", "divebatch"):
            row[f"{method}_speedup"] = f"{paper_speedup(dataset, method):.2f}x"
            row[f"{method}_change"] = f"{paper_change(dataset, method):+.1f}"
        rows.append(row)
    for key in result.benchmarks():
        sgd = result.cells[(key, "sgd_small")]
        row = {"source": "ours", "benchmark": BENCHMARKS[key].title,
               "sgd_acc": verdicts.format_mean_se(sgd["final"], sgd["final_se"], scale=100,
                                                suffix=" %"),
               "sgd_time": verdicts.format_mean_se(sgd["time_to_target"],
                                                 sgd["time_to_target_se"], suffix=" s")}
        for method in ("adabatch", "divebatch"):
            cell = result.cells[(key, method)]
            row[f"{method}_speedup"] = verdicts.format_speedup(cell)
            row[f"{method}_change"] = _signed_points(cell["final_change"],
                                                     cell["final_change_se"])
        rows.append(row)
    return rows


SIDE_BY_SIDE_COLUMNS = [("source", "source"), ("benchmark", "benchmark"),
                        ("sgd_acc", "SGD-small acc"), ("sgd_time", "SGD-small s to own-1pt"),
                        ("adabatch_speedup", "AdaBatch speed-up"),
                        ("adabatch_change", "AdaBatch Δacc (pt)"),
                        ("divebatch_speedup", "DiveBatch speed-up"),
                        ("divebatch_change", "DiveBatch Δacc (pt)")]


def _signed_points(mean: float | None, se: float | None) -> str:
    if mean is None:
        return ""
    text = f"{100 * mean:+.2f}"
    if se is None:
        return text
    # an error below the mean's last shown digit is rounding noise (1e-15): it shows as 0
    return f"{text} ± {0 if 100 * se < 0.005 else f'{100 * se:.2g}'}"


def detail(result: ReproResults) -> list[dict]:
    """Every method on every benchmark of ours."""
    rows = []
    for key in result.benchmarks():
        for method, label in METHODS.items():
            cell = result.cells[(key, method)]
            rows.append({
                "benchmark": key, "method": label,
                "seeds": f"{cell['finished']}/{cell['planned']}"
                         + (f" ({cell['diverged']} diverged)" if cell["diverged"] else ""),
                "final_acc": verdicts.format_mean_se(cell["final"], cell["final_se"],
                                                   scale=100, suffix=" %"),
                "change": _signed_points(cell["final_change"], cell["final_change_se"]),
                "time": verdicts.format_mean_se(cell["time_to_target"],
                                              cell["time_to_target_se"], suffix=" s"),
                "speedup": verdicts.format_speedup(cell),
                "final_batch": verdicts.format_mean_se(cell["final_batch_size"], None,
                                                     digits=5)})
    return rows


DETAIL_COLUMNS = [("benchmark", "benchmark"), ("method", "method"), ("seeds", "seeds"),
                  ("final_acc", "final acc"), ("change", "Δacc vs SGD-small (pt)"),
                  ("time", "train s to own-1pt"), ("speedup", "speed-up"),
                  ("final_batch", "final B")]


# --- the report

def skipped_notes(skipped: dict[str, str]) -> list[str]:
    return [f"{BENCHMARKS[key].title}: {note}" for key, note in skipped.items()]


def batch_notes(result: ReproResults) -> list[str]:
    """Per benchmark: where DiveBatch's and AdaBatch's batch sizes ended, beside B0 and B_max."""
    notes = []
    for key in result.benchmarks():
        fields = BENCHMARKS[key].scales[result.spec.scale]
        ends = []
        for method in ("divebatch", "divebatch_linear", "adabatch"):
            final = result.cells[(key, method)]["final_batch_size"]
            if final is not None:
                ends.append(f"{METHODS[method]} {final:.4g}")
        if ends:
            notes.append(f"{BENCHMARKS[key].title}: B0 = {fields['batch_size']}, B_max = "
                         f"{fields['max_batch_size']}; final batch (mean over seeds): "
                         + ", ".join(ends) + ".")
    return notes


def measuring_note(result: ReproResults, key: str) -> str:
    """A sentence for the "why" line: the share of DiveBatch's training time spent measuring
    diversity (mean over seeds), so that a slowdown it causes is named as such; "" if unknown."""
    cell = result.cells[(key, "divebatch")]
    share = cell.get("measure_share")
    if share is None:
        return ""
    return (f" Measuring diversity took {100 * share:.0f} % of DiveBatch's training time "
            f"(mean over seeds): that part of its time is the price of the measurement, not "
            f"of training at its batch sizes.")


def why_line(result: ReproResults, key: str) -> str:
    """The "why" line of a benchmark, as the report, the CLI and the dashboard show it: why the
    verdicts came out so, and how much of DiveBatch's time was measuring."""
    return explanation(result, key) + measuring_note(result, key)


def machine_summary() -> str:
    import torch
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"CPU only ({os.cpu_count()} cores)")
    return (f"{platform.platform(terse=True)}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {device}")


def report_blocks(result: ReproResults, figures: dict | None = None) -> list[tuple]:
    """The report as blocks, rendered to Markdown and HTML alike:
    ("h1"/"h2"/"p", text), ("ul", [items]), ("table", columns, rows), ("figure", name)."""
    spec = result.spec
    counts = result.progress
    checks = findings(result)
    blocks = [
        ("h1", "DiveBatch: our reproduction beside the paper"),
        ("p", f"Scale '{spec.scale}', seeds {list(spec.seeds)}, "
              f"{counts['finished']} of {counts['total']} runs finished. Machine: "
              f"{machine_summary()}."),
        ("p", "Metric (the paper's): training time, evaluation excluded, to the first epoch "
              "within 1 point of the run's own final accuracy. Speed-ups are SGD-small's time "
              "over the method's, per seed, then mean ± standard error over seeds; Δacc is "
              "the final accuracy minus SGD-small's, in points. The paper's numbers are from "
              "one run each, on ResNet-18 for 200 epochs; ours are scaled down to this "
              "machine."),
        ("h2", "Side by side"),
        ("table", SIDE_BY_SIDE_COLUMNS, side_by_side(result)),
        ("h2", "Where we agree with the paper, and where we do not"),
    ]
    agree = sum(f["agrees"] is True for f in checks)
    differ = sum(f["agrees"] is False for f in checks)
    favourable = sum(bool(f.get("favourable")) for f in checks)
    so_far = (f"So far ({counts['finished']} of {counts['total']} runs finished): "
              if counts["finished"] < counts["total"] else "")
    blocks.append(("p", f"{so_far}Of {len(checks)} checks, {agree} agree with the paper, {differ} "
                        f"differ ({favourable} of them in DiveBatch's favour: no accuracy "
                        f"loss) and {len(checks) - agree - differ} are unclear (a speed-up "
                        f"within two standard errors of 1, or no finished runs)."))
    blocks.append(("ul", [finding_line(f) for f in checks]))
    blocks += [("h2", "Why the verdicts came out this way"),
               ("ul", [why_line(result, key) for key in result.benchmarks()])]
    blocks += [("h2", "What the batch size did"), ("ul", batch_notes(result))]
    if result.skipped:
        blocks += [("h2", "Skipped here"), ("ul", skipped_notes(result.skipped))]
    blocks += [("h2", "Every method"), ("table", DETAIL_COLUMNS, detail(result))]
    for name in (figures or {}):
        blocks.append(("figure", name))
    return blocks


def to_markdown(blocks: list[tuple], html_name: str | None = None) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            columns, rows = block[1], block[2]
            lines.append("| " + " | ".join(title for _, title in columns) + " |")
            lines.append("|" + "---|" * len(columns))
            lines += ["| " + " | ".join(str(row.get(key) or "") for key, _ in columns) + " |"
                      for row in rows]
            lines.append("")
    if html_name and any(block[0] == "figure" for block in blocks):
        lines += [f"Figures: see [{html_name}]({html_name}).", ""]
    return "\n".join(lines)


def to_html(blocks: list[tuple], figures: dict | None = None) -> str:
    """A standalone page; plotly.js is embedded once, so it opens offline."""
    figures = figures or {}
    parts, plotly_included = [], False
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "ul":
            items = "".join(f"<li>{html.escape(item)}</li>" for item in block[1])
            parts.append(f"<ul>{items}</ul>")
        elif kind == "table":
            columns, rows = block[1], block[2]
            head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(key) or ''))}</td>"
                                            for key, _ in columns) + "</tr>" for row in rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "figure" and block[1] in figures:
            parts.append(figures[block[1]].to_html(full_html=False,
                                                   include_plotlyjs=not plotly_included))
            plotly_included = True
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "th{background:#f3f3f3}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>DiveBatch reproduction"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")


REPORT_NAMES = ("reproduce.md", "reproduce.html")


def report_documents(store, result: ReproResults) -> dict[str, str]:
    """{file name: text}: the Markdown report and the HTML one with the figures."""
    from divebatch.report.sweep_figures import reproduce_figures
    figures = reproduce_figures(result, curves_records(store, result))
    blocks = report_blocks(result, figures)
    markdown_name, html_name = REPORT_NAMES
    return {markdown_name: to_markdown(blocks, html_name), html_name: to_html(blocks, figures)}


def write_report(store, result: ReproResults, folder: str | os.PathLike = "reports"
                 ) -> list[Path]:
    """Write the report documents into `folder`; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in report_documents(store, result).items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    return paths
