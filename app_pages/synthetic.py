"""Synthetic lab: toy problems that train in seconds on a CPU."""

import streamlit as st

from dashboard import form, lab, tour
from divebatch.presets import SYNTHETIC_PROBLEMS


PREFIX = "syn"
IRRELEVANT = ("norm", "augment", "amp", "channels_last", "data_dir")  # image problems only

form.init_form(PREFIX, SYNTHETIC_PROBLEMS, default_preset="convex")

st.title("Synthetic lab")
st.markdown("Convex (least squares, logistic) and non-convex (sine with an MLP, a 4-class "
            "problem) problems that train in seconds on a CPU. Pick a preset or set the knobs, "
            "then start a run or race the four methods.")

tour.tour_panel(PREFIX)  # before the run picker: the toured run goes on the charts
lab.form_and_live_panel(PREFIX, SYNTHETIC_PROBLEMS, hidden=IRRELEVANT)
tour.tour_figures(PREFIX)  # the critical-batch chart, at the tour's step that reads it
