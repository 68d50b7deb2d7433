"""Paint an animation's frames (plotly specs, animation.Frame) with matplotlib, offline.

The specs are the dashboard's: this module maps plotly's trace and layout vocabulary (line
colour, dash, width in pixels, "hv" steps, markers, opacity, log axes, shaded spans, dotted
marks and their words) onto matplotlib, so a frame looks like the live charts. Every frame
uses the axis ranges of the finished race (the last frame's), so the lines grow into fixed
charts instead of rescaling.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, NullFormatter
from matplotlib.transforms import blended_transform_factory
from PIL import Image

from divebatch.report.run_labels import LINE_BREAK

WIDTH_PX, HEIGHT_PX, DPI = 1024, 640, 100  # 16:10; both sides multiples of 16 (H.264 blocks)
DASHES = {"solid": "-", "dash": (0, (5, 3)), "dot": (0, (1, 2)), "dashdot": "-.",
          "longdash": (0, (9, 3))}
MARKERS = {"triangle-up": "^", "triangle-down": "v"}
CHARTS_BOTTOM = 0.26     # figure fraction; the verdict sits below
CHART_TITLE_ROOM = 0.06  # figure fraction between the legend and the charts' frames
VERDICT_CHARS = 700      # a verdict this long fills the band under the charts at 9 pt


def shown(text: str) -> str:
    """Text as matplotlib draws it: a literal $, Δ̂ (whose combining hat the font lacks) as
    mathtext, and plotly's line break (a legend entry's) as a new line."""
    return text.replace("$", r"\$").replace("Δ̂", r"$\hat{\Delta}$").replace(LINE_BREAK, "\n")


def points(px: float) -> float:
    """plotly's pixels as matplotlib's points at DPI."""
    return px * 72.0 / DPI


class FrameImages:
    """The frames as RGB images, drawn one at a time while iterated; `last` is drawn first.

    The legend and the charts' frames (titles, axes, ticks, grid) are the same in every
    frame: they are drawn once, on the axis ranges of the finished race, and kept as a
    background; each frame restores it and draws only its own lines, marks, title and
    verdict (matplotlib's blitting): about 45 ms of CPU a frame here, where drawing the
    whole figure again cost about 270."""

    def __init__(self, race):
        self.race = race
        self.figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI,
                             facecolor="white")
        self.canvas = FigureCanvasAgg(self.figure)
        legend = _legend(self.figure, race.legend)
        legend_bottom = legend.get_window_extent(self.canvas.get_renderer()).y0 / HEIGHT_PX
        top = max(legend_bottom - CHART_TITLE_ROOM, CHARTS_BOTTOM + 0.3)  # a long legend
        self.axes = _chart_axes(self.figure, race.frames[-1].charts, top)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.last = self._draw(race.frames[-1])

    def __len__(self) -> int:
        return len(self.race.frames)

    def __iter__(self):
        for frame in self.race.frames[:-1]:
            yield self._draw(frame)
        yield self.last

    @property
    def size(self) -> tuple[int, int]:
        return self.last.size

    def _draw(self, frame) -> Image.Image:
        self.canvas.restore_region(self.background)
        figure = self.figure
        artists = [figure.text(0.01, 0.985, shown(frame.title), ha="left", va="top",
                               fontsize=13, fontweight="bold")]
        for name, spec in frame.charts.items():
            artists += _chart_data(self.axes[name], spec)
        artists += _footer(figure, frame.verdict, self.race.notes)
        for artist in artists:
            figure.draw_artist(artist)
            artist.remove()
        rgba = np.asarray(self.canvas.buffer_rgba())  # (H, W, 4)
        return Image.fromarray(rgba[..., :3].copy())


def _chart_axes(figure: Figure, charts: dict[str, dict], top: float) -> dict:
    """An Axes per chart, two by two below `top` (a figure fraction), titled and ranged as
    the finished race's charts."""
    rows = (len(charts) + 1) // 2
    grid = figure.add_gridspec(rows, 2, left=0.07, right=0.985, top=top,
                               bottom=CHARTS_BOTTOM, hspace=0.55, wspace=0.2)
    axes = {}
    for index, (name, spec) in enumerate(charts.items()):
        ax = axes[name] = figure.add_subplot(grid[index // 2, index % 2])
        _decorate(ax, spec["layout"])
        artists = _chart_data(ax, spec)
        limits = ax.get_xlim(), ax.get_ylim()  # autoscaled on the whole race ...
        for artist in artists:
            artist.remove()
        ax.set_xlim(limits[0])  # ... and kept for every frame
        ax.set_ylim(_fixed_range(spec["layout"]["yaxis"]) or limits[1])
        if limits[0][1] >= 1e4:  # 200k examples, as plotly writes them
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    return axes


def _fixed_range(axis: dict) -> list[float] | None:
    """A plotly axis's fixed range (the batch-size chart's: figures' batch_axis) as values."""
    if axis.get("autorange") is not False or not axis.get("range"):
        return None
    return [10 ** v for v in axis["range"]] if axis.get("type") == "log" else axis["range"]


def _legend(figure: Figure, spec: dict):
    return figure.legend(handles=[_handle(trace) for trace in spec["data"]], loc="upper left",
                         bbox_to_anchor=(0.005, 0.945), ncol=4, frameon=False, fontsize=8.5,
                         handlelength=3.0, columnspacing=1.5)


def _handle(trace: dict) -> Line2D:
    line = trace.get("line", {})
    markers = trace.get("mode") == "markers"
    return Line2D([], [], color=line.get("color"), alpha=trace.get("opacity", 1.0),
                  linestyle="none" if markers else DASHES.get(line.get("dash"), "-"),
                  linewidth=points(line.get("width", 2.0)),
                  marker=_marker(trace) if markers else None,
                  markersize=points(trace.get("marker", {}).get("size", 6)),
                  label=shown(trace.get("name", "")))


def _decorate(ax, layout: dict) -> None:
    """A plotly layout's titles and y scale on a matplotlib Axes."""
    ax.set_title(shown(layout["title"]["text"].split(" (")[0]), loc="left", fontsize=10.5)
    ax.set_xlabel(shown(layout["xaxis"]["title"]["text"]), fontsize=8.5)
    ax.set_ylabel(shown(layout["yaxis"]["title"]["text"]), fontsize=8.5)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    if layout["yaxis"].get("type") == "log":  # powers of ten alone, as plotly's dtick=1
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())


def _chart_data(ax, spec: dict) -> list:
    """A plotly spec's traces, shaded spans and marks (figures.SPECS) on the Axes; the new
    artists, spans first (they lie under the lines)."""
    layout = spec["layout"]
    artists = [_shape(ax, shape) for shape in layout.get("shapes", [])]
    artists += [line for trace in spec["data"] for line in _trace(ax, trace)]
    artists += [_annotation(ax, note) for note in layout.get("annotations", [])]
    return artists


def _trace(ax, trace: dict) -> list:
    x = np.asarray(trace["x"], dtype=float)
    y = np.asarray(trace["y"], dtype=float)
    kept = ~(np.isnan(x) | np.isnan(y))  # plotly's connectgaps: draw across missing points
    if not kept.any():
        return []
    line, mode = trace["line"], trace["mode"]
    return ax.plot(x[kept], y[kept], color=line["color"], alpha=trace.get("opacity", 1.0),
                   linestyle="none" if mode == "markers" else DASHES.get(line["dash"], "-"),
                   linewidth=points(line["width"]),
                   drawstyle="steps-post" if line.get("shape") == "hv" else "default",
                   marker=_marker(trace) if "markers" in mode else None,
                   markersize=points(trace["marker"]["size"]))


def _marker(trace: dict) -> str:
    """plotly's marker symbol as matplotlib's: a dot, or a proposal's triangle off the chart."""
    return MARKERS.get(trace.get("marker", {}).get("symbol"), "o")


def _shape(ax, shape: dict):
    if shape["type"] == "rect":  # the span where a batch is capped at B_max
        return ax.axvspan(shape["x0"], shape["x1"], color=shape["fillcolor"],
                          alpha=shape.get("opacity", 0.1), linewidth=0)
    line = shape["line"]  # a hot change
    return ax.axvline(shape["x0"], color=line["color"], linestyle=DASHES["dot"],
                      linewidth=points(line["width"]))


def _annotation(ax, note: dict):
    return ax.text(note["x"], note["y"], shown(note["text"]),
                   transform=blended_transform_factory(ax.transData, ax.transAxes),
                   ha=note.get("xanchor", "left"), va=note.get("yanchor", "bottom"),
                   color=note.get("font", {}).get("color", "#333333"), fontsize=7.5,
                   bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0}
                   if note.get("bgcolor") else None)


def _footer(figure: Figure, verdict: str, notes: list[str]) -> list:
    """The verdict (last frame), else the settings that never changed, under the charts."""
    if verdict:
        size = max(6.0, min(9.0, 9.0 * (VERDICT_CHARS / len(verdict)) ** 0.5))  # it fits
        return [figure.text(0.01, CHARTS_BOTTOM - 0.1, "Verdict: " + shown(verdict),
                            ha="left", va="top", fontsize=size, wrap=True)]
    if notes:
        return [figure.text(0.01, CHARTS_BOTTOM - 0.1, shown("\n".join(notes)), ha="left",
                            va="top", fontsize=8.5, color="#555555")]
    return []


def render(race) -> FrameImages:
    return FrameImages(race)
