// The submit page: a plain client of the public API (no framework, nothing loaded from other hosts).
// POST /v1/jobs (multipart) → poll GET /v1/jobs/{id} until a terminal status → fetch each output.
// Outputs are fetched with fetch() rather than <img src>, so the API key header goes with them when auth is on.
"use strict";

(() => {
  const TERMINAL = new Set(["succeeded", "partially_succeeded", "failed", "canceled"]);
  const POLL_MIN_MS = 500;
  const POLL_MAX_MS = 3000;
  const KEY_STORAGE = "nanoedit.api_key";
  const OPERATION_HINTS = {
    edit: "Edit: 1 image (any extra images are references).",
    compose: "Compose: 2 or more images, combined into one.",
    style_transfer: "Style transfer: exactly 2 images — the content image first, then the style image.",
  };
  const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif" };

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("job-form"), images: $("images"), instruction: $("instruction"), operation: $("operation"),
    numImages: $("num-images"), description: $("image-description"), submit: $("submit"),
    auth: $("auth"), apiKey: $("api-key"), previews: $("previews"), countHint: $("count-hint"),
    operationHint: $("operation-hint"), status: $("status"), idle: $("idle"), job: $("job"),
    statusValue: $("status-value"), stage: $("stage"), jobId: $("job-id"), queue: $("queue"),
    progress: $("progress"), progressText: $("progress-text"), timing: $("timing"), note: $("note"),
    cancel: $("cancel"), error: $("error"), outputs: $("outputs"), outputErrors: $("output-errors"),
    jobText: $("job-text"), ready: $("ready"), provider: $("provider"),
    model: $("model"), aspectRatio: $("aspect-ratio"), imageSize: $("image-size"),
    thinkingLevel: $("thinking-level"), outputFormat: $("output-format"),
  };
  let models = {};  // id -> catalogue entry (GET /v1/models)

  let authRequired = false;
  let maxImages = null;
  // Each submission bumps the generation; callbacks of an older job see the mismatch and stop.
  let generation = 0;
  let jobId = null;
  let pollTimer = null;
  let pollDelay = POLL_MIN_MS;
  let lastSignature = "";
  let renderedOutputs = new Set();
  let outputUrls = [];
  let previewUrls = [];

  // ---- HTTP -------------------------------------------------------------------------------------------------

  function headers(accept = "application/json") {
    const h = new Headers({ Accept: accept });
    const key = el.apiKey.value.trim();
    if (authRequired && key) h.set("Authorization", `Bearer ${key}`);
    return h;
  }

  // Resolves to {ok, status, body, headers}; rejects only when the service could not be reached.
  async function api(method, path, body) {
    const resp = await fetch(path, { method, headers: headers(), body, credentials: "same-origin" });
    const type = resp.headers.get("Content-Type") || "";
    let data = null;
    if (type.includes("json")) {
      try { data = await resp.json(); } catch { data = null; }
    } else {
      const text = await resp.text().catch(() => "");
      data = resp.ok ? text : { error: `The service answered HTTP ${resp.status}.`, details: text.slice(0, 300) };
    }
    return { ok: resp.ok, status: resp.status, body: data, headers: resp.headers };
  }

  const unreachable = (err) => ({
    error: "Could not reach the service.",
    details: String(err && err.message ? err.message : err),
    suggestion: "Check that the API is running (make up prints its URL) and try again.",
  });

  // ---- error panel --------------------------------------------------------------------------------------------

  function setRow(id, value) {
    $(id).textContent = value || "";
    $(`${id}-row`).hidden = !value;
  }

  // Accepts the HTTP error body ({error, code, details, suggestion}) and job.error ({message, code, ...}).
  function showError(body, status) {
    const b = body && typeof body === "object" ? body : {};
    $("error-title").textContent = b.error || b.message || (status ? `Request failed (HTTP ${status}).`
      : "Something went wrong.");
    setRow("error-code", b.code);
    setRow("error-details", b.details);
    setRow("error-suggestion", b.suggestion);
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
  }

  // ---- job rendering ---------------------------------------------------------------------------------------------

  function fmtSeconds(s) {
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    return `${Math.round(s / 60)} min`;
  }

  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text; // unchanged text is not re-announced
  }

  function renderJob(job) {
    el.idle.hidden = true;
    el.job.hidden = false;
    const status = String(job.status || "unknown");
    el.status.dataset.status = status;
    setText(el.statusValue, status.replace(/_/g, " "));
    setText(el.stage, job.stage && job.stage !== status ? `stage: ${job.stage.replace(/_/g, " ")}` : "");
    setText(el.jobId, job.id || jobId || "");

    const parts = [];
    if (job.queue_position !== null && job.queue_position !== undefined) {
      parts.push(job.queue_position === 0 ? "next in queue" : `position ${job.queue_position} in queue`);
    }
    if (job.estimated_wait_s !== null && job.estimated_wait_s !== undefined) {
      parts.push(`estimated wait ${fmtSeconds(Number(job.estimated_wait_s))}`);
    }
    el.queue.hidden = parts.length === 0;
    setText(el.queue, parts.join(" · "));

    const progress = job.progress || {};
    const total = Number(progress.outputs_total || job.num_images || 1);
    const done = Number(progress.outputs_done || 0);
    el.progress.max = total;
    el.progress.value = done;
    setText(el.progressText, `${done} of ${total} output${total === 1 ? "" : "s"} done`);

    const totalMs = job.timings && job.timings.total_ms;
    el.timing.hidden = totalMs === null || totalMs === undefined;
    setText(el.timing, el.timing.hidden ? "" : `Finished in ${fmtSeconds(totalMs / 1000)}.`);

    el.jobText.hidden = !job.text;
    setText(el.jobText, job.text ? `Model said: ${job.text}` : "");

    for (const output of job.outputs || []) {
      if (!renderedOutputs.has(output.index)) {
        renderedOutputs.add(output.index);
        renderOutput(job.id || jobId, output);
      }
    }
    renderOutputErrors(job.output_errors || []);

    const terminal = TERMINAL.has(status);
    el.cancel.hidden = terminal || status === "canceling";
    if (terminal) el.cancel.disabled = false;
    if (status === "failed" && job.error) showError(job.error);
    if (status === "canceled") setNote("The job was canceled.");
    return terminal;
  }

  function renderOutputErrors(errors) {
    el.outputErrors.replaceChildren(...errors.map((e) => {
      const li = document.createElement("li");
      const code = e.code ? ` (${e.code})` : "";
      li.textContent = `Output ${Number(e.index) + 1} failed: ${e.message || e.error || "no image"}${code}.` +
        (e.suggestion ? ` ${e.suggestion}` : "");
      return li;
    }));
    el.outputErrors.hidden = errors.length === 0;
  }

  function renderOutput(id, output) {
    const figure = document.createElement("figure");
    figure.className = "output";
    figure.dataset.index = String(output.index);
    const img = document.createElement("img");
    img.alt = `Output ${output.index + 1}`;
    if (output.width && output.height) {
      img.width = output.width;
      img.height = output.height;
    }
    const caption = document.createElement("figcaption");
    const label = document.createElement("span");
    const size = output.width && output.height ? `${output.width}×${output.height}` : "";
    label.textContent = [`Output ${output.index + 1}`, size, output.bytes ? fmtBytes(output.bytes) : ""]
      .filter(Boolean).join(" · ");
    const link = document.createElement("a");
    link.className = "download";
    link.textContent = "Download";
    link.setAttribute("aria-disabled", "true");
    caption.append(label, link);
    figure.append(img, caption);
    // Keep the outputs in index order even though they may arrive out of order.
    const after = [...el.outputs.children].find((c) => Number(c.dataset.index) > output.index);
    el.outputs.insertBefore(figure, after || null);

    const gen = generation;
    // Same-origin path rather than output.url, which carries NANOEDIT_PUBLIC_BASE_URL (maybe another host).
    const url = `/v1/jobs/${encodeURIComponent(id)}/outputs/${output.index}`;
    fetch(url, { headers: headers("image/*"), credentials: "same-origin" })
      .then(async (resp) => {
        if (!resp.ok) {
          const body = (resp.headers.get("Content-Type") || "").includes("json") ? await resp.json() : null;
          throw Object.assign(new Error(`HTTP ${resp.status}`), { body, status: resp.status });
        }
        return resp.blob();
      })
      .then((blob) => {
        if (gen !== generation) return;
        const objectUrl = URL.createObjectURL(blob);
        outputUrls.push(objectUrl);
        img.src = objectUrl;
        link.href = objectUrl;
        link.download = `${id}-${output.index}.${EXTENSIONS[blob.type || output.mime_type] || "bin"}`;
        link.removeAttribute("aria-disabled");
        link.setAttribute("aria-label", `Download output ${output.index + 1}`);
      })
      .catch((err) => {
        if (gen !== generation) return;
        figure.classList.add("broken");
        label.textContent = `Output ${output.index + 1} could not be loaded.`;
        showError(err.body || unreachable(err), err.status);
      });
  }

  function setNote(text) {
    el.note.hidden = !text;
    setText(el.note, text || "");
  }

  function resetResult() {
    generation += 1;
    clearTimeout(pollTimer);
    pollTimer = null;
    jobId = null;
    lastSignature = "";
    renderedOutputs = new Set();
    outputUrls.forEach((u) => URL.revokeObjectURL(u));
    outputUrls = [];
    el.outputs.replaceChildren();
    renderOutputErrors([]);
    clearError();
    setNote("");
    el.cancel.hidden = true;
    el.cancel.disabled = false;
    el.jobText.hidden = true;
  }

  // ---- polling ---------------------------------------------------------------------------------------------------

  function schedule(gen, delay) {
    if (gen !== generation) return;
    pollDelay = delay;
    clearTimeout(pollTimer);
    pollTimer = setTimeout(() => poll(gen), delay);
  }

  const backoff = () => Math.min(POLL_MAX_MS, Math.round(pollDelay * 1.5));

  async function poll(gen) {
    let res;
    try {
      res = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
    } catch (err) {
      if (gen !== generation) return;
      setNote("Lost contact with the service; still trying…");
      schedule(gen, backoff());
      return;
    }
    if (gen !== generation) return;
    if (!res.ok) {
      if (res.status === 429 || res.status >= 500) {
        setNote(`The service answered HTTP ${res.status}; still trying…`);
        const retryAfter = Number(res.headers.get("Retry-After")) * 1000 || 0;
        schedule(gen, Math.max(backoff(), retryAfter));
        return;
      }
      el.cancel.hidden = true;
      showError(res.body, res.status);
      return;
    }
    const job = res.body;
    if (el.note.textContent.startsWith("Lost contact") || el.note.textContent.startsWith("The service answered")) {
      setNote("");
    }
    if (renderJob(job)) return;
    // Poll quickly while the job moves; back off while nothing changes.
    const signature = JSON.stringify([job.status, job.stage, job.queue_position, job.progress]);
    const changed = signature !== lastSignature;
    lastSignature = signature;
    schedule(gen, changed ? POLL_MIN_MS : backoff());
  }

  // ---- actions -----------------------------------------------------------------------------------------------------

  async function submitJob(event) {
    event.preventDefault();
    resetResult();
    const gen = generation;
    const data = new FormData();
    for (const file of el.images.files) data.append("image", file, file.name);
    data.append("instruction", el.instruction.value);
    data.append("operation", el.operation.value);
    data.append("num_images", el.numImages.value);
    if (el.description.value.trim()) data.append("image_description", el.description.value);
    const options = [["model", el.model], ["aspect_ratio", el.aspectRatio], ["image_size", el.imageSize],
                     ["thinking_level", el.thinkingLevel], ["output_format", el.outputFormat]];
    for (const [name, select] of options) if (select && select.value) data.append(name, select.value);

    el.submit.disabled = true;
    el.submit.textContent = "Submitting…";
    el.idle.hidden = false;
    el.job.hidden = true;
    el.status.dataset.status = "submitting";
    setText(el.idle, "Uploading…");
    let res;
    try {
      res = await api("POST", "/v1/jobs", data);
    } catch (err) {
      res = { ok: false, status: 0, body: unreachable(err) };
    } finally {
      el.submit.disabled = false;
      el.submit.textContent = "Submit job";
    }
    if (gen !== generation) return;
    if (!res.ok) {
      el.status.dataset.status = "rejected";
      setText(el.idle, "The job was not accepted.");
      showError(res.body, res.status);
      revealResult();
      el.error.focus({ preventScroll: true });
      return;
    }
    jobId = res.body.id;
    if (!renderJob(res.body)) schedule(gen, POLL_MIN_MS);
    revealResult();
  }

  // On a narrow screen the result sits below the form: bring it into view once there is something to see.
  function revealResult() {
    const box = el.status.closest("section").getBoundingClientRect();
    if (box.top > window.innerHeight * 0.6) {
      const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      el.status.closest("section").scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
    }
  }

  async function cancelJob() {
    if (!jobId) return;
    const gen = generation;
    el.cancel.disabled = true;
    let res;
    try {
      res = await api("DELETE", `/v1/jobs/${encodeURIComponent(jobId)}`);
    } catch (err) {
      res = { ok: false, status: 0, body: unreachable(err) };
    }
    if (gen !== generation) return;
    if (res.ok) {
      setNote("Cancel requested.");
      if (renderJob(res.body)) {
        clearTimeout(pollTimer);
        return;
      }
    } else {
      showError(res.body, res.status); // e.g. 409 conflict: it finished first; the next poll shows the result
      el.cancel.disabled = false;
    }
    schedule(gen, POLL_MIN_MS);
  }

  // ---- form helpers --------------------------------------------------------------------------------------------

  function updateHints() {
    el.operationHint.textContent = OPERATION_HINTS[el.operation.value] || "";
    const n = el.images.files.length;
    const op = el.operation.value;
    let warn = "";
    if (op === "compose" && n === 1) warn = "Compose needs at least 2 images; you chose 1.";
    if (op === "style_transfer" && n > 0 && n !== 2) warn = `Style transfer needs exactly 2 images; you chose ${n}.`;
    if (maxImages && n > maxImages) warn = `This server accepts at most ${maxImages} images; you chose ${n}.`;
    el.countHint.textContent = warn;
  }

  function updatePreviews() {
    previewUrls.forEach((u) => URL.revokeObjectURL(u));
    previewUrls = [];
    const role = (i) => (el.operation.value === "style_transfer" ? [" · content", " · style"][i] || "" : "");
    el.previews.replaceChildren(...[...el.images.files].map((file, i) => {
      const li = document.createElement("li");
      const url = URL.createObjectURL(file);
      previewUrls.push(url);
      const img = document.createElement("img");
      img.alt = "";
      img.src = url;
      img.addEventListener("error", () => { img.hidden = true; li.classList.add("unreadable"); });
      const cap = document.createElement("span");
      cap.textContent = `${i + 1}${role(i)} · ${file.name} (${fmtBytes(file.size)})`;
      li.append(img, cap);
      return li;
    }));
    updateHints();
  }

  // ---- start-up ----------------------------------------------------------------------------------------------------

  async function loadMeta() {
    try {
      const res = await api("GET", "/v1");
      if (!res.ok || !res.body) return;
      const meta = res.body;
      authRequired = meta.auth === "api_key";
      el.auth.hidden = !authRequired;
      el.apiKey.required = authRequired;
      if (meta.limits) {
        maxImages = meta.limits.max_images || null;
        const range = meta.limits.num_images;
        if (Array.isArray(range) && range.length === 2) {
          el.numImages.min = range[0];
          el.numImages.max = range[1];
        }
      }
      const model = meta.model && meta.model !== meta.provider ? ` (${meta.model})` : "";
      el.provider.textContent = meta.provider ? `provider: ${meta.provider}${model}` : "";
      updateHints();
    } catch {
      el.provider.textContent = "";
    }
  }

  function fillSelect(select, values) {
    const keep = select.value;
    select.replaceChildren(new Option("Default", ""));
    for (const value of values || []) select.add(new Option(value, value));
    select.value = (values || []).includes(keep) ? keep : "";
    select.disabled = !(values && values.length);
  }

  function updateModelOptions() {
    const m = models[el.model.value] || models[el.model.dataset.default] || {};
    fillSelect(el.aspectRatio, m.aspect_ratios);
    fillSelect(el.imageSize, m.image_sizes);
    fillSelect(el.thinkingLevel, m.thinking_levels);
  }

  async function loadModels() {
    try {
      const res = await api("GET", "/v1/models");
      if (!res.ok || !res.body || !Array.isArray(res.body.models)) return;
      models = {};
      el.model.replaceChildren(new Option(`Default (${res.body.default})`, ""));
      el.model.dataset.default = res.body.default;
      for (const m of res.body.models) {
        models[m.id] = m;
        if (!m.retired) el.model.add(new Option(`${m.display_name} — ${m.id}`, m.id));
      }
      updateModelOptions();
    } catch {
      // the page still works without the catalogue: every option stays at the model's default
    }
  }

  async function loadReadiness() {
    try {
      const res = await api("GET", "/readyz");
      const ready = res.ok;
      el.ready.dataset.state = ready ? "ready" : "not-ready";
      const failing = res.body && Array.isArray(res.body.failing) ? `: ${res.body.failing.join(", ")}` : "";
      el.ready.textContent = ready ? "service ready" : `service not ready${failing}`;
      el.ready.title = ready ? "" : "Jobs are accepted but may wait until the missing processes start.";
    } catch {
      el.ready.dataset.state = "not-ready";
      el.ready.textContent = "service unreachable";
    }
  }

  el.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  el.apiKey.addEventListener("input", () => {
    const key = el.apiKey.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  });
  el.images.addEventListener("change", updatePreviews);
  el.operation.addEventListener("change", updatePreviews);
  el.model.addEventListener("change", updateModelOptions);
  el.form.addEventListener("submit", submitJob);
  el.cancel.addEventListener("click", cancelJob);
  updateHints();
  loadMeta();
  loadModels();
  loadReadiness();
})();
