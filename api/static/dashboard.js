// The operator dashboard: a plain client of the public API (no framework, nothing loaded from other hosts).
// Every 5 s (backing off while the service does not answer) it reads the beat health report, /readyz, the fleet
// limits, the circuit breaker, the firing alerts and the worker pools, and renders them; the controls call the
// admin routes. After each poll it sends the report to charts.js ("nanoedit:report"), which draws the trends.
// Only the one-line summary is an aria-live region: re-announcing every table each poll would be noise.
// One file (~770 lines) on purpose: a plain script, no modules or bundler, like submit.js; its sections are
// helpers, HTTP, rendering (one function per panel), polling, controls and start-up.
"use strict";

(() => {
  const POLL_MS = 5000;
  const POLL_MAX_MS = 60000;
  const TOKEN_STORAGE = "nanoedit.admin_token";
  // Highlight thresholds: those of the built-in alert rules (monitoring/alerts/default_rules.toml, docs/alerts.md#rules).
  const BAD = { errorRate: 0.05, timeoutRate: 0.02, p95: 20, oldestAgeS: 120, beatAgeS: 60 };
  const LIMIT_FIELDS = [
    { name: "concurrency", label: "concurrency", input: "limit-concurrency" },
    { name: "rpm", label: "requests/min", input: "limit-rpm" },
    { name: "images_per_min", label: "images/min", input: "limit-images" },
  ];

  const $ = (id) => document.getElementById(id);
  const el = {
    ready: $("ready"), summary: $("summary"), reportTime: $("report-time"), pollState: $("poll-state"),
    tokenForm: $("token-form"), token: $("admin-token"),
    alerts: $("alerts"), alertsResult: $("alerts-result"), queues: $("queues"), checks: $("checks"),
    beat: $("beat"), windows: $("windows"),
    circuitState: $("circuit-state"), circuitNote: $("circuit-note"), circuitFacts: $("circuit-facts"),
    circuitHistory: $("circuit-history"), circuitResult: $("circuit-result"),
    circuitOpen: $("circuit-open"), circuitClose: $("circuit-close"),
    limitsFacts: $("limits-facts"), limitsForm: $("limits-form"), limitsReset: $("limits-reset"),
    limitsResult: $("limits-result"), scaling: $("scaling"), scalingCard: $("scaling-card"),
    pools: $("pools"), poolsResult: $("pools-result"),
    confirm: $("confirm"), confirmTitle: $("confirm-title"), confirmText: $("confirm-text"),
    confirmYes: $("confirm-yes"),
  };

  let workers = [];
  try { workers = JSON.parse(el.scalingCard.dataset.workers || "[]"); } catch { workers = []; }

  // Latest good answers, so one failing route does not blank the panels that depend on it.
  const last = { report: null, limits: null, circuit: null };
  let delay = POLL_MS;
  let timer = null;
  let running = null;
  let again = false;
  let limitsDirty = false;

  // ---- small helpers -----------------------------------------------------------------------------------------

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text; // unchanged text is not re-announced
  }

  const isNum = (x) => typeof x === "number" && Number.isFinite(x);

  function fmtSeconds(s) {
    if (!isNum(s)) return "—";
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function fmtPct(x) {
    if (!isNum(x)) return "—";
    const p = Math.round(x * 1000) / 10;
    return `${p < 10 || Number.isInteger(p) ? p : Math.round(p)} %`;
  }

  const fmtTime = (date) => date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const fmtEpoch = (s) => (isNum(s) ? fmtTime(new Date(s * 1000)) : "—");
  const fmtIso = (iso) => (iso ? fmtTime(new Date(iso)) : "—");
  const perMin = (n) => (n ? String(n) : "no cap");
  const words = (s) => String(s).replace(/_/g, " ");

  // A value cell; `level` (ok | warn | bad) colours it, `why` explains a blank.
  function value(text, level, why) {
    return h("span", { class: "val", "data-level": level || null, title: why || null, tabindex: why ? 0 : null },
      text, why && text === "—" ? h("span", { class: "visually-hidden", text: ` (${why})` }) : null);
  }

  // <dl> groups for a facts list: [term, ...description nodes]; null rows are skipped.
  const facts = (rows) => rows.filter(Boolean).map(([term, ...desc]) =>
    h("div", {}, h("dt", { text: term }), h("dd", {}, ...desc)));

  // ---- HTTP -------------------------------------------------------------------------------------------------

  function headers(json) {
    const hd = new Headers({ Accept: "application/json" });
    if (json) hd.set("Content-Type", "application/json");
    const token = el.token.value.trim();
    if (token) hd.set("X-Admin-Token", token);
    return hd;
  }

  // Never rejects: {ok, status, body, headers}; status 0 when the service could not be reached.
  async function api(method, path, body) {
    try {
      const resp = await fetch(path, {
        method, headers: headers(body !== undefined), credentials: "same-origin", cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      let data = null;
      if ((resp.headers.get("Content-Type") || "").includes("json")) {
        try { data = await resp.json(); } catch { data = null; }
      }
      return { ok: resp.ok, status: resp.status, body: data, headers: resp.headers };
    } catch (err) {
      return {
        ok: false, status: 0, headers: new Headers(), body: {
          error: "Could not reach the service.", details: String(err && err.message ? err.message : err),
          suggestion: "Check that the API is running; the dashboard keeps retrying.",
        },
      };
    }
  }

  const needsToken = (res) => res.status === 401 || res.status === 403;

  function errorBlock(res) {
    const b = res.body && typeof res.body === "object" ? res.body : {};
    const row = (term, text, code) => (text ? h("div", {}, h("dt", { text: term }),
      h("dd", {}, code ? h("code", { text }) : text)) : null);
    return h("div", { class: "error" },
      h("p", { class: "error-title", text: b.error || `Request failed (HTTP ${res.status}).` }),
      h("dl", {}, row("Code", b.code, true), row("Details", b.details), row("What to do", b.suggestion)));
  }

  function showResult(box, res, okText) {
    if (res.ok) box.replaceChildren(h("p", { class: "ok-msg", text: okText }));
    else box.replaceChildren(errorBlock(res));
    if (needsToken(res)) revealToken();
  }

  // A panel whose route failed: why, in place of its content (a <dl> gets a facts row).
  function panelError(container, res, what) {
    if (needsToken(res)) revealToken();
    const text = needsToken(res) ? `${what}: needs the admin token (enter it above).`
      : `${what}: ${res.body && res.body.error ? res.body.error : `HTTP ${res.status}`}`;
    show(container, ["error", text], () => (container.tagName === "DL"
      ? facts([["Error", h("span", { "data-level": "bad", text })]])
      : h("p", { class: "empty", "data-level": "bad", text })));
  }

  // ---- the confirm step ----------------------------------------------------------------------------------------

  function confirmStep(title, text, yes) {
    if (el.confirm.open) return Promise.resolve(false);
    el.confirmTitle.textContent = title;
    el.confirmText.textContent = text;
    el.confirmYes.textContent = yes;
    el.confirm.returnValue = "";
    return new Promise((resolve) => {
      el.confirm.addEventListener("close", () => resolve(el.confirm.returnValue === "yes"), { once: true });
      el.confirm.showModal();
    });
  }

  // ---- rendering ---------------------------------------------------------------------------------------------
  // Problems are collected on every poll; DOM is rebuilt only when what it shows changed, so a keyboard user's
  // focus (an Ack or Copy button, a "—" with its explanation) is not thrown away every 5 s.

  const shown = new WeakMap();

  function show(container, data, build) {
    const key = JSON.stringify(data);
    if (shown.get(container) === key) return;
    shown.set(container, key);
    container.replaceChildren(...[build()].flat().filter(Boolean));
  }

  const noReport = () => h("p", { class: "empty", "data-level": "warn", text: "no report yet (is beat running?)" });

  function renderReadiness(res, problems) {
    const body = res.body && typeof res.body === "object" ? res.body : null;
    if (!body || !body.checks) {
      el.ready.dataset.state = "not-ready";
      setText(el.ready, res.status ? `readiness: HTTP ${res.status}` : "service unreachable");
      show(el.checks, ["none", res.status], () => h("li", { class: "empty", text: "No readiness answer." }));
      problems.push(res.status ? "readiness unknown" : "service unreachable");
      return;
    }
    const ready = res.ok && body.status === "ready";
    el.ready.dataset.state = ready ? "ready" : "not-ready";
    setText(el.ready, ready ? "ready" : "not ready");
    if (!ready) problems.push(`not ready (${(body.failing || []).map(words).join(", ") || "unknown"})`);
    show(el.checks, body.checks, () => Object.entries(body.checks).map(([name, c]) => {
      const extra = [];
      if (isNum(c.live)) extra.push(`${c.live} live`);
      if ("heartbeat_age_s" in c) {
        extra.push(isNum(c.heartbeat_age_s) ? `heartbeat ${fmtSeconds(c.heartbeat_age_s)} ago` : "no heartbeat");
      }
      if (c.error) extra.push(c.error);
      return h("li", { "data-check": name, "data-level": c.ok ? "ok" : "bad" },
        h("span", { class: "mark", "aria-hidden": "true", text: c.ok ? "✓" : "✗" }),
        h("span", { text: words(name) }),
        h("span", { class: "muted", text: `${c.ok ? "ok" : "failing"}${extra.length ? ` · ${extra.join(" · ")}` : ""}` }));
    }));
  }

  function renderReportTime(report) {
    if (!report) {
      el.reportTime.removeAttribute("data-generated-at");
      el.reportTime.dataset.level = "warn";
      setText(el.reportTime, "no report yet (is beat running?)");
      return;
    }
    const age = Date.now() / 1000 - Number(report.generated_at_ts);
    const stale = isNum(age) && age > 3 * (report.interval_s || 30) + 10;
    el.reportTime.dataset.generatedAt = report.generated_at;
    el.reportTime.dataset.level = stale ? "warn" : "";
    el.reportTime.title = `generated_at ${report.generated_at}`;
    setText(el.reportTime, `Report ${fmtIso(report.generated_at)}${isNum(age) ? ` · ${fmtSeconds(Math.max(0, age))} old`
      : ""}${stale ? " (stale: is beat running?)" : ""}`);
  }

  function renderQueues(report, problems) {
    if (!report) {
      problems.push("no health report yet");
      show(el.queues, "none", noReport);
      show(el.beat, "none", () => []);
      return;
    }
    const queues = Object.entries(report.queues || {});
    for (const [name, q] of queues) {
      if (q.live_workers === 0) problems.push(`no live worker for ${name}`);
      if (isNum(q.oldest_age_s) && q.oldest_age_s > BAD.oldestAgeS) {
        problems.push(`${name} oldest job ${fmtSeconds(q.oldest_age_s)}`);
      }
    }
    show(el.queues, report.queues, () => h("div", { class: "table-wrap" }, h("table", { class: "table" },
      h("caption", { class: "visually-hidden", text: "Queues: live worker instances and backlog" }),
      h("thead", {}, h("tr", {}, ...["Queue", "Live workers", "Depth", "Waiting jobs", "Oldest queued"].map(
        (t, i) => h("th", { scope: "col", class: i ? "num" : null, text: t })))),
      h("tbody", {}, queues.map(([name, q]) => {
        const old = isNum(q.oldest_age_s) && q.oldest_age_s > BAD.oldestAgeS;
        return h("tr", { "data-queue": name },
          h("th", { scope: "row", text: name }),
          h("td", { class: "num", "data-field": "live_workers" },
            value(String(q.live_workers), q.live_workers === 0 ? "bad" : "ok")),
          h("td", { class: "num", "data-field": "depth" }, value(String(q.depth ?? "—"), q.depth > 0 ? "warn" : null)),
          h("td", { class: "num", "data-field": "waiting_jobs" }, value(String(q.waiting_jobs ?? "—"))),
          h("td", { class: "num", "data-field": "oldest_age_s" },
            value(fmtSeconds(q.oldest_age_s), old ? "bad" : null, isNum(q.oldest_age_s) ? null : "nothing waiting")));
      })))));
    const age = report.beat && report.beat.heartbeat_age_s;
    const beatBad = !isNum(age) || age > BAD.beatAgeS;
    if (beatBad) problems.push("beat heartbeat missing");
    show(el.beat, [age, report.interval_s], () => ["Beat heartbeat: ",
      value(isNum(age) ? `${fmtSeconds(age)} ago` : "missing", beatBad ? "bad" : "ok"),
      h("span", { class: "muted", text: ` (at the report, every ${report.interval_s} s)` })]);
  }

  function percentiles(p, minSamples) {
    const n = p && isNum(p.samples) ? p.samples : 0;
    const why = `fewer than ${minSamples} samples in this window (${n} so far): a percentile would be noise`;
    const one = (k) => {
      const v = p ? p[k] : null;
      return h("span", { class: "pc" }, h("small", { text: k }),
        value(fmtSeconds(v), k === "p95" && isNum(v) && v > BAD.p95 ? "warn" : null, isNum(v) ? null : why));
    };
    return [one("p50"), one("p95"), one("p99"), h("small", { class: "muted samples", text: `n = ${n}` })];
  }

  function counts(obj, level) {
    const entries = Object.entries(obj || {}).sort((a, b) => b[1] - a[1]);
    if (!entries.length) return value("none");
    return h("span", { class: "counts" }, entries.map(([k, v]) =>
      h("span", { class: "count", "data-level": level(k) }, h("code", { text: k }), ` ${v}`)));
  }

  const windowLabel = (n) => ({ "5m": "Last 5 min", "1h": "Last hour" }[n] || n);

  function renderWindows(report, problems) {
    if (!report) {
      show(el.windows, "none", noReport);
      return;
    }
    const names = Object.keys(report.windows || {});
    const first = report.windows[names[0]] || {};
    if (isNum(first.error_rate) && first.error_rate > BAD.errorRate) {
      problems.push(`error rate ${fmtPct(first.error_rate)} (${windowLabel(names[0]).toLowerCase()})`);
    }
    if (isNum(first.timeout_rate) && first.timeout_rate > BAD.timeoutRate) {
      problems.push(`timeout rate ${fmtPct(first.timeout_rate)} (${windowLabel(names[0]).toLowerCase()})`);
    }
    const minS = report.min_samples;
    const rate = (key, limit) => (w) => {
      const x = w[key];
      return value(fmtPct(x), isNum(x) ? (x > limit ? "bad" : "ok") : null,
        isNum(x) ? null : "no finished jobs in this window");
    };
    const rows = [
      ["Jobs finished", (w) => value(String(w.jobs_finished))],
      ["Throughput", (w) => value(`${w.throughput_per_min} / min`)],
      [`Error rate (> ${fmtPct(BAD.errorRate)} is bad)`, rate("error_rate", BAD.errorRate)],
      [`Timeout rate (> ${fmtPct(BAD.timeoutRate)} is bad)`, rate("timeout_rate", BAD.timeoutRate)],
      ["Retry success rate", (w) => value(fmtPct(w.retry_success_rate), null,
        isNum(w.retry_success_rate) ? null : "no job needed a retry in this window")],
      ["Job latency", (w) => percentiles(w.job_latency_s, minS)],
      ["Provider latency", (w) => percentiles(w.provider_latency_s, minS)],
      ["Provider calls", (w) => value(String(w.provider_calls ?? "—"))],
      ["Provider outcomes", (w) => counts(w.provider_outcomes, (k) => (k === "succeeded" ? "ok" : "warn"))],
      ["Errors by code", (w) => counts(w.errors_by_code, () => "bad")],
    ];
    show(el.windows, [report.windows, minS], () => h("table", { class: "table windows" },
      h("caption", { class: "visually-hidden", text: "Job and provider statistics per window" }),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Metric" }),
        names.map((n) => h("th", { scope: "col", "data-window": n, text: windowLabel(n) })))),
      h("tbody", {}, rows.map(([title, cell]) => h("tr", {}, h("th", { scope: "row", text: title }),
        names.map((n) => h("td", { "data-window": n, "data-label": windowLabel(n) }, cell(report.windows[n]))))))));
  }

  const circuitLevel = (state) => ({ closed: "ok", half_open: "warn", open: "bad" }[state] || "warn");

  function renderCircuit(c, problems) {
    const state = String(c.state || "unknown");
    el.circuitState.dataset.level = circuitLevel(state);
    el.circuitState.dataset.state = state;
    setText(el.circuitState, words(state));
    if (state !== "closed") problems.push(`circuit ${words(state)}`);
    let note = "";
    if (c.forced && state === "open") note = "forced open by an operator";
    else if (state === "open") note = `next probe in ${fmtSeconds(c.retry_in_s)}`;
    else if (state === "half_open") note = `${c.probes_out} probe call(s) out`;
    setText(el.circuitNote, note);
    show(el.circuitFacts, [c.consecutive_failures, c.window_s, c.window_failures, c.window_calls, c.opened_at],
      () => facts([
        ["Consecutive failures", value(String(c.consecutive_failures), c.consecutive_failures ? "warn" : null)],
        [`Window (${fmtSeconds(c.window_s)})`, value(`${c.window_failures} failed of ${c.window_calls} calls`,
          c.window_failures ? "warn" : null)],
        c.opened_at ? ["Opened at", value(fmtEpoch(c.opened_at))] : null,
      ]));
    if (Array.isArray(c.history)) {
      show(el.circuitHistory, c.history.slice(0, 10), () => (c.history.length ? c.history.slice(0, 10).map((t) =>
        h("li", {}, h("time", { text: fmtEpoch(Number(t.at)) }), ` ${words(t.from)} → `,
          h("span", { class: "val", "data-level": circuitLevel(t.to), text: words(t.to) }),
          t.reason ? h("span", { class: "muted", text: ` — ${t.reason}` }) : null))
        : h("li", { class: "empty", text: "No transitions yet." })));
    }
    syncCircuitButtons();
  }

  function syncCircuitButtons() {
    const c = last.circuit;
    if (!el.circuitOpen.dataset.busy) el.circuitOpen.disabled = Boolean(c && c.state === "open" && c.forced);
  }

  function renderLimits(limits, problems) {
    const cfg = limits.config || {};
    const defaults = limits.defaults || null;
    const overrides = limits.overrides || {};
    const cooldown = Number(limits.cooldown_remaining_s || 0);
    if (cooldown > 0) problems.push(`provider cooldown ${fmtSeconds(cooldown)}`);
    const full = isNum(limits.in_flight) && limits.in_flight >= cfg.concurrency;
    const withDefault = (name, fmt) => {
      const over = name in overrides && defaults;
      return [value(fmt(cfg[name]), over ? "warn" : null),
        over ? h("span", { class: "muted", text: ` (override; default ${fmt(defaults[name])})` }) : null];
    };
    show(el.limitsFacts, [cfg, defaults, overrides, limits.in_flight, limits.free_slots, cooldown], () => facts([
      ["Concurrency", ...withDefault("concurrency", String),
        h("span", { class: "muted", text: ` · ${limits.in_flight ?? "?"} in flight` })],
      ["Requests / min", ...withDefault("rpm", perMin)],
      ["Images / min", ...withDefault("images_per_min", perMin)],
      ["Slots", value(`${limits.free_slots ?? "?"} free`, full ? "warn" : "ok")],
      ["Cooldown (after a 429)", value(cooldown > 0 ? `${fmtSeconds(cooldown)} left` : "none", cooldown > 0 ? "bad" : "ok")],
    ]));
    el.limitsFacts.dataset.rpm = String(cfg.rpm);
    el.limitsFacts.dataset.concurrency = String(cfg.concurrency);
    el.limitsFacts.dataset.imagesPerMin = String(cfg.images_per_min);
    if (!limitsDirty) syncLimitInputs(cfg);
  }

  function syncLimitInputs(cfg) {
    for (const f of LIMIT_FIELDS) {
      const input = $(f.input);
      if (document.activeElement !== input && isNum(cfg[f.name])) input.value = String(cfg[f.name]);
    }
  }

  function renderAlerts(res, problems) {
    el.alerts.removeAttribute("aria-busy");
    if (res.status === 404 && !(res.body && res.body.alerts)) {
      show(el.alerts, "unavailable", () => h("p", { class: "empty", "data-state": "unavailable",
        text: "alerts: not available" }));
      return;
    }
    if (!res.ok || !res.body || !Array.isArray(res.body.alerts)) {
      panelError(el.alerts, res, "alerts");
      return;
    }
    const alerts = res.body.alerts;
    if (alerts.length) problems.push(`${alerts.length} firing alert${alerts.length === 1 ? "" : "s"}`);
    const shape = alerts.map((a) => [a.id, a.severity, a.summary, a.rule, a.labels, a.fired_at, a.acknowledged,
      a.silenced_by]);
    show(el.alerts, shape, () => (alerts.length ? h("ul", { class: "alerts" }, alerts.map(alertItem))
      : h("p", { class: "empty", "data-level": "ok", "data-state": "none", text: "No alert is firing." })));
  }

  function alertItem(a) {
    const labels = Object.entries(a.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    const name = a.summary || a.rule;
    const acked = a.acknowledged;
    return h("li", { "data-alert": a.id, "data-severity": a.severity },
      h("div", { class: "alert-head" },
        h("span", { class: "sev", "data-severity": a.severity, text: a.severity }), h("strong", { text: name })),
      h("p", { class: "muted alert-meta", text: [a.rule, labels, a.fired_at ? `firing since ${fmtIso(a.fired_at)}` : "",
        a.silenced_by ? `silenced (${a.silenced_by})` : ""].filter(Boolean).join(" · ") }),
      acked ? h("p", { class: "acked", text: `Acknowledged by ${acked.by} at ${fmtIso(acked.at)}` })
        : h("button", { type: "button", class: "secondary small", "data-ack": a.id, "aria-label": `Acknowledge ${name}`,
          text: "Ack…", onclick: (event) => ackAlert(a, event.currentTarget) }));
  }

  // Worker pools (GET /v1/admin/workers): per queue the instances that answered Celery's remote control, their
  // slots and busy work, + / − to resize (POST /v1/admin/workers/scale), and for generate the fleet cap beside the
  // pool slots with which one binds. Heartbeat ages are left out of the model so the buttons keep focus.
  function renderPools(res) {
    el.pools.removeAttribute("aria-busy");
    if (!res.ok || !res.body || !res.body.queues) {
      panelError(el.pools, res, "worker pools");
      return;
    }
    const cap = res.body.fleet_cap || {};
    const model = Object.entries(res.body.queues).map(([name, q]) => {
      const instances = q.instances || [];
      return { name, slots: q.slots, active: q.active, reserved: q.reserved, resizable: Boolean(q.resizable),
        pools: [...new Set(instances.map((i) => i.pool))].join(", "),
        atFloor: instances.every((i) => i.concurrency <= 1),
        instances: instances.map((i) => ({ name: i.name, pid: i.pid, pool: i.pool, slots: i.concurrency,
          atStart: i.concurrency_at_start, active: i.active, reserved: i.reserved, processed: i.processed })) };
    });
    show(el.pools, [model, cap], () => model.map((m) => poolArticle(m, m.name === cap.queue ? cap : null)));
  }

  function poolArticle(m, cap) {
    const n = m.instances.length;
    const s = (k) => (k === 1 ? "" : "s");
    const cols = ["Instance", "Slots", "Active", "Reserved", "Done"];
    const table = n ? h("div", { class: "table-wrap" }, h("table", { class: "table" },
      h("caption", { class: "visually-hidden", text: `${m.name} worker instances` }),
      h("thead", {}, h("tr", {}, cols.map((t, i) => h("th", { scope: "col", class: i ? "num" : null, text: t })))),
      h("tbody", {}, m.instances.map((i) => h("tr", { "data-instance": i.name },
        h("th", { scope: "row" }, i.name, h("br"), h("small", { class: "muted", text: `pid ${i.pid ?? "—"} · ${i.pool}` })),
        h("td", { class: "num", "data-field": "concurrency", title: `started with ${i.atStart}` }, String(i.slots)),
        h("td", { class: "num", "data-field": "active" }, String(i.active)),
        h("td", { class: "num", "data-field": "reserved" }, String(i.reserved)),
        h("td", { class: "num", "data-field": "processed", title: "tasks finished since the instance started" },
          String(i.processed))))))) : null;
    let controls = null;
    if (n && m.resizable) {
      controls = h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary small", "data-scale": "-1", disabled: m.atFloor,
          "aria-label": `Shrink the ${m.name} pools by one process`, text: "− 1",
          onclick: (event) => scalePool(m, -1, event.currentTarget) }),
        h("button", { type: "button", class: "small", "data-scale": "+1",
          "aria-label": `Grow the ${m.name} pools by one process`, text: "+ 1",
          onclick: (event) => scalePool(m, 1, event.currentTarget) }));
    } else if (n) {
      controls = h("p", { class: "muted", text: `Fixed-size pool (${m.pools}): change its -c and restart, or add an instance.` });
    }
    return h("article", { class: "scale pool", "data-queue": m.name, "data-slots": m.slots,
      "data-level": n ? "ok" : "bad" },
      h("h3", { text: m.name }),
      h("p", { class: "ratio" }, value(`${m.slots} slot${s(m.slots)}`, n ? null : "bad"), ` in ${n} instance${s(n)} · `,
        value(`${m.active} active`, m.active ? "ok" : null), " · ", value(`${m.reserved} reserved`, m.reserved ? "warn" : null)),
      cap ? h("p", { class: "cap", "data-binds": cap.binds, "data-level": cap.binds === "fleet_cap" ? "warn" : null },
        h("strong", { text: `Fleet cap ${cap.concurrency}` }), ` · ${cap.note}.`) : null,
      table || h("p", { class: "empty", "data-level": "bad", text: "No instance answered the remote control." }),
      controls);
  }

  // Per queue: who serves it, whether it keeps up, and the command that adds one more instance.
  function scalingAdvice(name, q, limits, circuit, report) {
    const live = Number(q.live_workers || 0);
    const waiting = Number(q.depth || 0);
    const old = isNum(q.oldest_age_s) ? q.oldest_age_s : 0;
    const cfg = (limits && limits.config) || (report.limiter && report.limiter.config) || {};
    const inFlight = limits ? limits.in_flight : report.limiter && report.limiter.in_flight;
    const s = (n) => (n === 1 ? "" : "s");
    if (live === 0) return ["bad", "No live instance: jobs on this queue are not processed. Start one:"];
    if (name === "generate" && waiting && circuit && circuit.state !== "closed") {
      return ["warn", `The circuit is ${words(circuit.state)}: provider calls are paused, so more instances will not help.`];
    }
    if (name === "generate" && waiting && isNum(inFlight) && inFlight >= cfg.concurrency) {
      return ["warn", `Backlog of ${waiting}, but the fleet limit is full (${inFlight} of ${cfg.concurrency} calls in ` +
        "flight): more instances will not send more calls. Raise the concurrency limit if the provider quota allows."];
    }
    if (waiting && old > 30) {
      return ["warn", `Backlog: ${waiting} queued, oldest ${fmtSeconds(old)}, with ${live} instance${s(live)}. Add one:`];
    }
    return ["ok", `Keeping up: ${live} live instance${s(live)}, ${waiting ? `${waiting} queued` : "nothing queued"}.`];
  }

  function renderScaling(report, limits, circuit) {
    if (!report) {
      show(el.scaling, "none", () => h("p", { class: "empty", text: "Waiting for the first report…" }));
      return;
    }
    const model = Object.entries(report.queues || {}).map(([name, q]) => {
      const proc = workers.find((w) => (w.queues || []).includes(name));
      const [level, advice] = scalingAdvice(name, q, limits, circuit, report);
      const live = Number(q.live_workers || 0);
      return { name, level, advice, live, waiting: Number(q.depth || 0), oldest: q.oldest_age_s,
        process: proc ? proc.process : null, command: proc ? scaleCommand(proc.command, live + 1, limits) : null };
    });
    show(el.scaling, model, () => model.map((m) => h("article", { class: "scale", "data-queue": m.name, "data-level": m.level },
      h("h3", {}, m.name, m.process && m.process !== m.name
        ? h("span", { class: "muted", text: ` · served by the ${m.process} process` }) : null),
      h("p", { class: "ratio" }, value(`${m.live} live`, m.live ? "ok" : "bad"), " vs ",
        value(`${m.waiting} queued`, m.waiting ? "warn" : null), " · oldest ",
        value(fmtSeconds(m.oldest), null, isNum(m.oldest) ? null : "nothing waiting")),
      h("p", { class: "advice", text: m.advice }),
      m.command ? commandBox(m.command, m.name) : h("p", { class: "muted", text: "No Procfile line serves this queue." }))));
  }

  // The Procfile line as a command for instance number n: its own node name, the shell defaults filled in.
  function scaleCommand(command, n, limits) {
    const k = Math.max(2, n);
    return command
      .replace(/-n (\S+?)(?:-\$\$)?@/, (_, name) => `-n ${name}-${k}@`)
      .replace(/\$\{([A-Z0-9_]+):-([^}]*)\}/g, (_, name, dflt) =>
        (name === "NANOEDIT_GEMINI_CONCURRENCY" && limits && limits.defaults ? String(limits.defaults.concurrency)
          : dflt));
  }

  function commandBox(command, queue) {
    const box = h("div", { class: "command-box" },
      h("pre", { tabindex: 0, "aria-label": `Command to add a ${queue} instance` }, h("code", { class: "command", text: command })));
    if (navigator.clipboard && window.isSecureContext) {
      const btn = h("button", { type: "button", class: "secondary small", text: "Copy",
        "aria-label": `Copy the command to add a ${queue} instance` });
      btn.addEventListener("click", () => navigator.clipboard.writeText(command).then(
        () => { btn.textContent = "Copied"; setTimeout(() => { btn.textContent = "Copy"; }, 1500); },
        () => { btn.textContent = "Select and copy"; }));
      box.append(btn);
    }
    return box;
  }

  function renderSummary(problems) {
    const text = problems.length
      ? `${problems.length} problem${problems.length === 1 ? "" : "s"}: ${problems.join("; ")}.`
      : "All clear: ready, workers live on every queue, circuit closed, no firing alert.";
    setText(el.summary, text);
    el.summary.dataset.level = problems.length ? "bad" : "ok";
  }

  // ---- polling -------------------------------------------------------------------------------------------------

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }

  // One poll at a time; a refresh asked for during a poll (after a control) runs once that one ends.
  function refresh() {
    if (running) {
      again = true;
      return running;
    }
    clearTimeout(timer);
    running = poll().finally(() => {
      running = null;
      if (again) {
        again = false;
        refresh();
      }
    });
    return running;
  }

  async function poll() {
    const poolsReply = api("GET", "/v1/admin/workers"); // can take the broadcast's timeout: rendered last
    const [report, ready, limits, circuit, alerts] = await Promise.all([
      api("GET", "/v1/monitoring/report"), api("GET", "/readyz?detailed=true"), api("GET", "/v1/admin/limits"),
      api("GET", "/v1/admin/circuit"), api("GET", "/v1/monitoring/alerts?state=firing"),
    ]);
    const problems = [];
    if (report.ok && report.body) last.report = report.body;
    else if (report.status === 404) last.report = null;
    if (limits.ok && limits.body) last.limits = limits.body;
    if (circuit.ok && circuit.body) last.circuit = circuit.body;

    renderReadiness(ready, problems);
    if (report.ok || report.status === 404 || last.report) { // a failed read keeps the last report, aging
      renderReportTime(last.report);
      renderQueues(last.report, problems);
      renderWindows(last.report, problems);
    } else {
      el.reportTime.removeAttribute("data-generated-at");
      el.reportTime.dataset.level = "bad";
      setText(el.reportTime, needsToken(report) ? "the report needs the admin token" : "no report (request failed)");
      panelError(el.queues, report, "report");
      panelError(el.windows, report, "report");
    }
    if (last.limits) renderLimits(last.limits, problems);
    else panelError(el.limitsFacts, limits, "limits");
    if (last.circuit) renderCircuit(last.circuit, problems);
    else panelError(el.circuitFacts, circuit, "circuit");
    renderAlerts(alerts, problems);
    renderScaling(last.report, last.limits, last.circuit || (last.report && last.report.circuit));
    renderSummary(problems); // before the pools, which may take the broadcast's timeout
    // charts.js draws the trend charts and the system panel from the same poll (and the same report).
    document.dispatchEvent(new CustomEvent("nanoedit:report", { detail: { report: last.report } }));
    const pools = await poolsReply;
    renderPools(pools);

    // Back off while the service (not just one route) is failing; honour Retry-After.
    const all = [report, ready, limits, circuit, alerts, pools];
    const failing = all.some((r) => r.status === 0 || r.status === 429 || (r.status >= 500 && r !== ready));
    const unreachable = all.every((r) => r.status === 0);
    const retryAfter = Math.max(0, ...all.map((r) => Number(r.headers.get("Retry-After")) || 0)) * 1000;
    delay = failing ? Math.min(POLL_MAX_MS, Math.max(delay * 2, retryAfter, POLL_MS * 2)) : POLL_MS;
    setText(el.pollState, failing ? `· ${unreachable ? "service unreachable" : "some requests failed"}; ` +
      `retrying in ${Math.round(delay / 1000)} s` : `· updated ${fmtTime(new Date())}`);
    el.pollState.dataset.level = failing ? "bad" : "";
    if (!document.hidden) schedule(delay);
  }

  // ---- controls --------------------------------------------------------------------------------------------------

  function revealToken() {
    if (el.tokenForm.hidden) el.tokenForm.hidden = false;
  }

  async function withButton(button, action) {
    button.disabled = true;
    button.dataset.busy = "1";
    try {
      await action();
    } finally {
      button.disabled = false;
      delete button.dataset.busy;
      syncCircuitButtons();
    }
  }

  async function applyLimits(event) {
    event.preventDefault();
    const cfg = (last.limits && last.limits.config) || {};
    const overrides = (last.limits && last.limits.overrides) || {};
    const change = {};
    const described = [];
    for (const f of LIMIT_FIELDS) {
      if ($(f.input).validity.badInput) {
        el.limitsResult.replaceChildren(errorBlock({ status: 0, body: { error: `${f.label} is not a number.`,
          suggestion: "Type a whole number, or clear the field to restore the default." } }));
        $(f.input).focus();
        return;
      }
      const raw = $(f.input).value.trim();
      if (raw === "") {
        if (f.name in overrides) { change[f.name] = null; described.push(`${f.label} → default`); }
      } else if (Number(raw) !== cfg[f.name]) {
        change[f.name] = Number(raw);
        described.push(`${f.label} ${cfg[f.name] ?? "?"} → ${raw}`);
      }
    }
    if (!described.length) {
      el.limitsResult.replaceChildren(h("p", { class: "muted", text: "Nothing to change: the fields match the limits in force." }));
      return;
    }
    const ok = await confirmStep("Change the fleet limits?", `${described.join(", ")}. Every generate worker ` +
      "applies this at once, fleet-wide.", "Change limits");
    if (!ok) return;
    await withButton($("limits-apply"), async () => {
      const res = await api("PATCH", "/v1/admin/limits", change);
      if (res.ok) { last.limits = res.body; limitsDirty = false; syncLimitInputs(res.body.config || {}); }
      showResult(el.limitsResult, res, `Limits changed: ${described.join(", ")}.`);
      await refresh();
    });
  }

  async function resetLimits() {
    const d = last.limits && last.limits.defaults;
    const text = d ? `Restore concurrency ${d.concurrency}, requests/min ${perMin(d.rpm)}, images/min ` +
      `${perMin(d.images_per_min)} (the environment's defaults) for the whole fleet.` : "Restore the environment's defaults.";
    if (!(await confirmStep("Reset the fleet limits?", text, "Reset limits"))) return;
    await withButton(el.limitsReset, async () => {
      const res = await api("DELETE", "/v1/admin/limits");
      if (res.ok) { last.limits = res.body; limitsDirty = false; syncLimitInputs(res.body.config || {}); }
      showResult(el.limitsResult, res, "Limits reset to the defaults.");
      await refresh();
    });
  }

  async function forceCircuit(state, button) {
    const text = state === "open"
      ? "Every provider call stops, fleet-wide, until someone forces it closed. Jobs wait (up to their deadline)."
      : "Provider calls resume and the failure counters reset.";
    if (!(await confirmStep(`Force the circuit ${state}?`, text, `Force ${state}`))) return;
    await withButton(button, async () => {
      const res = await api("POST", "/v1/admin/circuit", { state });
      if (res.ok) last.circuit = res.body;
      showResult(el.circuitResult, res, `Circuit forced ${state}.`);
      await refresh();
    });
  }

  async function scalePool(m, delta, button) {
    const verb = delta > 0 ? "Grow" : "Shrink";
    if (!(await confirmStep(`${verb} the ${m.name} pools by ${Math.abs(delta)}?`, `${m.slots} slot${m.slots === 1 ? "" : "s"} ` +
      `now, spread over ${m.instances.length} instance(s). Run-time only: a restarted worker starts at its Procfile/env ` +
      "concurrency again.", verb))) return;
    await withButton(button, async () => {
      const res = await api("POST", "/v1/admin/workers/scale", { queue: m.name, delta });
      const b = res.body || {};
      const applied = Number(b.applied || 0);
      showResult(el.poolsResult, res, `${m.name}: ${b.slots_before} → ${b.slots_after} slots ` +
        `(${applied > 0 ? "+" : ""}${applied} applied${applied === delta ? "" : ` of ${delta}; see the instances`}).`);
      await refresh();
    });
  }

  async function ackAlert(alert, button) {
    const name = alert.summary || alert.rule;
    if (!(await confirmStep("Acknowledge this alert?", `${name}. It keeps firing until the condition clears; ` +
      "the acknowledgement is recorded for this episode.", "Acknowledge"))) return;
    await withButton(button, async () => {
      const res = await api("POST", `/v1/monitoring/alerts/${encodeURIComponent(alert.id)}/ack`, { by: "dashboard" });
      showResult(el.alertsResult, res, `Acknowledged: ${name}.`);
      await refresh();
    });
  }

  // ---- start-up --------------------------------------------------------------------------------------------------

  async function loadMeta() {
    const res = await api("GET", "/v1");
    if (res.ok && res.body && res.body.auth === "api_key") revealToken();
  }

  el.token.value = sessionStorage.getItem(TOKEN_STORAGE) || "";
  if (el.token.value) revealToken();
  el.token.addEventListener("input", () => {
    const token = el.token.value.trim();
    if (token) sessionStorage.setItem(TOKEN_STORAGE, token);
    else sessionStorage.removeItem(TOKEN_STORAGE);
  });
  el.token.addEventListener("change", () => refresh());
  el.tokenForm.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  el.limitsForm.addEventListener("input", () => { limitsDirty = true; });
  el.limitsForm.addEventListener("submit", applyLimits);
  el.limitsReset.addEventListener("click", resetLimits);
  el.circuitOpen.addEventListener("click", () => forceCircuit("open", el.circuitOpen));
  el.circuitClose.addEventListener("click", () => forceCircuit("closed", el.circuitClose));
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearTimeout(timer);
    else refresh();
  });
  loadMeta();
  refresh();
})();
