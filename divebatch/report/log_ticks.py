"""Labelled ticks for a log axis: at least two, each a whole number as a reader says it.

plotly's own ticks on a log axis either label one power of ten per decade (a curve from 0.02
to 0.6 then has one label, 10^-1) or, over a decade or two, label the values between powers
with a bare digit ("2", "5" above 1000 meaning 2000 and 5000). These ticks step through
1, 3 or 1, 2, 5 (or finer) times a power of ten, as coarse as still gives a few labels in the range,
and write every label out in full.

>>> log_ticks(0.02, 0.6)["ticktext"]
['0.03', '0.1', '0.3']
>>> log_ticks(0.03, 0.2)["ticktext"]
['0.05', '0.1', '0.2']
>>> log_ticks(800, 6000)["ticktext"]
['1000', '2000', '5000']
>>> log_ticks(1e-7, 1e-3)["ticktext"]
['10⁻⁷', '10⁻⁶', '10⁻⁵', '10⁻⁴', '10⁻³']
"""

from __future__ import annotations

import math

# the values between powers of ten worth a tick, coarsest first
MANTISSAS = ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9))
MIN_TICKS, MAX_TICKS = 3, 7
AXIS_PAD = 0.05  # of the range's decades, on each side
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def log_ticks(low: float, high: float, max_ticks: int = MAX_TICKS) -> dict:
    """plotly axis settings (tickmode "array", tickvals, ticktext) for a log axis showing
    `low` to `high` (> 0): the coarsest steps giving MIN_TICKS labels or more, powers of
    ten thinned to at most `max_ticks`; {} (plotly's own ticks) for an empty or invalid
    range, or one too narrow for two labels."""
    if not (0 < low <= high and math.isfinite(high)):
        return {}
    pad = 10 ** (AXIS_PAD * math.log10(high / low))  # plotly's autorange shows a bit more
    low, high = low / pad, high * pad
    values: list[float] = []
    for mantissas in MANTISSAS:
        values = _values(low, high, mantissas)
        if len(values) >= MIN_TICKS or mantissas == MANTISSAS[-1]:
            break
    if len(values) < 2:
        return {}
    if len(values) > max_ticks:  # only powers of ten over many decades: every k-th
        values = values[::math.ceil(len(values) / max_ticks)]
    powers = values[0] < 1e-3 or values[-1] >= 1e6  # then every label as one, alike
    return {"tickmode": "array", "tickvals": values,
            "ticktext": [tick_text(v, powers) for v in values]}


def _values(low: float, high: float, mantissas: tuple[int, ...]) -> list[float]:
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    candidates = (float(f"{m}e{power}") for power in range(first, last + 1) for m in mantissas)
    return [v for v in candidates if low <= v <= high]


def tick_text(value: float, powers: bool = False) -> str:
    """'0.05', '2000', '50k', or with `powers` (an axis reaching under 0.001 or to a
    million) '10⁻⁴', '2·10⁻⁴'."""
    if not powers:
        return f"{value:g}" if value < 1e4 else f"{value / 1e3:g}k"
    mantissa, power = f"{value:.0e}".split("e")
    ten = "10" + str(int(power)).translate(SUPERSCRIPT)
    return ten if mantissa == "1" else f"{mantissa}·{ten}"
