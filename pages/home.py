"""Start page: what DiveBatch is and what each page is for."""

import streamlit as st

from dashboard import ensure_router

ensure_router()

PAGES = (  # (page file, title, icon, what it is for)
    ("pages/synthetic.py", "Synthetic lab", ":material/show_chart:",
     "Convex and non-convex toy problems (least squares, logistic, sine, 4 classes) that "
     "train in seconds on a CPU. Watch diversity, batch size, LR and loss live, change delta "
     "while a run goes, race the four methods."),
    ("pages/images.py", "Image lab", ":material/image:",
     "Digits, CIFAR-10/100 and Tiny-ImageNet with the paper's settings or scaled-down ones. "
     "Shows which datasets are present, how to add the others, and which device trains."),
    ("pages/runs.py", "Runs", ":material/table_rows:",
     "Every stored run with status, config, duration, accuracy and time to target. Overlay "
     "runs, stop, delete, export CSV / JSON."),
)

st.title("DiveBatch Lab")
st.markdown(
    "SGD whose batch size grows from a measured signal, the **gradient diversity** "
    "Δ = Σ‖gᵢ‖² / ‖Σgᵢ‖² (Chen, Wang, Sundaram 2025). Every R epochs DiveBatch sets "
    "B ← min(max(δ · n · Δ̂, B), B_max): a fraction δ of Yin's batch-size bound n·Δ.")

columns = st.columns(len(PAGES))
for column, (path, title, icon, purpose) in zip(columns, PAGES):
    with column.container(border=True, height="stretch"):
        st.page_link(path, label=f"**{title}**", icon=icon)
        st.caption(purpose)

st.subheader("How it works")
st.markdown(
    "- Runs train in background worker processes and are kept in a SQLite file: they go on "
    "if you reload, close the tab or restart the dashboard. At most one run per GPU (else "
    "one per CPU core but one) trains at a time; the others wait in a queue.\n"
    "- The charts refresh on their own while a run on them is active.\n"
    "- A lab page's address holds its whole setup, seed included: copy it to share a setup. "
    "`?instructor=1` hides the advanced controls for a classroom.\n"
    "- The command line shares the store: `python -m divebatch list`.")
