// Growing a drawn plotly chart in place (prepended to growing_charts.js).
// Plotly redraws a whole chart for any change of its data (axes, tick labels, every trace),
// about 0.02 CPU-s per chart here. When a live chart's new points fall inside the axes it
// has drawn, only its traces' SVG elements change: `growInPlace` rewrites the `d` of each
// changed line and places each changed trace's markers from the trace's points, mapped to
// pixels by plotly's own axes, moves the x ends of shaded rectangles, and keeps the figure's
// data (`gd.data`) current, so any redraw plotly does itself (legend, resize) draws the same
// points. Anything else (fills, other line shapes, a point outside the axes, other layout
// changes) returns false and the caller redraws the chart with plotly.
// While runs train, `withRoom` gives the axes some room to grow into (autorange includes a
// little beyond the data), so most updates fit. An axis whose range the spec fixes keeps it
// (the batch-size chart's y: divebatch/report/batch_axis.py, whose proposals off that range
// sit on its edge): its points fit until a new spec brings another range, and then the
// changed layout redraws the chart.

const ROOM_X = 0.25;  // of the x span, beyond the last point
const ROOM_Y = 0.10;  // of the y span, above and below the data

function axisOf(layout, ref, letter) {  // "x" -> layout.xaxis, "x2" -> layout.xaxis2
  return layout[`${letter}axis${(ref || letter).slice(1)}`];
}

function growable(trace) {  // lines (straight or steps) alone, or markers alone
  const shape = (trace.line && trace.line.shape) || "linear";
  const lines = trace.mode === "lines" && (shape === "linear" || shape === "hv");
  return trace.visible !== false && (lines || trace.mode === "markers")
    && (!trace.fill || trace.fill === "none");
}

function inside(axis, values) {
  if (!axis || !axis.range || axis.type === "date" || axis.type === "category") return false;
  const [a, b] = axis.range.map(Number), low = Math.min(a, b), high = Math.max(a, b);
  return values.every((v) => v === null || v === undefined
    || (Number.isFinite(axis.c2l(v)) && axis.c2l(v) >= low && axis.c2l(v) <= high));
}

function linePath(xs, ys, xAxis, yAxis, shape, connectGaps) {
  const parts = [];
  let started = false;
  for (let i = 0; i < xs.length; i++) {
    if (xs[i] === null || ys[i] === null || xs[i] === undefined || ys[i] === undefined) {
      if (!connectGaps) started = false;
      continue;
    }
    const x = xAxis.c2p(xs[i]).toFixed(2), y = yAxis.c2p(ys[i]).toFixed(2);
    parts.push(!started ? `M${x},${y}` : shape === "hv" ? `H${x}V${y}` : `L${x},${y}`);
    started = true;
  }
  return parts.join("");
}

function tracesDrawn(gd) {  // trace index -> its group in plotly's SVG
  const groups = {};
  for (const group of gd.querySelectorAll(".scatterlayer .trace")) {
    const bound = group.__data__;
    if (bound && bound[0] && bound[0].trace) groups[bound[0].trace.index] = group;
  }
  return groups;
}

// A function that redraws the markers of `points` in `group`, or null where it cannot: the
// markers drawn so far are copied (their look), each bound to its point as plotly binds
// its own (a zoom moves them with the rest).
function markersPlan(group, points, xAxis, yAxis) {
  const layer = group.querySelector("g.points");
  const drawn = layer ? [...layer.querySelectorAll("path.point")] : [];
  if (!drawn.length) return null;
  return () => {
    let count = 0;
    points.x.forEach((x, i) => {
      const y = points.y[i];
      if (x === null || y === null || x === undefined || y === undefined) return;
      const marker = drawn[count] || layer.appendChild(drawn[0].cloneNode(true));
      marker.setAttribute("transform",
                          `translate(${xAxis.c2p(x).toFixed(2)},${yAxis.c2p(y).toFixed(2)})`);
      marker.__data__ = {x, y, i};
      count += 1;
    });
    drawn.slice(Math.max(count, 1)).forEach((marker) => marker.remove());
    if (!count) drawn[0].remove();
  };
}

// A line's newest points are drawn as a path of their own (its tail, at most TAIL_POINTS
// points): a new point then repaints the tail's few pixels, not the whole chart (most of a
// growing page's CPU was the software raster of whole charts). Past TAIL_POINTS, or when a
// point before the tail changed, plotly's own path takes every point that holds.
const TAIL_POINTS = 24;

function present(value) {
  return value !== null && value !== undefined;
}

function linePlan(line, points, from, xAxis, yAxis, trace, tails) {
  const shape = trace.line.shape || "linear", gaps = trace.connectgaps;
  const draw = (start, stop) => linePath(points.x.slice(start, stop), points.y.slice(start, stop),
                                         xAxis, yAxis, shape, gaps);
  const count = points.x.length, held = tails.get(line);
  let end = held ? held.end : null;  // plotly's path holds points 0..end, the tail end..
  const body = end === null || from <= end || count - 1 - end > TAIL_POINTS;
  if (body) {  // the last point that holds and is drawn (a missing one draws nothing)
    end = Math.min(from, count) - 1;
    while (end > 0 && !(present(points.x[end]) && present(points.y[end]))) end -= 1;
    end = Math.max(end, 0);
  }
  const bodyPath = body ? draw(0, end + 1) : null, tailPath = draw(end, count);
  return () => {
    let tail = held && held.tail;
    if (!tail) {
      tail = line.cloneNode(false);  // the line's stroke, width and dashes
      tail.setAttribute("class", "growing-tail");
      line.after(tail);
    }
    if (body) {
      line.setAttribute("d", bodyPath);
      tail.style.strokeDashoffset = `${line.getTotalLength()}px`;  // the dashes go on
    }
    tail.setAttribute("d", tailPath);
    tails.set(line, {end, tail});
  };
}

function tracePlan(gd, index, group, points, from, tails) {
  const trace = gd._fullData[index], layout = gd._fullLayout;
  if (!trace || !group || !growable(trace)) return null;
  const xAxis = axisOf(layout, trace.xaxis, "x"), yAxis = axisOf(layout, trace.yaxis, "y");
  if (!inside(xAxis, points.x) || !inside(yAxis, points.y)) return null;
  if (trace.mode === "markers") return markersPlan(group, points, xAxis, yAxis);
  const line = group.querySelector("path.js-line");
  return line && linePlan(line, points, from, xAxis, yAxis, trace, tails);
}

const RECT = /^M([-\d.e]+),([-\d.e]+)H([-\d.e]+)V([-\d.e]+)H([-\d.e]+)Z$/;

// A function that moves the x ends of the rectangles that changed (B_max shading growing
// with a capped run) in `layout` against those drawn, or null where it cannot.
function shapesPlan(gd, layout) {
  const before = gd.layout.shapes || [], after = layout.shapes || [];
  const xAxis = gd._fullLayout.xaxis, moves = [];
  for (let i = 0; i < after.length; i++) {
    const old = before[i], now = after[i];
    if (old.x0 === now.x0 && old.x1 === now.x1) continue;
    const path = gd.querySelector(`.shapelayer path[data-index="${i}"]`);
    const parts = path && RECT.exec(path.getAttribute("d"));
    if (now.type !== "rect" || now.xref !== "x" || !parts || !inside(xAxis, [now.x0, now.x1])) {
      return null;
    }
    const pixel = (v) => xAxis._offset + xAxis.c2p(v);
    if (Math.abs(pixel(old.x0) - Number(parts[1])) > 1) return null;  // another frame
    moves.push(() => {
      const [x0, x1] = [pixel(now.x0).toFixed(2), pixel(now.x1).toFixed(2)];
      path.setAttribute("d", `M${x0},${parts[2]}H${x1}V${parts[4]}H${x0}Z`);
      Object.assign(old, {x0: now.x0, x1: now.x1});
    });
  }
  return () => moves.forEach((move) => move());
}

// What may change between two versions of a growing chart's layout without a redraw: a
// fixed x range (the data's, plus room: see withRoom) and the shapes' x ends.
function layoutGrows(before, after) {
  const still = (layout) => JSON.stringify({...layout, xaxis: {...layout.xaxis, range: null},
    shapes: (layout.shapes || []).map((shape) => ({...shape, x0: null, x1: null}))});
  return (before.shapes || []).length === (after.shapes || []).length
    && still(before) === still(after);
}

// Redraw the traces in `changed` (index -> the first of its points that changed) as
// `traces` (arrays x, y, and customdata where a trace has it: its hover values) and the
// shapes as in `layout` (a version that layoutGrows from the drawn one) in plotly's SVG;
// `tails`: the chart's WeakMap of line tails, new after each plotly redraw. False, with
// nothing changed, where plotly has to redraw.
function growInPlace(gd, traces, changed, layout, tails) {
  if (!gd._fullData || !gd._fullLayout || !gd.data || gd.data.length !== traces.length) {
    return false;
  }
  const groups = tracesDrawn(gd);
  const plans = [...changed].map(([index, from]) => tracePlan(gd, index, groups[index],
                                                                traces[index], from, tails));
  plans.push(shapesPlan(gd, layout));
  if (plans.some((plan) => !plan)) return false;
  plans.forEach((plan) => plan());
  for (const index of changed.keys()) {
    gd.data[index].x = traces[index].x.slice();
    gd.data[index].y = traces[index].y.slice();
    if (traces[index].customdata) gd.data[index].customdata = traces[index].customdata.slice();
  }
  return true;
}

// `layout` with room to grow on each axis that plotly ranges itself (no range set).
function withRoom(layout, traces) {
  const roomy = {...layout};
  for (const [key, letter, room] of [["xaxis", "x", [0, ROOM_X]], ["yaxis", "y", [ROOM_Y, ROOM_Y]]]) {
    const axis = layout[key] || {};
    if (axis.range && axis.autorange === false && key === "xaxis") {  // a fixed range
      const [low, high] = axis.range;
      roomy[key] = {...axis, range: [low, high + ROOM_X * (high - low)]};
      continue;
    }
    if (axis.range || axis.autorange === false) continue;
    const log = axis.type === "log";
    const values = traces.flatMap((t) => t[letter]).filter((v) => v !== null && Number.isFinite(v)
      && (!log || v > 0)).map((v) => (log ? Math.log10(v) : v));
    if (values.length < 2) continue;
    const low = values.reduce((a, b) => Math.min(a, b));
    const high = values.reduce((a, b) => Math.max(a, b));
    const span = high - low;
    if (!(span > 0)) continue;
    const ends = [low - room[0] * span, high + room[1] * span].map((v) => (log ? 10 ** v : v));
    roomy[key] = {...axis, autorangeoptions: {...(axis.autorangeoptions || {}), include: ends}};
  }
  return roomy;
}
