// The live panel's charts, grown in the page (a Streamlit v2 component: dashboard/live.py
// mounts it, dashboard/live_route.py answers its requests, dashboard/growing.py says what a
// page holding one version of the charts needs to hold the next).
// Once mounted it asks the server itself every `every` s for the points after those it has,
// the progress lines, the verdict and the time-to-target table, and draws the new points
// into the charts in place where they fit (growing_lines.js, prepended to this file), else
// with plotly; so the page never reruns while runs only grow. It asks Streamlit for a rerun
// when a run's status changes (the controls above the charts change with it).
// Its elements carry the classes and test ids of Streamlit's own (st-key-<prefix>_chart_<name>
// on each chart's cell, stCaptionContainer on the "Last update" line): the guided tour's
// highlight, the stale-charts banner, the tests and the benchmarks find the charts either way.
"use strict";

function loadPlotly(route) {  // the plotly package's plotly.js, once per page
  if (!window.divebatchPlotly) {
    window.divebatchPlotly = window.Plotly ? Promise.resolve(window.Plotly)
      : new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = `${route}/plotly.min.js`;
        script.onload = () => resolve(window.Plotly);
        script.onerror = () => {
          window.divebatchPlotly = null;
          reject(new Error("plotly.js did not load"));
        };
        document.head.append(script);
      });
  }
  return window.divebatchPlotly;
}

function setText(node, text) {  // shown only with some text; untouched when unchanged
  if (node.textContent !== text) node.textContent = text;
  node.style.display = text ? "" : "none";
}

function element(tag, className, parent) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (parent) parent.append(made);
  return made;
}

// Streamlit's plotly theme, as its own charts on this page carry it (the preload chart).
function themeTemplate(prefix) {
  const chart = document.querySelector(`.st-key-${prefix}_chart_preload .js-plotly-plot`);
  return chart && chart.layout && chart.layout.template || null;
}

class GrowingCharts {
  constructor(parent, data, rerun) {
    this.data = data;
    this.rerun = rerun;
    this.charts = {};  // name -> {cell, div, caption, traces, layout, config, dirty, drawn}
    this.have = null;
    this.stopped = false;
    this.root = element("div", "growing-charts", parent);
    this.progress = element("div", "growing-progress", this.root);
    this.verdict = element("div", "growing-verdict", this.root);  // then st-key-..._verdict
    this.legend = element("div", "growing-legend", this.root);
    this.notes = element("div", "growing-caption", this.root);
    this.grid = element("div", "growing-grid", this.root);
    this.line = element("div", "growing-caption", this.root);
    this.line.setAttribute("data-testid", "stCaptionContainer");
    this.table = element("div", `growing-table st-key-${data.prefix}_table`, this.root);
    this.visible = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const chart = entry.target.chart;
        chart.inView = entry.isIntersecting;
        if (chart.inView && chart.dirty) this.draw(chart);
      }
    }, {rootMargin: "200px"});
    window.growingStats = window.growingStats
      || {whole: 0, grown: 0, drawn: 0, inPlace: 0, redrawn: 0, fetched: 0};
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.visible.disconnect();
    for (const chart of Object.values(this.charts)) window.Plotly && Plotly.purge(chart.div);
    this.root.remove();
  }

  url() {
    const query = new URLSearchParams({runs: this.data.runs.join(","),
                                       options: JSON.stringify(this.data.options),
                                       viewer: this.data.viewer, every: this.every || ""});
    if (this.have) query.set("have", this.have);
    return `${this.data.route}?${query}`;
  }

  async poll() {
    if (this.stopped) return;
    const started = performance.now();
    let next = 2.0;
    try {
      const response = await fetch(this.url(), {cache: "no-store"});
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      if (this.stopped) return;
      window.growingStats.fetched += 1;
      await this.apply(answer);
      next = this.every;
    } catch (error) {
      console.error("growing charts:", error);  // the stale banner tells the viewer
    }
    if (next && !this.stopped && !this.held) {  // held: a test asks for each update
      const wait = Math.max(0, next * 1000 - (performance.now() - started));
      this.timer = setTimeout(() => this.poll(), wait);
    }
  }

  async apply(answer) {
    const state = answer.state;
    this.live = !!state.every;  // while runs train, the axes get room to grow into
    if (answer.charts) await this.applyCharts(answer.charts);
    this.showState(state);
    const changed = Object.keys(state.statuses).length !== Object.keys(this.data.statuses).length
      || Object.entries(state.statuses).some(([id, status]) => this.data.statuses[id] !== status);
    this.every = changed ? null : state.every;
    if (changed) this.rerun();  // a run started, ended or vanished: the page redraws
  }

  async applyCharts(message) {
    if (message.base !== null && message.base !== this.have) {
      this.have = null;  // this page holds another version: everything comes next time
      return;
    }
    const Plotly = await loadPlotly(this.data.route);
    for (const name of Object.keys(this.charts)) {
      if (!message.order.includes(name)) this.remove(name);
    }
    for (const name of message.order) {
      const entry = message.figures[name];
      if (!entry) continue;
      if (entry.full) { window.growingStats.whole += 1; this.replace(name, entry.full); }
      else { window.growingStats.grown += 1; this.extend(this.charts[name], entry); }
    }
    const cells = message.order.filter((name) => name !== "legend")
      .map((name) => this.charts[name].cell);
    if (cells.some((cell, i) => this.grid.children[i] !== cell)
        || this.grid.children.length !== cells.length) {
      this.grid.replaceChildren(...cells);  // moving a chart lays out and paints it anew
    }
    setText(this.notes, message.notes.join(" "));
    this.have = message.serial;
    this.root.dataset.serial = message.serial;
    await Promise.all(Object.values(this.charts).filter((c) => c.dirty && c.inView !== false)
      .map((chart) => this.draw(chart, Plotly)));
  }

  remove(name) {
    const chart = this.charts[name];
    this.visible.unobserve(chart.cell);
    window.Plotly.purge(chart.div);
    chart.cell.remove();
    delete this.charts[name];
  }

  replace(name, full) {
    let chart = this.charts[name];
    if (!chart) {
      const cell = element("div", `growing-cell st-key-${this.data.prefix}_chart_${name}`);
      cell.setAttribute("data-testid", "stPlotlyChart");
      cell.dataset.name = name;
      chart = this.charts[name] = {cell, div: element("div", "", cell),
                                   caption: element("div", "growing-caption", cell)};
      cell.chart = chart;
      cell.addEventListener("mouseenter", () => this.catchUp(chart));  // before a hover or zoom
      (name === "legend" ? this.legend : this.grid).append(cell);
      this.visible.observe(cell);
    }
    Object.assign(chart, {traces: full.data, layout: full.layout, config: full.config,
                          dirty: "react"});
    setText(chart.caption, full.caption || "");
  }

  extend(chart, entry) {  // the points after the first `keep` of each trace are new
    chart.changed = chart.changed || new Map();  // trace index -> its first changed point
    entry.traces.forEach(([keep, xs, ys, cs], i) => {  // cs: the trace's customdata, if any
      const trace = chart.traces[i];
      if (keep === trace.x.length && !xs.length) return;
      trace.x = trace.x.slice(0, keep).concat(xs);
      trace.y = trace.y.slice(0, keep).concat(ys);
      if (cs) trace.customdata = (trace.customdata || []).slice(0, keep).concat(cs);
      chart.changed.set(i, Math.min(keep, chart.changed.get(i) ?? keep));
    });
    if (entry.layout && !layoutGrows(chart.layout, entry.layout)) chart.dirty = "react";
    if (entry.layout) chart.layout = entry.layout;
    chart.dirty = chart.dirty || "grow";
  }

  draw(chart, Plotly = window.Plotly) {  // only the traces when the new points fit the axes
    const how = chart.dirty, changed = chart.changed || new Map();
    chart.dirty = null;
    chart.changed = null;
    window.growingStats.drawn += 1;
    chart.tails = chart.tails || new WeakMap();
    if (how === "grow" && growInPlace(chart.div, chart.traces, changed, chart.layout,
                                      chart.tails)) {
      window.growingStats.inPlace += 1;  // plotly's hover data: brought up to date when the
      chart.stale = chart.stale || changed.size > 0;  // pointer comes
      return null;
    }
    chart.div.querySelectorAll(".growing-tail").forEach((tail) => tail.remove());
    chart.tails = new WeakMap();
    window.growingStats.redrawn += 1;
    chart.stale = false;
    this.template = this.template || themeTemplate(this.data.prefix);
    const own = chart.layout.template && chart.layout.template.layout || {};
    const themed = this.template ? {...own, ...chart.layout, template: this.template}
      : chart.layout;
    const layout = this.live ? withRoom(themed, chart.traces) : themed;
    const copies = chart.traces.map((t) => ({...t, x: t.x.slice(), y: t.y.slice(),
      ...(t.customdata && {customdata: t.customdata.slice()})}));
    return Plotly.react(chart.div, copies, layout, {responsive: true, ...chart.config})
      .then(() => {
        if (chart.listening) return;  // a resize redraws plotly's own data: the lines grown
        chart.listening = true;       // in place since then too
        chart.div.on("plotly_relayout", () => this.catchUp(chart));
      });
  }

  catchUp(chart) {  // plotly's own data for the lines grown in place (hover, zoom, resize)
    if (chart.stale || chart.dirty) {  // pending points too: plotly has just drawn old ones
      chart.dirty = "react";
      this.draw(chart);
    }
  }

  showProgress(lines) {  // one row per running run: its text and bar, changed in place
    while (this.progress.children.length > lines.length) this.progress.lastChild.remove();
    while (this.progress.children.length < lines.length) {
      const row = element("div", "growing-progress-row", this.progress);
      element("div", "growing-progress-text", row);
      element("div", "growing-progress-done", element("div", "growing-progress-bar", row));
    }
    lines.forEach(([fraction, text], i) => {
      const [label, bar] = this.progress.children[i].children;
      if (label.textContent !== text) label.textContent = text;
      bar.firstChild.style.width = `${100 * fraction}%`;
    });
  }

  showVerdict(verdict, lead) {  // on a projector its lead, the whole verdict on demand
    const shown = this.data.projector ? lead : verdict;
    this.verdict.replaceChildren();
    if (verdict) {
      element("strong", "", this.verdict).textContent = "Verdict:";
      this.verdict.append(` ${shown}`);
      if (shown !== verdict) {
        const whole = element("details", "growing-table-details", this.verdict);
        element("summary", "", whole).textContent = "The whole verdict";
        element("div", "", whole).textContent = verdict;
      }
    }
    this.verdict.style.display = verdict ? "" : "none";  // the instructor's scroll
    this.verdict.classList.toggle(`st-key-${this.data.prefix}_verdict`, !!verdict);
  }

  showState(state) {  // the page's layout changes only where the text does
    const progress = JSON.stringify(state.progress);
    if (progress !== this.shownProgress) {
      this.shownProgress = progress;
      this.showProgress(state.progress);
    }
    const verdict = state.verdict || "";
    if (verdict !== this.shownVerdict) {
      this.shownVerdict = verdict;
      this.showVerdict(verdict, state.verdict_lead || verdict);
    }
    // On a projector, while runs train, the verdict goes under the charts: above them it
    // pushed the lower row below a 1280x720 screen. Once they end it leads again.
    const after = this.data.projector && state.every ? this.line : this.legend;
    if (this.verdict.nextSibling !== after) this.root.insertBefore(this.verdict, after);
    const table = JSON.stringify(state.table || null);
    if (table !== this.shownTable) {
      this.shownTable = table;
      showTable(this.table, state.table);
    }
    const now = new Date();
    const stamp = now.toTimeString().slice(0, 8) + `.${String(now.getMilliseconds()).padStart(3, "0")}`;
    this.line.textContent = `Last update ${stamp} (took ${state.took.toFixed(2)} s, `
      + `${state.cpu.toFixed(3)} CPU-s) · ` + (state.every
        ? `refreshing every ${state.every} s while a run is active`
        : "idle: no run on the charts is active");
  }
}

function gridTable(rows) {  // [header, ...rows] of text
  const table = element("table", "growing-table-grid");
  rows.forEach((cells, index) => {
    const row = element("tr", "", table);
    for (const text of cells) element(index ? "td" : "th", "", row).textContent = text;
  });
  return table;
}

// The time-to-target table (dashboard/target_view.py's parts), or nothing; the "All columns"
// section stays open or closed as the viewer left it.
function showTable(box, parts) {
  const open = !!box.querySelector("details[open]");
  box.replaceChildren();
  box.style.display = parts ? "" : "none";
  if (!parts) return;
  element("p", "growing-table-title", box).textContent = parts.title;
  box.append(gridTable(parts.rows));
  element("div", "growing-caption", box).textContent = parts.caption;
  const details = element("details", "growing-table-details", box);
  details.open = open;
  element("summary", "", details).textContent = parts.details_title;
  details.append(gridTable(parts.details));
  element("div", "growing-caption", details).textContent = parts.details_caption;
}

export default function (component) {
  const {data, parentElement, setTriggerValue} = component;
  const signature = JSON.stringify(data);
  const current = parentElement.growingCharts;
  if (current && current.signature === signature && !current.stopped) return;
  if (current) current.stop();
  const charts = new GrowingCharts(parentElement, data,
                                   () => setTriggerValue("changed", Date.now()));
  charts.signature = signature;
  parentElement.growingCharts = charts;
  loadPlotly(data.route);
  charts.poll();
}
