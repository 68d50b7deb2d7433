// The page's scroll to the charts after Start: a function of the request {id, start, anchor}
// that dashboard/instructor.py's scroll_to_charts calls in a script. It steers the line above
// the charts that names the paused runs keeping a queued run waiting (dashboard/store.py), else
// the verdict above them, else their legend, else the element with id `anchor`, to just under
// Streamlit's header, and keeps it there while the controls above appear: until it has stayed
// put for 3 s, for at most a minute, and never once the user has clicked, scrolled or typed
// since the request of the Start it follows came (the user decides what is in view: a setup
// they open stays in view). A request runs once in this window: a later page run that draws
// it again moves nothing. A request with `watch` (a page that opened on runs training) only
// starts counting the user's input for the start it names.
(request) => {
  const state = window.divebatchScroll ??= {served: new Set(), since: {}, input: -Infinity};
  if (!state.listening) {
    state.listening = true;
    for (const type of ["pointerdown", "wheel", "touchstart", "keydown"]) {
      document.addEventListener(type, () => { state.input = performance.now(); },
                                {capture: true, passive: true});
    }
  }
  if (state.served.has(request.id)) return;
  state.served.add(request.id);
  const since = state.since[request.start] ??= performance.now();
  if (request.watch) return;  // a page opened on runs training: input counts from now
  let tries = 0, still = 0;
  state.steering = (state.steering ?? 0) + 1;  // scrolls under way (the tests wait for none)
  const go = () => {
    if (state.input >= since) { state.steering--; return; }
    const drawn = document.querySelector(  // the first of them on the page
      "[class*=_queue_blocked], [class*=_verdict], [class*=_chart_legend]");
    const target = drawn || document.getElementById(request.anchor);
    if (target) {
      const header = document.querySelector("header");
      const margin = header ? header.getBoundingClientRect().bottom : 0;
      target.style.scrollMarginTop = margin + "px";
      const off = Math.abs(target.getBoundingClientRect().top - margin);
      if (off > 3) { target.scrollIntoView({block: "start"}); still = 0; }
      else if (drawn) { still++; }
    }
    if (still < 30 && tries++ < 600) setTimeout(go, 100); else state.steering--;
  };
  go();
}
