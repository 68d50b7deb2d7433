"""One colour and one dash per method, the same on every chart of every page.

DiveBatch and AdaBatch differ in both hue (blue, orange) and dash (solid, dashed), so they
stay apart in greyscale and for colour-blind readers. A second run of the same method on one
chart gets the next shade of its method's colour, keeping the method's dash.

>>> style_of({"method": "divebatch"})
('#1f77b4', 'solid')
>>> styles_for([{"method": "adabatch"}, {"method": "adabatch"}])
[('#ff7f0e', 'dash'), ('#a64d00', 'dash')]
"""

from __future__ import annotations

from divebatch.presets import variant_of

# method variant (presets.VARIANTS; reproduce adds "_linear") -> (shades, dash)
METHOD_STYLES = {
    "divebatch": (("#1f77b4", "#0b3d6b", "#6baed6"), "solid"),
    "adabatch": (("#ff7f0e", "#a64d00", "#fdae6b"), "dash"),
    "sgd_small": (("#2ca02c", "#145214", "#74c476"), "dot"),
    "sgd_large": (("#d62728", "#7f1416", "#fb6a4a"), "dashdot"),
}
OTHER = (("#7f7f7f", "#3f3f3f", "#bdbdbd"), "longdash")


def _style(variant: str, repeat: int) -> tuple[str, str]:
    shades, dash = METHOD_STYLES.get(variant.removesuffix("_linear"), OTHER)
    shade = repeat + (1 if variant.endswith("_linear") else 0)
    return shades[shade % len(shades)], dash


def style_of(config: dict) -> tuple[str, str]:
    """(colour, dash) of a run's method; config is a run's config dict."""
    return _style(variant_of(config), 0)


def style_of_variant(variant: str, repeat: int = 0) -> tuple[str, str]:
    """(colour, dash) of a method variant key ("divebatch", "sgd_large_linear", ...); the
    `repeat`-th other run of that method gets the next shade."""
    return _style(variant, repeat)


def styles_for(configs: list[dict]) -> list[tuple[str, str]]:
    """(colour, dash) per config, repeats of a method in the next shades."""
    seen: dict[str, int] = {}
    out = []
    for config in configs:
        variant = variant_of(config)
        out.append(_style(variant, seen.get(variant, 0)))
        seen[variant] = seen.get(variant, 0) + 1
    return out
