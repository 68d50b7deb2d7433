"""One widget per RunConfig field, with its label, help text and allowed range from the
field's metadata: the lab form's grid and the live panel's hot-change row draw the same
widgets."""

from __future__ import annotations

import streamlit as st

from divebatch.config import HOT_FIELDS, allowed_range, config_fields

LABELS = {"batch_size": "initial batch size B0", "max_batch_size": "max batch size B_max",
          "delta": "delta δ", "resize_every": "resize interval R (epochs)",
          "lr": "learning rate", "lr_scaling": "LR scaling rule", "schedule": "base LR schedule",
          "weight_decay": "weight decay", "lr_multiplier": "LR multiplier",
          "n_samples": "samples (n)", "dim": "input dimension", "name": "run name"}
FLOAT_STEPS = {"delta": 0.01, "lr": 0.01, "momentum": 0.05, "weight_decay": 1e-4,
               "noise": 0.05, "val_fraction": 0.05, "lr_multiplier": 0.1,
               "adabatch_lr_decay": 0.05, "progress_every": 0.5}


def label_of(name: str) -> str:
    """The label a field's widget shows."""
    return LABELS.get(name, name.replace("_", " "))


def field_widget(name: str, widget_key: str, *, options: tuple | None = None,
                 disabled: bool = False, format_func=str) -> None:
    """The widget for RunConfig field `name`, with its help text and allowed range."""
    f = next(f for f in config_fields() if f.name == name)
    meta, hot = f.metadata, name in HOT_FIELDS
    label = label_of(name) + (" (hot)" if hot else "")
    help_text = f"{meta['help']}. Allowed: {allowed_range(f)}." + \
        (" Hot: can change while the run is going." if hot else " Needs a new run.")
    common = dict(key=widget_key, help=help_text, disabled=disabled, persist_state="session")
    if options is not None or meta["choices"]:
        st.selectbox(label, options or meta["choices"], format_func=format_func, **common)
    elif f.type == "bool":
        st.checkbox(label, **common)
    elif f.type == "int":  # no min/max: a value out of range must reach validation's error
        st.number_input(label, step=1, **common)
    elif f.type == "float":
        st.number_input(label, step=FLOAT_STEPS.get(name, 0.01), format="%g", **common)
    else:
        st.text_input(label, max_chars=200, **common)

