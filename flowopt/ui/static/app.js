/* flowopt ui: one page, five views (Runs, Run, Compare, Tuner, Lineage), routed by the
 * URL's hash and fed by the JSON API of flowopt/ui/server.py.
 *
 * Every value from the store reaches the page through textContent or an attribute
 * (the h() helper); nothing is ever assigned to innerHTML.
 */
(function () {
  "use strict";
  const view = () => document.getElementById("view");
  let timer = null;

  function h(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    (children || []).forEach(c => {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    });
    return node;
  }
  const fmt = v => window.FlowoptPlot.format(v);
  const short = id => (id || "").slice(0, 12);
  function status(s) { return h("span", { class: "status status-" + s, text: s }); }
  function seconds(v) {
    if (v === null || v === undefined) return "–";
    return v < 60 ? v.toFixed(1) + " s" : v < 3600 ? (v / 60).toFixed(1) + " min" : (v / 3600).toFixed(1) + " h";
  }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "–"; }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB";
  }
  function table(header, rows, attrs) {
    return h("table", attrs || {}, [h("thead", {}, [h("tr", {}, header.map(c => typeof c === "object" ? c : h("th", { text: c })))]),
      h("tbody", {}, rows)]);
  }
  function cell(v, cls) { return h("td", { class: cls || (typeof v === "number" ? "num" : null) }, [typeof v === "object" && v !== null ? v : fmt(v)]); }
  function link(href, label) { return h("a", { href: href, text: label }); }
  function setStatus(text) { document.getElementById("status-line").textContent = text; }

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) { const e = new Error(body.error); e.body = body; throw e; }
    return body;
  }
  function failure(err) {
    const body = err.body || { error: String(err) };
    view().replaceChildren(h("div", { class: "errors" }, [h("strong", { text: "error: " }), body.error,
      body.hint ? h("div", { class: "muted", text: "hint: " + body.hint }) : null]));
  }
  function figures(list) {
    const box = h("div", { class: "figures" });
    (list || []).forEach(spec => {
      const holder = h("div", { class: spec.type === "parallel" ? "figure wide" : "figure" });
      box.appendChild(holder);
      window.FlowoptPlot.render(holder, spec);
    });
    return box;
  }
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    return { parts: path.split("/").map(decodeURIComponent), query: new URLSearchParams(query || "") };
  }
  function go(parts, query) {
    const q = query && query.toString();
    location.hash = "#/" + parts.map(encodeURIComponent).join("/") + (q ? "?" + q : "");
  }

  // -- Runs ------------------------------------------------------------------------------
  const picked = { params: null, metrics: null };
  async function runsView(query) {
    const limit = 50, offset = +(query.get("offset") || 0), where = query.get("where") || "",
      order = query.get("order_by") || "";
    const input = h("input", { type: "text", id: "where", value: where, placeholder: "metrics.accuracy > 0.9 and params.lr < 0.01" });
    const error = h("pre", { class: "error", id: "where-error" });
    const apply = () => { const q = new URLSearchParams(query); q.set("where", input.value); q.delete("offset"); go(["runs"], q); };
    input.addEventListener("keydown", e => { if (e.key === "Enter") apply(); });
    const compareButton = h("button", { id: "compare", disabled: true, text: "Compare selected",
      onclick: () => { const ids = [...document.querySelectorAll("input.pick:checked")].map(c => c.value);
        go(["compare"], new URLSearchParams({ ids: ids.join(",") })); } });
    const top = h("div", {}, [h("h1", { text: "Runs" }),
      h("div", { class: "toolbar" }, [h("label", { for: "where", text: "where " }), input,
        h("button", { id: "apply", text: "Filter", onclick: apply }), compareButton]), error]);
    view().replaceChildren(top, h("p", { class: "muted", text: "loading…" }));
    const params = new URLSearchParams({ offset: offset, limit: limit });
    if (where) params.set("where", where);
    if (order) params.set("order_by", order);
    let page;
    const started = performance.now();
    page = await api("/api/runs?" + params);
    if (page.invalid) {
      const body = page.invalid;
      input.classList.add("bad");
      const position = body.position;
      error.textContent = body.error + (position !== undefined && body.field === "where"
        ? "\n" + where + "\n" + " ".repeat(position) + "^" : "");
      top.nextSibling && top.nextSibling.remove();
      return;
    }
    if (picked.params === null) {
      picked.params = page.columns.params.slice(0, 3);
      picked.metrics = page.columns.metrics.slice(0, 4);
    }
    const pickers = h("details", { class: "columns" }, [h("summary", { text: "columns" })]);
    [["params", page.columns.params], ["metrics", page.columns.metrics]].forEach(([group, names]) => {
      pickers.appendChild(h("div", {}, [h("strong", { text: group + ": " })].concat(names.map(name =>
        h("label", {}, [h("input", { type: "checkbox", class: "column-pick", "data-column": group + "." + name,
          checked: picked[group].includes(name), onchange: ev => {
            picked[group] = ev.target.checked ? picked[group].concat([name]) : picked[group].filter(n => n !== name);
            runsView(query);
          } }), " " + name])))));
    });
    const sortable = (label, field) => {
      const [current, dir] = order.split(" ");
      const th = h("th", { class: "sortable" + (current === field ? " sorted-" + (dir || "asc") : ""), "data-field": field, text: label });
      th.addEventListener("click", () => {
        const q = new URLSearchParams(query);
        q.set("order_by", field + (current === field && dir !== "desc" ? " desc" : current === field ? " asc" : " desc"));
        q.delete("offset"); go(["runs"], q);
      });
      return th;
    };
    const header = [h("th", {}), sortable("run", "run_id"), sortable("status", "status"), sortable("pipeline", "pipeline"),
      sortable("started (UTC)", "started_at"), sortable("duration", "duration")]
      .concat(picked.params.map(p => sortable(p, "params." + p)))
      .concat(picked.metrics.map(m => sortable(m, "metrics." + m)));
    const rows = page.runs.map(r => h("tr", { "data-run": r.run_id }, [
      h("td", {}, [h("input", { type: "checkbox", class: "pick", value: r.run_id, onchange: () => {
        compareButton.disabled = document.querySelectorAll("input.pick:checked").length < 2; } })]),
      h("td", { class: "mono" }, [link("#/run/" + r.run_id, short(r.run_id))]), h("td", {}, [status(r.status)]),
      cell(r.pipeline, "pipeline"), cell(when(r.started_at)), cell(seconds(r.seconds), "num")]
      .concat(picked.params.map(p => cell(r.params[p])))
      .concat(picked.metrics.map(m => cell(r.metrics[m])))));
    const pager = h("div", { class: "toolbar" }, [
      h("button", { id: "prev", text: "‹ previous", disabled: offset === 0, onclick: () => {
        const q = new URLSearchParams(query); q.set("offset", Math.max(0, offset - limit)); go(["runs"], q); } }),
      h("span", { id: "range", text: page.total ? (offset + 1) + "–" + (offset + page.runs.length) + " of " + page.total : "no runs" }),
      h("button", { id: "next", text: "next ›", disabled: offset + limit >= page.total, onclick: () => {
        const q = new URLSearchParams(query); q.set("offset", offset + limit); go(["runs"], q); } })]);
    const notes = page.notes.map(n => h("div", { class: "note", text: "note: " + n }));
    view().replaceChildren(top, ...notes, pickers, table(header, rows, { id: "runs-table" }), pager);
    setStatus(page.total + " runs · " + Math.round(performance.now() - started) + " ms");
  }

  // -- Run -------------------------------------------------------------------------------
  function graph(g) {
    const NS = "http://www.w3.org/2000/svg", BW = 176, BH = 42, GX = 60, GY = 16;
    const columns = Math.max(1, ...g.nodes.map(n => n.column + 1)), rows = Math.max(1, ...g.nodes.map(n => n.row + 1));
    const svg = document.createElementNS(NS, "svg");
    const width = columns * (BW + GX), height = rows * (BH + GY) + GY;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("class", "graph"); svg.setAttribute("width", width); svg.setAttribute("id", "run-graph");
    const s = (name, attrs, parent) => { const n = document.createElementNS(NS, name); for (const k in attrs) n.setAttribute(k, attrs[k]); (parent || svg).appendChild(n); return n; };
    const defs = s("defs", {}); const marker = s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" }, defs);
    s("path", { d: "M0,0L10,5L0,10z", fill: "#8c959f" }, marker);
    const pos = {}; g.nodes.forEach(n => { pos[n.id] = [GX / 2 + n.column * (BW + GX), GY + n.row * (BH + GY)]; });
    const fill = { succeeded: "#dafbe1", failed: "#ffebe9", cached: "#fbefff", running: "#ddf4ff", skipped: "#f6f8fa", interrupted: "#fff8c5" };
    g.edges.forEach(e => { const a = pos[e.from], b = pos[e.to]; if (!a || !b) return;
      s("path", { class: "edge", d: "M" + (a[0] + BW) + "," + (a[1] + BH / 2) + " C" + (a[0] + BW + GX / 2) + "," + (a[1] + BH / 2) + " " + (b[0] - GX / 2) + "," + (b[1] + BH / 2) + " " + b[0] + "," + (b[1] + BH / 2) }); });
    g.nodes.forEach(n => {
      const [x, y] = pos[n.id];
      const group = s("g", { "data-node": n.id, "data-status": n.status });
      s("rect", { x: x, y: y, width: BW, height: BH, rx: 5, fill: fill[n.status] || "#fff", "stroke-dasharray": n.status === "cached" ? "4 2" : "" }, group);
      const t1 = s("text", { x: x + 6, y: y + 16, "font-weight": 600 }, group); t1.textContent = n.id;
      const t2 = s("text", { x: x + 6, y: y + 32, fill: "#57606a" }, group);
      t2.textContent = n.kind + " · " + (n.status === "cached" ? "cached" : n.status + " " + (n.seconds || 0).toFixed(2) + "s");
      const title = s("title", {}, group);
      title.textContent = n.id + " (" + n.kind + "): " + n.status + (n.reused_from ? ", reused from run " + short(n.reused_from.run_id) : "") + (n.error ? "\n" + n.error : "");
    });
    return svg;
  }

  async function runView(runId) {
    const d = await api("/api/runs/" + encodeURIComponent(runId));
    const parts = [h("h1", {}, ["Run ", h("span", { class: "mono", text: short(d.run_id) }), " · ", h("span", { id: "pipeline-name", text: d.pipeline }), " ", status(d.status)]),
      h("p", { class: "muted", text: "started " + when(d.started_at) + " · duration " + seconds(d.seconds) + " · seed " + d.seed +
        (d.parent_run_id ? " · trial of " + short(d.parent_run_id) : "") }, d.parent_run_id ? [" ", link("#/run/" + d.parent_run_id, "(tuning run)")] : [])];
    const reused = d.nodes.filter(n => n.reused_from);
    if (reused.length) {
      const sources = [...new Set(reused.map(n => n.reused_from.run_id))];
      parts.push(h("div", { class: "note", id: "reused-note" }, [reused.length + " of " + d.nodes.length + " nodes reused results from run(s) "]
        .concat(sources.flatMap((r, i) => [i ? ", " : "", link("#/run/" + r, short(r))]))));
    }
    if (d.errors.length || d.error) {
      parts.push(h("div", { class: "errors", id: "errors" }, [h("strong", { text: "errors" })].concat(
        d.errors.map(e => h("div", {}, [h("strong", { text: e.node + ": " }), e.error])))));
    }
    parts.push(h("h2", { text: "Graph" }), graph(d.graph));
    const nodeRows = d.nodes.map(n => h("tr", {}, [cell(n.id), cell(n.kind), h("td", {}, [status(n.status)]), cell(seconds(n.seconds), "num"),
      h("td", {}, n.reused_from ? [link("#/run/" + n.reused_from.run_id, short(n.reused_from.run_id)), " " + n.reused_from.node] : ["–"])]));
    parts.push(table(["node", "kind", "status", "time", "reused from"], nodeRows, { id: "nodes-table" }));
    parts.push(h("h2", { text: "Params" }), table(["param", "value"], Object.entries(d.params).map(([k, v]) => h("tr", {}, [cell(k), cell(v)]))));
    const reusedMetrics = d.reused_metrics || {};
    parts.push(h("h2", { text: "Metrics" }), table(["metric", "value", "from run"], Object.entries(d.metrics).map(([k, v]) =>
      h("tr", {}, [cell(k), cell(v), h("td", {}, reusedMetrics[k] ? [link("#/run/" + reusedMetrics[k], short(reusedMetrics[k]))] : ["this run"])])), { id: "metrics-table" }));
    if (d.tuners.length) {
      parts.push(h("h2", { text: "Tuners" }), h("ul", {}, d.tuners.map(t => h("li", {}, [link("#/tuner/" + d.run_id + "/" + t, t + ": " + d.trials.filter(x => x.node === t).length + " trials")]))));
    }
    parts.push(h("h2", { text: "Series" }), d.figures.length ? figures(d.figures) : h("p", { class: "muted", text: "no metric series" }));
    parts.push(h("h2", { text: "Artifacts" }), table(["artifact", "node.port", "type", "size", "lineage"], d.artifacts.map(a =>
      h("tr", {}, [cell(short(a.id), "mono"), cell(a.node + "." + a.port), cell(a.type), cell(bytes(a.size), "num"),
        h("td", {}, [link("#/lineage/" + a.id, "lineage")])])), { id: "artifacts-table" }));
    view().replaceChildren(...parts);
    setStatus("run " + short(d.run_id) + (d.status === "running" ? " · live" : ""));
    if (d.status === "running") timer = setTimeout(() => route(), 2000);
  }

  // -- Compare ---------------------------------------------------------------------------
  async function compareView(query) {
    const ids = (query.get("ids") || "").split(",").filter(Boolean);
    const d = await api("/api/compare?ids=" + encodeURIComponent(ids.join(",")));
    const only = query.get("diff") === "1", stat = query.get("stat") || "last";
    const runs = d.runs.map(r => r.run_id);
    const toggle = h("input", { type: "checkbox", id: "differences-only", checked: only, onchange: ev => {
      const q = new URLSearchParams(query); q.set("diff", ev.target.checked ? "1" : "0"); go(["compare"], q); } });
    const select = h("select", { id: "series-stat", onchange: ev => { const q = new URLSearchParams(query); q.set("stat", ev.target.value); go(["compare"], q); } },
      ["min", "max", "last"].map(s => h("option", { value: s, selected: s === stat, text: s })));
    const header = [h("th", {})].concat(d.runs.map(r => h("th", {}, [link("#/run/" + r.run_id, short(r.run_id)), h("br"), r.pipeline, " ", status(r.status)])));
    const rows = [];
    const section = (title, values) => {
      const keys = Object.keys(values).filter(k => !only || values[k].differs);
      if (!keys.length) return;
      rows.push(h("tr", {}, [h("th", { colspan: runs.length + 1, text: title })]));
      keys.forEach(k => rows.push(h("tr", { class: values[k].differs ? "differs" : "same", "data-key": title + "." + k },
        [cell(k)].concat(runs.map(r => cell(values[k].values[r]))))));
    };
    section("params", d.params); section("metrics", d.metrics);
    const stats = {};
    Object.entries(d.series).forEach(([k, per]) => {
      const values = {}; runs.forEach(r => { values[r] = per[r] ? per[r][stat] : null; });
      stats[k] = { values: values, differs: new Set(runs.map(r => JSON.stringify(values[r]))).size > 1 };
    });
    section("series (" + stat + ")", stats);
    view().replaceChildren(h("h1", { text: "Compare " + runs.length + " runs" }),
      h("div", { class: "toolbar" }, [h("label", {}, [toggle, " differences only"]), h("label", {}, ["series value ", select])]),
      table(header, rows, { id: "compare-table" }), h("h2", { text: "Series" }), figures(d.figures));
    setStatus(runs.length + " runs compared");
  }

  // -- Tuner -----------------------------------------------------------------------------
  async function tunerView(runId, node, query) {
    const curve = query.get("curve");
    const d = await api("/api/runs/" + encodeURIComponent(runId) + "/tuner/" + encodeURIComponent(node) + (curve ? "?curve=" + encodeURIComponent(curve) : ""));
    const names = [...new Set(d.trials.flatMap(t => Object.keys(t.params)))].sort();
    const withSteps = d.trials.some(t => t.steps !== undefined && t.steps !== null);
    const rows = d.trials.map(t => h("tr", { "data-trial": t.number }, [cell(t.number), h("td", {}, [status(t.status)]),
      t.objectives ? cell(t.objectives.map(fmt).join(", ")) : cell(t.objective)]
      .concat(names.map(n => cell(t.params[n]))).concat(withSteps ? [cell(t.steps === undefined ? null : t.steps)] : []).concat([cell(seconds(t.seconds), "num"),
        h("td", {}, t.trial_run_id ? [link("#/run/" + t.trial_run_id, short(t.trial_run_id))] : ["–"]), cell(t.error || "")])));
    const select = h("select", { id: "curve-key", onchange: ev => go(["tuner", runId, node], new URLSearchParams({ curve: ev.target.value })) },
      d.curve_keys.map(k => h("option", { value: k, selected: k === d.curve, text: k })));
    view().replaceChildren(h("h1", {}, ["Tuner ", h("span", { text: node }), " · ", link("#/run/" + d.run_id, short(d.run_id)), " · ", d.pipeline]),
      d.from_run ? h("div", { class: "note", text: "trials reused from run " + short(d.from_run) }) : h("span"),
      h("p", { class: "muted", text: d.trials.length + " trials · mode " + d.mode + (d.hypervolume !== null && d.hypervolume !== undefined ? " · hypervolume " + fmt(d.hypervolume) : "") }),
      d.trials.length ? table(["#", "status", "objective"].concat(names).concat(withSteps ? ["steps"] : []).concat(["time", "run", "error"]), rows, { id: "trials-table" }) : h("span"),
      d.curve_keys.length ? h("div", { class: "toolbar" }, [h("label", {}, ["trial curves: ", select])]) : h("span"), figures(d.figures));
    setStatus(d.trials.length + " trials");
  }

  // -- Lineage ---------------------------------------------------------------------------
  async function lineageView(artifact) {
    const d = await api("/api/lineage/" + encodeURIComponent(artifact));
    const entry = e => h("tr", {}, [h("td", { class: "mono" }, e.artifact ? [link("#/lineage/" + e.artifact, short(e.artifact))] : ["–"]),
      cell(e.node + (e.port ? "." + e.port : "")), cell(e.kind), h("td", {}, [status(e.status)]), h("td", { class: "mono" }, [link("#/run/" + e.run_id, short(e.run_id))])]);
    view().replaceChildren(h("h1", {}, ["Artifact ", h("span", { class: "mono", text: short(d.artifact) }), " · " + d.node + "." + d.port + " · " + d.type + " · " + bytes(d.size)]),
      h("p", {}, ["made in run ", d.run_id ? link("#/run/" + d.run_id, short(d.run_id)) : "?", " · hash ", h("span", { class: "mono", text: (d.hash || "").slice(0, 16) })]),
      h("h2", { text: "Upstream (" + d.upstream.length + ")" }), table(["artifact", "node.port", "kind", "status", "run"], d.upstream.map(entry), { id: "upstream-table" }),
      h("h2", { text: "Source files" }), table(["path", "hash", "size", "read by"], d.sources.map(s => h("tr", {}, [cell(s.path, "mono"), cell((s.hash || "missing").slice(0, 16), "mono"), cell(bytes(s.size), "num"), cell(s.node + "." + s.field)])), { id: "sources-table" }),
      h("h2", { text: "Downstream (" + d.downstream.length + ")" }), table(["artifact", "node.port", "kind", "status", "run"], d.downstream.map(entry), { id: "downstream-table" }));
    setStatus("lineage of " + short(d.artifact));
  }

  async function route() {
    clearTimeout(timer);
    const { parts, query } = parseHash();
    try {
      if (parts[0] === "run" && parts[1]) await runView(parts[1]);
      else if (parts[0] === "compare") await compareView(query);
      else if (parts[0] === "tuner" && parts[2]) await tunerView(parts[1], parts[2], query);
      else if (parts[0] === "lineage" && parts[1]) await lineageView(parts[1]);
      else await runsView(query);
      document.body.setAttribute("data-view", parts[0] || "runs");
    } catch (err) { failure(err); }
  }
  window.addEventListener("hashchange", route);
  window.addEventListener("DOMContentLoaded", route);
})();
