/* flowopt plots: draws the figure descriptions of flowopt/ui/figures.py as SVG.
 *
 * Used by `flowopt ui` and inlined into `flowopt report` pages, so both draw the same.
 * Plain DOM calls only: every string from the store goes through textContent or an
 * attribute, never through innerHTML. Interactions: hover shows the nearest point,
 * clicking a legend entry hides or shows its series. Each drawn figure is kept in
 * window.flowoptPlots[id] (the data it drew), which tests read.
 */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const W = 460, H = 260, M = { l: 58, r: 12, t: 26, b: 38 };
  window.flowoptPlots = window.flowoptPlots || {};

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, content, attrs) {
    const t = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    t.textContent = content;
    return t;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(2) : String(+v.toPrecision(4));
  }
  function finite(v) { return typeof v === "number" && isFinite(v); }

  function scale(values, log, lo, hi) {
    let xs = values.filter(finite);
    if (log) xs = xs.filter(v => v > 0).map(Math.log10);
    let min = xs.length ? Math.min.apply(null, xs) : 0, max = xs.length ? Math.max.apply(null, xs) : 1;
    if (min === max) { min -= 0.5; max += 0.5; }
    const pad = (max - min) * 0.04; min -= pad; max += pad;
    const f = v => {
      if (!finite(v) || (log && v <= 0)) return null;
      const u = log ? Math.log10(v) : v;
      return lo + (u - min) / (max - min) * (hi - lo);
    };
    f.ticks = function (n) {
      const out = [];
      if (log) {
        for (let e = Math.ceil(min); e <= Math.floor(max); e++) out.push(Math.pow(10, e));
        if (out.length >= 2) return out;
      }
      const a = log ? Math.pow(10, min) : min, b = log ? Math.pow(10, max) : max;
      const step = niceStep((b - a) / n);
      for (let v = Math.ceil(a / step) * step; v <= b; v += step) out.push(+v.toPrecision(12));
      return out;
    };
    return f;
  }
  function niceStep(raw) {
    const e = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    const m = raw / e;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * e;  // the nearest of 1, 2, 5, 10
  }

  function legend(container, spec, svg) {
    const box = document.createElement("div");
    box.className = "legend";
    (spec.series || []).forEach((s, i) => {
      const item = document.createElement("span");
      item.className = "legend-item";
      const swatch = document.createElement("i");
      swatch.style.background = COLOURS[i % COLOURS.length];
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      item.addEventListener("click", () => {
        const hidden = item.classList.toggle("off");
        svg.querySelectorAll('[data-series="' + i + '"]').forEach(n => {
          n.style.display = hidden ? "none" : "";
        });
      });
      box.appendChild(item);
    });
    container.appendChild(box);
  }

  function axes(svg, spec, sx, sy) {
    const g = el("g", { class: "axes" }, svg);
    el("line", { x1: M.l, y1: H - M.b, x2: W - M.r, y2: H - M.b }, g);
    el("line", { x1: M.l, y1: M.t, x2: M.l, y2: H - M.b }, g);
    const cats = spec.x && spec.x.categories;
    if (cats) {
      cats.forEach((c, i) => { const x = sx(i); text(g, x, H - M.b + 14, c, { "text-anchor": "middle" }); });
    } else {
      sx.ticks(5).forEach(v => {
        const x = sx(v); if (x === null) return;
        el("line", { x1: x, y1: H - M.b, x2: x, y2: H - M.b + 4 }, g);
        text(g, x, H - M.b + 15, fmt(v), { "text-anchor": "middle" });
      });
    }
    sy.ticks(5).forEach(v => {
      const y = sy(v); if (y === null) return;
      el("line", { x1: M.l - 4, y1: y, x2: W - M.r, y2: y, class: "grid" }, g);
      text(g, M.l - 6, y + 4, fmt(v), { "text-anchor": "end" });
    });
    text(g, (M.l + W - M.r) / 2, H - 4, (spec.x && spec.x.label) || "", { "text-anchor": "middle", class: "label" });
    text(g, 12, (M.t + H - M.b) / 2, (spec.y && spec.y.label) || "",
      { "text-anchor": "middle", class: "label", transform: "rotate(-90 12 " + (M.t + H - M.b) / 2 + ")" });
  }

  function xy(container, spec) {
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "plot", role: "img" });
    const allX = [], allY = [];
    (spec.series || []).forEach(s => { allX.push.apply(allX, s.x); allY.push.apply(allY, s.y); });
    (spec.vlines || []).forEach(v => allX.push(v.x));
    (spec.arrows || []).forEach(a => { allX.push(a.x0, a.x1); allY.push(a.y0, a.y1); });
    const bars = spec.type === "bar" || (spec.series || []).some(s => s.mode === "bar");
    if (bars) {  // half a bar of room at each end
      allY.push(0);
      const xs = allX.filter(finite);
      if (xs.length) allX.push(Math.min.apply(null, xs) - 0.5, Math.max.apply(null, xs) + 0.5);
    }
    const sx = scale(allX, spec.x && spec.x.log, M.l, W - M.r);
    const sy = scale(allY, spec.y && spec.y.log, H - M.b, M.t);
    axes(svg, spec, sx, sy);
    text(svg, M.l, 16, spec.title || "", { class: "title" });
    const points = [];
    (spec.series || []).forEach((s, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const g = el("g", { "data-series": i, "data-name": s.name }, svg);
      const pts = [];
      for (let k = 0; k < s.x.length; k++) {
        const px = sx(s.x[k]), py = sy(s.y[k]);
        if (px === null || py === null) continue;
        pts.push([px, py]);
        points.push({ px: px, py: py, x: s.x[k], y: s.y[k], series: s.name, i: i,
          label: s.labels ? s.labels[k] : null });
      }
      if (bars || s.mode === "bar") {
        const n = Math.max(1, s.x.length), width = Math.max(2, (W - M.l - M.r) / n * 0.7 / (spec.series.length || 1));
        pts.forEach(p => el("rect", { x: p[0] - width / 2 + i * width, y: Math.min(p[1], sy(0) || p[1]),
          width: width, height: Math.abs((sy(0) || H - M.b) - p[1]), fill: colour }, g));
      } else if (s.mode === "markers") {
        pts.forEach(p => el("circle", { cx: p[0], cy: p[1], r: 3.5, fill: colour }, g));
      } else if (pts.length) {
        let d = "M" + pts[0][0] + "," + pts[0][1];
        for (let k = 1; k < pts.length; k++) {
          d += s.mode === "step" ? "H" + pts[k][0] + "V" + pts[k][1] : "L" + pts[k][0] + "," + pts[k][1];
        }
        el("path", { d: d, fill: "none", stroke: colour, "stroke-width": 1.6 }, g);
        if (pts.length === 1) el("circle", { cx: pts[0][0], cy: pts[0][1], r: 3, fill: colour }, g);
      }
    });
    (spec.vlines || []).forEach(v => {
      const x = sx(v.x); if (x === null) return;
      el("line", { x1: x, x2: x, y1: M.t, y2: H - M.b, class: "vline" }, svg);
      text(svg, x + 2, M.t + 9, v.label || "", { class: "small" });
    });
    (spec.arrows || []).forEach(a => {
      el("line", { x1: sx(a.x0), y1: sy(a.y0), x2: sx(a.x1), y2: sy(a.y1), class: "arrow" }, svg);
      el("circle", { cx: sx(a.x1), cy: sy(a.y1), r: 2, class: "arrowhead" }, svg);
    });
    hover(svg, points);
    container.appendChild(svg);
    legend(container, spec, svg);
  }

  function hover(svg, points) {
    const tip = el("g", { class: "tip", style: "display:none" }, svg);
    const dot = el("circle", { r: 5, class: "tipdot" }, tip);
    const bg = el("rect", { class: "tipbg", rx: 3 }, tip);
    const label = text(tip, 0, 0, "", { class: "tiptext" });
    svg.addEventListener("mousemove", ev => {
      const box = svg.getBoundingClientRect();
      const mx = (ev.clientX - box.left) * W / box.width, my = (ev.clientY - box.top) * H / box.height;
      let best = null, dist = Infinity;
      points.forEach(p => {
        const g = svg.querySelector('[data-series="' + p.i + '"]');
        if (g && g.style.display === "none") return;
        const d = (p.px - mx) * (p.px - mx) + (p.py - my) * (p.py - my);
        if (d < dist) { dist = d; best = p; }
      });
      if (!best || dist > 900) { tip.style.display = "none"; return; }
      tip.style.display = "";
      dot.setAttribute("cx", best.px); dot.setAttribute("cy", best.py);
      label.textContent = (best.label || best.series) + ": " + fmt(best.x) + ", " + fmt(best.y);
      const tx = Math.min(best.px + 8, W - 200), ty = Math.max(best.py - 8, 14);
      label.setAttribute("x", tx + 4); label.setAttribute("y", ty);
      bg.setAttribute("x", tx); bg.setAttribute("y", ty - 12);
      bg.setAttribute("width", label.getComputedTextLength ? label.getComputedTextLength() + 8 : 150);
      bg.setAttribute("height", 16);
    });
    svg.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  }

  function parallel(container, spec) {
    const width = Math.max(W, 120 * spec.axes.length), svg = el("svg", { viewBox: "0 0 " + width + " " + H, class: "plot wide" });
    text(svg, M.l, 16, spec.title || "", { class: "title" });
    const step = (width - 2 * M.l) / Math.max(1, spec.axes.length - 1);
    const scales = spec.axes.map((a, j) => {
      if (a.categories) {
        const n = a.categories.length;
        return v => H - M.b - (a.categories.indexOf(String(v)) + 0.5) / n * (H - M.b - M.t);
      }
      return scale(spec.lines.map(l => l.values[j]), a.log, H - M.b, M.t);
    });
    const colours = spec.lines.map(l => l.color).filter(finite);
    const lo = Math.min.apply(null, colours), hi = Math.max.apply(null, colours);
    spec.lines.forEach((line, i) => {
      let d = "";
      line.values.forEach((v, j) => {
        const y = scales[j](v); if (y === null) return;
        d += (d ? "L" : "M") + (M.l + j * step) + "," + y;
      });
      const t = hi > lo ? (line.color - lo) / (hi - lo) : 1;
      const good = spec.mode === "min" ? 1 - t : t;
      const path = el("path", { d: d, fill: "none", "stroke-width": 1.4, "data-series": i,
        stroke: "hsl(" + Math.round(220 - 200 * good) + ",70%,45%)" }, svg);
      const title = el("title", {}, path);
      title.textContent = line.name + ": " + line.values.map(fmt).join(", ");
    });
    spec.axes.forEach((a, j) => {
      const x = M.l + j * step;
      el("line", { x1: x, x2: x, y1: M.t, y2: H - M.b, class: "paxis" }, svg);
      text(svg, x, H - M.b + 16, a.name, { "text-anchor": "middle", class: "label" });
      if (a.categories) {
        a.categories.forEach(c => text(svg, x + 3, scales[j](c) + 3, c, { class: "small" }));
      } else {
        scales[j].ticks(4).forEach(v => { const y = scales[j](v); if (y !== null) text(svg, x + 3, y + 3, fmt(v), { class: "small" }); });
      }
    });
    container.appendChild(svg);
  }

  function render(container, spec) {
    container.textContent = "";
    container.classList.add("figure");
    container.setAttribute("data-plot", spec.id || "");
    window.flowoptPlots[spec.id || ("plot" + Object.keys(window.flowoptPlots).length)] = spec;
    if (spec.type === "parallel") parallel(container, spec); else xy(container, spec);
    return container;
  }

  /* Draw every <div class="plot-spec"> holding a JSON figure in a <script type=application/json>. */
  function renderAll(root) {
    (root || document).querySelectorAll("script.figure-data").forEach(script => {
      const holder = document.createElement("div");
      script.parentNode.insertBefore(holder, script);
      render(holder, JSON.parse(script.textContent));
    });
  }

  window.FlowoptPlot = { render: render, renderAll: renderAll, format: fmt };
})();
