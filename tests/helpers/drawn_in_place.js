// For tests/dashboard/test_e2e_growing.py: each chart that the page grew in place against
// plotly's own drawing of the same figure on the same axes. Called with the page's
// GrowingCharts; answers [[name, vertices checked, vertices off the other drawing's stroke,
// markers' positions, plotly's, shapes' bounding boxes, plotly's], ...].
async (charts) => {
  const svg = 'http://www.w3.org/2000/svg';
  const vertices = (d) => { const out = []; let x = 0, y = 0;
    for (const [, c, args] of d.matchAll(/([MLHV])([^MLHVZ]*)/g)) {
      const v = args.split(/[ ,]+/).filter(Boolean).map(Number);
      if (c === 'H') x = v[0]; else if (c === 'V') y = v[0]; else [x, y] = v;
      out.push([x, y]); }
    return out; };
  const offStroke = (group, paths, points) => {
    const probes = paths.filter(Boolean).map((d) => {
      const p = document.createElementNS(svg, 'path');
      p.setAttribute('d', d);
      p.setAttribute('style', 'stroke-width:3px;stroke-linecap:round;stroke-dasharray:none;fill:none');
      group.append(p);
      return p;
    });
    const off = points.filter(([x, y]) => !probes.some((p) => p.isPointInStroke(new DOMPoint(x, y))));
    probes.forEach((p) => p.remove());
    return off.length; };
  const lines = (gd) => [...gd.querySelectorAll('.scatterlayer .trace')].map((g) =>
    [...g.querySelectorAll('path.js-line, path.growing-tail')].map((p) => p.getAttribute('d')));
  const markers = (gd) => [...gd.querySelectorAll('.scatterlayer .trace path.point')].map(
    (p) => p.getAttribute('transform').match(/[-\d.]+/g).map(Number));
  const shapes = (gd) => [...gd.querySelectorAll('.shapelayer path')].map((p) => {
    const b = p.getBBox(); return [b.x, b.y, b.width, b.height]; });
  const out = [];
  for (const [name, chart] of Object.entries(charts.charts)) {
    if (!chart.stale) continue;
    const gd = chart.div, layout = {...gd.layout};
    const mine = [lines(gd), markers(gd), shapes(gd)];
    gd.querySelectorAll('.growing-tail').forEach((tail) => tail.remove());
    chart.tails = new WeakMap();
    for (const axis of ['xaxis', 'yaxis']) {
      layout[axis] = {...layout[axis], range: gd._fullLayout[axis].range.slice(), autorange: false};
    }
    await Plotly.react(gd, gd.data.map((t) => ({...t, x: t.x.slice(), y: t.y.slice()})), layout);
    chart.stale = false;
    const groups = [...gd.querySelectorAll('.scatterlayer .trace')], theirs = lines(gd);
    let checked = 0, off = 0;
    groups.forEach((group, i) => {
      const ours = mine[0][i] || [], plotlys = theirs[i] || [];
      if (!plotlys.length || !plotlys[0]) return;
      const ourPoints = ours.filter(Boolean).flatMap(vertices), theirPoints = vertices(plotlys[0]);
      checked += ourPoints.length + theirPoints.length;
      off += offStroke(group, plotlys, ourPoints) + offStroke(group, ours, theirPoints);
    });
    out.push([name, checked, off, mine[1], markers(gd), mine[2], shapes(gd)]);
  }
  return out; }
