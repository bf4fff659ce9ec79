// The dashboard's trend charts and system panel. Inline SVG drawn here, no chart library: the page loads nothing
// from other hosts and its CSP allows only same-origin scripts, and four line charts need ~200 lines, not a
// dependency. Driven by dashboard.js: after each poll it sends "nanoedit:report" with the latest report; this
// file renders report.system and, when the shown range is older than one step, reads
// GET /v1/monitoring/series?range=1h|24h (the stored reports, one point per step).
"use strict";

(() => {
  const W = 480;
  const H = 190;
  const M = { left: 52, right: 12, top: 12, bottom: 26 };
  const REFRESH_MIN_MS = 15000;
  const MEMORY = { warn: 0.8, bad: 0.9 }; // the default memory alert rules (docs/alerts.md)
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  const state = { range: "1h", series: {}, fetchedAt: {}, loading: {} };

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }

  function s(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function fmtSeconds(x) {
    if (x === 0) return "0";
    if (x < 1) return `${Math.round(x * 1000)} ms`;
    return `${+x.toFixed(x < 10 ? 1 : 0)} s`;
  }
  const fmtPct = (x) => `${+(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`;
  const fmtNum = (x) => String(+x.toFixed(x < 10 ? 2 : 0));
  const fmtBytes = (b) => (!isNum(b) ? "n/a" : b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB`
    : `${(b / 2 ** 20).toFixed(b >= 100 * 2 ** 20 ? 0 : 1)} MiB`);
  const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

  // The four charts: which lines each draws from a series point, the y floor (an idle service still gets a
  // readable scale) and the tick format.
  const CHARTS = {
    latency: { floor: 1, fmt: fmtSeconds, lines: () => ["p50", "p95", "p99"].map((k) => ({ key: k, label: k, get: (p) => p[k] })) },
    throughput: { floor: 1, fmt: fmtNum, lines: () => [{ key: "throughput", label: "jobs/min", get: (p) => p.throughput_per_min }] },
    errors: { floor: 0.05, fmt: fmtPct, threshold: { value: 0.05, label: "alert 5 %" }, lines: () => [{ key: "errors", label: "error rate", get: (p) => p.error_rate }] },
    queues: { floor: 5, fmt: fmtNum, integer: true,
      lines: (series) => series.queues.map((q) => ({ key: q, label: q, get: (p) => (p.queue_depth || {})[q] })) },
  };

  // A "nice" step (1, 2, 2.5 or 5 × 10^n) giving about four intervals up to `max`.
  function yScale(max, floor, integer) {
    const top = Math.max(max, floor);
    const raw = top / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    let step = [1, 2, 2.5, 5, 10].map((n) => n * mag).find((n) => n >= raw);
    if (integer) step = Math.max(1, Math.ceil(step));
    return { step, top: Math.ceil(top / step - 1e-9) * step };
  }

  // Time ticks on round local clock times: every 10 min over an hour, every 3 h over a day.
  function timeTicks(from, to) {
    const every = to - from > 4 * 3600 ? 3 * 3600 : 600;
    const offset = new Date(from * 1000).getTimezoneOffset() * 60;
    const ticks = [];
    for (let t = Math.ceil((from - offset) / every) * every + offset; t <= to; t += every) ticks.push(t);
    return ticks;
  }

  function draw(figure, name, series) {
    const spec = CHARTS[name];
    const lines = spec.lines(series);
    const to = series.generated_at_ts;
    const from = to - series.since_s;
    const values = lines.flatMap((l) => series.points.map(l.get)).filter(isNum);
    const caption = figure.querySelector("figcaption");
    figure.replaceChildren(caption);
    if (!values.length) {
      figure.dataset.empty = "1";
      figure.append(h("p", { class: "chart-empty", text: "no data yet" }));
      return;
    }
    delete figure.dataset.empty;
    const { step, top } = yScale(Math.max(...values), spec.floor, spec.integer);
    const x = (ts) => M.left + ((ts - from) / (to - from)) * (W - M.left - M.right);
    const y = (v) => H - M.bottom - (v / top) * (H - M.top - M.bottom);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img",
      "aria-label": `${caption.textContent.trim()} over the last ${series.range === "24h" ? "day" : "hour"}` });
    const grid = s("g", { class: "grid-lines" });
    const labels = s("g", { class: "axis-labels" });
    for (let i = 0; i * step <= top + 1e-9; i += 1) {
      const v = i * step;
      grid.append(s("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
      labels.append(s("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end", class: "y-label" }, document.createTextNode(spec.fmt(v))));
    }
    for (const t of timeTicks(from, to)) {
      grid.append(s("line", { x1: x(t), x2: x(t), y1: M.top, y2: H - M.bottom, class: "x-grid" }));
      labels.append(s("text", { x: x(t), y: H - 8, "text-anchor": "middle", class: "x-label" }, document.createTextNode(clock(t))));
    }
    svg.append(grid, s("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }),
      s("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }), labels);
    if (spec.threshold && spec.threshold.value <= top) { // the built-in alert rule's line (docs/alerts.md#rules)
      const ty = y(spec.threshold.value);
      svg.append(s("line", { x1: M.left, x2: W - M.right, y1: ty, y2: ty, class: "threshold" }),
        s("text", { x: W - M.right - 2, y: ty - 4, "text-anchor": "end", class: "threshold-label" },
          document.createTextNode(spec.threshold.label)));
    }
    // A missing value (too few samples, an older report) breaks the line instead of being drawn as zero; a
    // point alone between gaps gets a dot so it stays visible.
    const maxGap = series.step_s * 2.5;
    lines.forEach((line, i) => {
      let d = "";
      let n = 0;
      let prev = null;
      const dots = [];
      let run = [];
      const flush = () => { if (run.length === 1) dots.push(run[0]); run = []; };
      for (const p of series.points) {
        const v = line.get(p);
        if (!isNum(v)) { prev = null; flush(); continue; }
        const pt = [x(p.ts).toFixed(1), y(v).toFixed(1)];
        const join = prev !== null && p.ts - prev <= maxGap;
        if (!join) flush();
        d += `${join ? "L" : "M"}${pt[0]} ${pt[1]} `;
        run.push(pt);
        prev = p.ts;
        n += 1;
      }
      flush();
      svg.append(s("path", { d: d.trim(), class: `series s${i}`, "data-series": line.key, "data-points": n }));
      for (const [cx, cy] of dots) svg.append(s("circle", { cx, cy, r: 2.5, class: `dot s${i}` }));
    });
    const latest = series.points[series.points.length - 1];
    figure.append(svg, h("ul", { class: "legend" }, lines.map((line, i) => {
      const v = line.get(latest);
      return h("li", { "data-series": line.key }, h("span", { class: `swatch s${i}`, "aria-hidden": "true" }),
        `${line.label} `, h("span", { class: "muted", text: isNum(v) ? `now ${spec.fmt(v)}` : "now —" }));
    })));
  }

  function renderCharts(series) {
    const note = $("charts-note");
    const card = $("charts-card");
    card.dataset.range = series.range;
    card.dataset.points = series.points.length;
    card.dataset.generatedAt = series.generated_at_ts;
    note.textContent = series.points.length
      ? `${series.points.length} point${series.points.length === 1 ? "" : "s"}, one per ${series.step_s >= 60
        ? `${series.step_s / 60} min` : `${series.step_s} s`}; latency, throughput and error rate over each report's ` +
        `${series.window} window. Times are local.`
      : "No stored health report in this range yet: beat writes one every NANOEDIT_REPORT_INTERVAL_S.";
    for (const fig of document.querySelectorAll("#charts .chart")) draw(fig, fig.dataset.chart, series);
  }

  function headers() {
    const hd = new Headers({ Accept: "application/json" });
    const token = ($("admin-token").value || "").trim();
    if (token) hd.set("X-Admin-Token", token);
    return hd;
  }

  async function load(range, force) {
    const age = Date.now() - (state.fetchedAt[range] || 0);
    const cached = state.series[range];
    if (!force && cached && age < Math.max(REFRESH_MIN_MS, cached.step_s * 1000)) return;
    if (state.loading[range]) return;
    state.loading[range] = true;
    try {
      const resp = await fetch(`/v1/monitoring/series?range=${encodeURIComponent(range)}`,
        { headers: headers(), credentials: "same-origin", cache: "no-store" });
      const body = await resp.json().catch(() => null);
      if (!resp.ok || !body) {
        const why = resp.status === 401 || resp.status === 403 ? "the charts need the admin token (enter it above)"
          : `charts: ${(body && body.error) || `HTTP ${resp.status}`}`;
        $("charts-note").textContent = why;
        $("charts-note").dataset.level = "bad";
        return;
      }
      delete $("charts-note").dataset.level;
      state.series[range] = body;
      state.fetchedAt[range] = Date.now();
      if (range === state.range) renderCharts(body);
    } catch (err) {
      $("charts-note").textContent = `charts: could not reach the service (${err && err.message ? err.message : err})`;
      $("charts-note").dataset.level = "bad";
    } finally {
      state.loading[range] = false;
    }
  }

  function selectRange(range) {
    state.range = range;
    for (const b of document.querySelectorAll("#charts-card [data-range]")) {
      b.setAttribute("aria-pressed", String(b.dataset.range === range));
    }
    if (state.series[range]) renderCharts(state.series[range]);
    load(range, false);
  }

  // ---- system panel -------------------------------------------------------------------------------------------

  const level = (ratio) => (!isNum(ratio) ? null : ratio >= MEMORY.bad ? "bad" : ratio >= MEMORY.warn ? "warn" : "ok");
  const na = () => h("p", { class: "empty", text: "n/a" });
  let shownSystem = null;

  // A used/limit pair: a meter coloured by the memory alert thresholds, and the numbers.
  function memoryCell(used, limit, ratio, what) {
    const lvl = level(ratio);
    const note = lvl === "bad" ? " — critical (≥ 90 %)" : lvl === "warn" ? " — warning (≥ 80 %)" : "";
    return [h("meter", { min: 0, max: 1, low: MEMORY.warn, high: MEMORY.bad, optimum: 0, value: isNum(ratio) ? ratio : 0,
      "aria-label": `memory used of ${what}` }),
    h("span", { class: "val", "data-level": lvl, "data-field": "memory_ratio",
      text: ` ${fmtBytes(used)}${isNum(limit) ? ` of ${fmtBytes(limit)}` : ""} ` +
        `(${isNum(ratio) ? `${(ratio * 100).toFixed(1)} %` : "n/a"}${isNum(limit) ? ` of ${what}` : ""})${note}` })];
  }

  function renderSystem(report) {
    const sys = report && report.system && typeof report.system === "object" ? report.system : null;
    const key = JSON.stringify(sys);
    if (key === shownSystem) return;
    shownSystem = key;
    const procs = sys && Array.isArray(sys.processes) ? sys.processes : null;
    $("system-processes").replaceChildren(procs && procs.length ? h("div", { class: "table-wrap" }, h("table", { class: "table" },
      h("caption", { class: "visually-hidden", text: "CPU and resident memory per process tree" }),
      h("thead", {}, h("tr", {}, ["Process", "PID", "CPU", "RSS", "Memory"].map((t, i) =>
        h("th", { scope: "col", class: i ? "num" : null, text: t })))),
      h("tbody", {}, procs.map((p) => h("tr", { "data-role": p.role, "data-pid": p.pid },
        h("th", { scope: "row" }, String(p.role ?? "?"), p.host ? h("small", { class: "muted", text: ` ${p.host}` }) : null),
        h("td", { class: "num", text: String(p.pid ?? "—") }),
        h("td", { class: "num", text: isNum(p.cpu_percent) ? `${p.cpu_percent.toFixed(1)} %` : "n/a" }),
        h("td", { class: "num", text: fmtBytes(p.rss_bytes) }),
        h("td", { class: "num" }, h("span", { class: "val", "data-level": level(p.memory_ratio), "data-field": "memory_ratio",
          title: isNum(p.memory_limit_bytes) ? `of ${fmtBytes(p.memory_limit_bytes)} (${p.limit_source || "limit"})` : null,
          text: isNum(p.memory_ratio) ? `${(p.memory_ratio * 100).toFixed(1)} %` : "n/a" }))))))) : na());
    const r = sys && sys.redis && typeof sys.redis === "object" ? sys.redis : null;
    if (!r || !isNum(r.used_memory)) { $("system-redis").replaceChildren(na()); return; }
    // maxmemory when set; else the host's memory (Redis grows until the host runs out), as the alert rules compare.
    const limit = isNum(r.memory_limit_bytes) ? r.memory_limit_bytes : r.maxmemory > 0 ? r.maxmemory : null;
    const ratio = isNum(r.memory_ratio) ? r.memory_ratio : isNum(limit) ? r.used_memory / limit : null;
    const what = r.maxmemory > 0 ? "maxmemory" : "host memory (no maxmemory)";
    const row = (term, ...desc) => h("div", {}, h("dt", { text: term }), h("dd", {}, ...desc));
    $("system-redis").replaceChildren(h("dl", { class: "facts" },
      row("Memory", ...memoryCell(r.used_memory, limit, ratio, what)),
      row("Clients", isNum(r.connected_clients) ? String(r.connected_clients) : "n/a"),
      row("Ops / s", isNum(r.ops_per_sec) ? String(r.ops_per_sec) : "n/a")));
  }

  // ---- start-up -------------------------------------------------------------------------------------------------

  for (const b of document.querySelectorAll("#charts-card [data-range]")) {
    b.addEventListener("click", () => selectRange(b.dataset.range));
  }
  document.addEventListener("nanoedit:report", (event) => {
    renderSystem(event.detail && event.detail.report);
    load(state.range, false);
  });
})();
