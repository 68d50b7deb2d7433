"""The dashboard's server: app.py (the Streamlit app) with the read-only routes that the
growing live charts poll (dashboard/live_route.py). `streamlit run server.py` serves both;
`streamlit run app.py` serves the app alone, whose live panel then redraws Streamlit's own
charts every second instead (see docs/user-guide.md)."""

import streamlit as st

from dashboard import live_route

app = st.App("app.py", routes=live_route.serve())
