"""Start page: what DiveBatch is and what each page is for."""

import streamlit as st

from dashboard.instructor import instructor_mode


PAGES = (  # (page file, title, icon, what it is for), in the sidebar's order
    ("app_pages/learn.py", "Learn", ":material/school:",
     "Gradient diversity on a problem small enough to see: per-sample gradients, their "
     "sum, and how DiveBatch turns the ratio into a batch size."),
    ("app_pages/synthetic.py", "Synthetic lab", ":material/show_chart:",
     "Convex and non-convex toy problems (least squares, logistic, sine, 4 classes) that "
     "train in seconds on a CPU. Watch diversity, batch size, LR and loss live, change delta "
     "while a run goes, race the four methods."),
    ("app_pages/images.py", "Image lab", ":material/image:",
     "Digits, CIFAR-10/100 and Tiny-ImageNet with the paper's settings or scaled-down ones. "
     "Shows which datasets are present, how to add the others, and which device trains."),
    ("app_pages/runs.py", "Runs", ":material/table_rows:",
     "Every stored run with status, config, duration, accuracy and time to target. Overlay "
     "runs, stop, resume, delete, export CSV / JSON."),
    ("app_pages/sweep.py", "Sweep", ":material/grid_on:",
     "A grid over delta, B_max and R (and seeds), each cell compared with fixed-batch SGD."),
    ("app_pages/reproduce.py", "Reproduce", ":material/science:",
     "The paper's comparison at this machine's scale, beside the published numbers."),
)
CARDS_PER_ROW = 3
FOR_THE_CLASS = ("app_pages/learn.py", "app_pages/synthetic.py")  # the cards in instructor mode

st.title("DiveBatch Lab")
st.markdown(
    "SGD whose batch size grows from a measured signal, the **gradient diversity** "
    "Δ = Σ‖gᵢ‖² / ‖Σgᵢ‖² (Chen, Wang, Sundaram 2025). Every R epochs DiveBatch sets "
    "B ← min(max(δ · n · Δ̂, B), B_max): a fraction δ of Yin's batch-size bound n·Δ.")

cards = [page for page in PAGES if page[0] in FOR_THE_CLASS] if instructor_mode() else PAGES
per_row = min(CARDS_PER_ROW, len(cards))  # instructor mode's two cards fill the width
for start in range(0, len(cards), per_row):
    row = cards[start:start + per_row]
    for column, (path, title, icon, purpose) in zip(st.columns(per_row), row):
        with column.container(border=True, height="stretch"):
            st.page_link(path, label=f"**{title}**", icon=icon)
            st.caption(purpose)

if instructor_mode():
    st.stop()  # the class needs the two cards, not the plumbing

st.subheader("How it works")
st.markdown(
    "- Runs train in background worker processes and are kept in a SQLite file: they go on "
    "if you reload, close the tab or restart the dashboard. At most one run per GPU (else "
    "one per CPU core but one) trains at a time; the others wait in a queue. A warm worker "
    "that has already loaded PyTorch waits for the next run, so Start begins at once.\n"
    "- The charts refresh on their own while a run on them is active.\n"
    "- A lab page's address holds its whole setup, seed included: copy it to share a setup. "
    "`?instructor=1` (or the sidebar toggle) is for a projector: larger type, only the "
    "preset, delta, B_max and R, and the charts in view after Start.\n"
    "- The command line shares the store: `python -m divebatch list`.")
