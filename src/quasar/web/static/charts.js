// Line charts in plain SVG: one line per series over a time range, with a legend and the axis ends.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#bab0ac"];
  const W = 420, H = 160, L = 48, R = 8, T = 10, B = 22;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function label(seconds, span) {
    const d = new Date(seconds * 1000);
    if (span > 2 * 86400) return d.toLocaleDateString([], { month: "short", day: "numeric" });
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return span > 12 * 3600 ? d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time : time;
  }

  // series: [{name, points: [[time, value or null], ...]}]; format: value -> text
  function line(title, series, from, to, format) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.chart = title;
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    figure.appendChild(caption);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null);
    const top = Math.max(...values, 0) || 1;
    const x = (t) => L + ((t - from) / (to - from || 1)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    root.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    root.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    root.appendChild(svg("text", { x: L - 4, y: T + 8, "text-anchor": "end", class: "tick" }, format(top)));
    root.appendChild(svg("text", { x: L - 4, y: H - B, "text-anchor": "end", class: "tick" }, format(0)));
    root.appendChild(svg("text", { x: L, y: H - 6, class: "tick" }, label(from, to - from)));
    root.appendChild(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "tick" }, label(to, to - from)));
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      // One polyline per run of points with values: a null is a gap in the line, not a drop to 0.
      const runs = [[]];
      for (const p of s.points) {
        if (p[1] === null) runs.push([]);
        else runs[runs.length - 1].push(p);
      }
      for (const run of runs.filter((r) => r.length > 1)) {
        const d = run.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
        root.appendChild(svg("polyline", { points: d, fill: "none", stroke: color, "stroke-width": 1.5 }));
      }
      const pts = s.points.filter((p) => p[1] !== null);
      for (const p of pts.length <= 60 ? pts : runs.filter((r) => r.length === 1).flat()) {
        root.appendChild(svg("circle", { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 2.5, fill: color }));
      }
    });
    if (!values.length) root.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" }, "no requests"));
    figure.appendChild(root);
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((s, i) => {
      const item = document.createElement("span");
      item.style.setProperty("--c", COLORS[i % COLORS.length]);
      item.textContent = s.name;
      legend.appendChild(item);
    });
    figure.appendChild(legend);
    return figure;
  }

  return { line };
})();
