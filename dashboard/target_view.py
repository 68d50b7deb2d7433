"""The time-to-target table's words as the live panel shows them, beside its rows: drawn by
Streamlit (dashboard/live.py) or by the growing charts in the page (dashboard/live_route.py
sends them, growing_charts.js draws them)."""

from __future__ import annotations

from divebatch.report.target_table import TargetTable

from . import live_cache

DETAILS_TITLE = "All columns (the paper's own-final metric, samples, cost of measuring)"
DETAILS_CAPTION = ("own-1pt: the paper's metric, the first epoch within 1 point of the run's "
                   "own final accuracy. ms/step measured / plain: the cost of DiveBatch's own "
                   "diversity measurement, from its epochs with and without it at equal "
                   "batch size.")


def title(table: TargetTable) -> str:
    """The table's heading, in Markdown."""
    return ("**Time to target** (★ first to the common target)" if table.winner is not None
            else "**Time to target**")


def caption(table: TargetTable, runs: list[dict]) -> str:
    return table.caption + (f" While runs train, this table is updated every "
                            f"{live_cache.TABLE_EVERY_S:g} s." if live_cache.any_active(runs)
                            else "")


def parts(table: TargetTable, runs: list[dict]) -> dict:
    """`table` (of `runs`) for a page that draws it itself: {title (plain text), rows,
    caption, details_title, details, details_caption}; rows as lists of text, header first."""
    return {"title": title(table).replace("**", ""),
            "rows": _grid(live_cache.starred(table.rows, table.winner)),
            "caption": caption(table, runs), "details_title": DETAILS_TITLE,
            "details": _grid(table.details), "details_caption": DETAILS_CAPTION}


def _grid(rows: list[dict]) -> list[list[str]]:
    columns = list(rows[0]) if rows else []
    return [columns] + [[str(row[column]) for column in columns] for row in rows]
