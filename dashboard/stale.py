"""'Last update N s ago' in the browser when the live charts stop refreshing.

The server cannot say that it has gone quiet, so the browser keeps the time itself: a script
watches the live panel's "Last update ..." line and, when it has not changed for 2.5 refresh
intervals (at least 3 s) while it says "refreshing every ...", shows a banner with the age,
counted on the browser's own clock (no clock shared with the server is needed).
"""

from __future__ import annotations

import streamlit as st

WATCH_JS = """
<script>
(function () {
  if (window.divebatchStaleWatch) { return; }
  window.divebatchStaleWatch = true;
  const banner = document.createElement("div");
  banner.id = "divebatch-stale";
  banner.setAttribute("role", "status");
  banner.style.cssText = "position:fixed;top:4rem;right:1.5rem;z-index:999990;display:none;"
    + "padding:.6rem 1rem;border-radius:.5rem;background:#fff3cd;color:#5c4500;"
    + "border:1px solid #e0b400;font:15px sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.2)";
  document.body.appendChild(banner);
  let seen = null, changedAt = Date.now();
  setInterval(function () {
    const note = [...document.querySelectorAll("[data-testid=stCaptionContainer]")]
      .map(function (e) { return e.textContent; })
      .find(function (t) { return t.startsWith("Last update"); });
    const now = Date.now();
    if (note !== seen) { seen = note; changedAt = now; }
    const every = note && /refreshing every ([\\d.]+) s/.exec(note);
    const age = (now - changedAt) / 1000;
    if (every && age > Math.max(3, 2.5 * parseFloat(every[1]))) {
      banner.textContent = "Last update " + Math.round(age) + " s ago: the charts are not "
        + "live (the server is busy or the connection dropped).";
      banner.style.display = "block";
    } else {
      banner.style.display = "none";
    }
  }, 500);
})();
</script>
"""


def watch() -> None:
    """Install the watcher once per browser tab (the script guards against twins)."""
    st.sidebar.html(WATCH_JS, unsafe_allow_javascript=True)
