"""DiveBatch Lab dashboard: the router. One line per page (app_pages/, a folder not named
pages/ so that Streamlit's legacy pages-folder router never runs a page without this file)."""

from pathlib import Path

import streamlit as st

from dashboard import remember_linked_runs
from dashboard.store import open_store, workers_message
from dashboard.instructor import apply_style, keep_in_address
from divebatch.runs import warm_pool

# The icon is a file here: a Material icon name makes the browser fetch it from Google.
st.set_page_config(page_title="DiveBatch Lab", layout="wide",
                   page_icon=str(Path(__file__).parent / "dashboard" / "favicon.png"))

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/learn.py", title="Learn", icon=":material/school:"),
    st.Page("app_pages/synthetic.py", title="Synthetic lab", icon=":material/show_chart:"),
    st.Page("app_pages/images.py", title="Image lab", icon=":material/image:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("app_pages/sweep.py", title="Sweep", icon=":material/grid_on:"),
    st.Page("app_pages/reproduce.py", title="Reproduce", icon=":material/science:"),
]
page = st.navigation(PAGES)

# Global widgets: instructor mode (?instructor=1 hides advanced controls) and the queue.
if "instructor" not in st.session_state:
    st.session_state.instructor = st.query_params.get("instructor") == "1"
st.sidebar.toggle("Instructor mode", key="instructor",
                  help="For a projector: larger type, only the preset, delta, B_max and R on "
                       "the lab form, charts in view after Start (or open the dashboard with "
                       "?instructor=1).")
keep_in_address()  # every page's address, so that a reload stays in the mode
apply_style()
store = open_store()
workers = workers_message(store)
warm_pool.keep_warm(store)  # a waiting worker makes the next Start immediate
st.sidebar.caption(workers)

remember_linked_runs(lambda run_id: store.get_run(run_id) is not None)  # before a lab
# form rewrites the address bar
page.run()
