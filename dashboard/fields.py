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
INT_FIELDS = frozenset(f.name for f in config_fields() if f.type == "int")
FLOAT_STEPS = {"delta": 0.01, "lr": 0.01, "momentum": 0.05, "weight_decay": 1e-4,
               "noise": 0.05, "val_fraction": 0.05, "lr_multiplier": 0.1,
               "adabatch_lr_decay": 0.05, "progress_every": 0.5}


# Whole-number fields take Streamlit's float input without min or max: its int input refuses,
# in the browser, anything beyond +-(2**53 - 1) (its own bounds), so a huge number typed there
# never reached validation and Start ran the last good value. As a float, every number typed
# reaches validation's one-line error; 15 significant digits show every allowed int whole.
INT_FORMAT = "%.15g"


def field_value(name: str, value):
    """A widget's value as the RunConfig field takes it: a whole float of an int field as an
    int (1e20 too, which validation then refuses by name); anything else as it is."""
    if isinstance(value, float) and value.is_integer() and name in INT_FIELDS:
        return int(value)
    return value


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
    elif f.type == "int":  # a float input: see INT_FORMAT; field_value makes it an int again
        st.number_input(label, step=1.0, format=INT_FORMAT, **common)
    elif f.type == "float":
        st.number_input(label, step=FLOAT_STEPS.get(name, 0.01), format="%g", **common)
    else:
        st.text_input(label, max_chars=200, **common)

