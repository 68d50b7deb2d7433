"""Synthetic lab: toy problems that train in seconds on a CPU."""

import streamlit as st

from dashboard import ensure_router, form, live
from dashboard.common import open_store
from divebatch.presets import SYNTHETIC_PROBLEMS

ensure_router()

PREFIX = "syn"
IRRELEVANT = ("norm", "augment", "amp", "channels_last", "data_dir")  # image problems only

form.init_form(PREFIX, SYNTHETIC_PROBLEMS, default_preset="convex")

st.title("Synthetic lab")
st.markdown("Convex (least squares, logistic) and non-convex (sine with an MLP, a 4-class "
            "problem) problems that train in seconds on a CPU. Pick a preset or set the knobs, "
            "then start a run or race the four methods.")

form.preset_picker(PREFIX, SYNTHETIC_PROBLEMS)
config = form.config_form(PREFIX, SYNTHETIC_PROBLEMS, hidden=IRRELEVANT)
form.start_buttons(PREFIX, config, form.runnable_problem(config) if config else None)
form.show_the_code(PREFIX)

st.header("Live")
store = open_store()
candidates = [run for run in store.list_runs(limit=60)
              if run["config"].get("problem") in SYNTHETIC_PROBLEMS]
live.live_panel(PREFIX, live.run_picker(PREFIX, candidates))
