// The dashboard: usage charts, the request log with its detail, deployments and keys, every number
// read from the API with the master key typed into the page.
"use strict";

(() => {
  const { $, el, stored, call, showError } = Quasar;
  const keyInput = $("#master-key");
  stored(keyInput, "quasar.masterKey");
  const key = () => keyInput.value.trim();
  const api = (method, path, body) => call(method, path, key(), body);
  const fail = (target) => (err) => showError($(target), err);
  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
  const ms = (v) => (v === null || v === undefined ? "" : `${Math.round(v)} ms`);
  const usd = (v) => (v === null || v === undefined ? "" : `$${Number(v).toFixed(6)}`);

  // -- usage charts ------------------------------------------------------------------------------

  function bucketFor(span) {
    return span <= 3 * 3600 ? "minute" : span <= 8 * 86400 ? "hour" : "day";
  }

  async function loadCharts() {
    const span = Number($("#range").value);
    const to = Date.now() / 1000;
    const from = to - span;
    const bucket = bucketFor(span);
    const params = new URLSearchParams({ from: String(from), to: String(to), bucket });
    const groupBy = $("#group-by").value;
    if (groupBy) params.set("group_by", groupBy);
    const body = await api("GET", "/v1/usage/timeseries?" + params);
    const minutes = body.bucket_seconds / 60;
    const groups = new Map();
    for (const row of body.data) {
      const name = groupBy ? String(row.group ?? "(none)") : "all";
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(row);
    }
    // Every bucket of the range gets a point: a bucket with no requests is 0 for the sums and a gap for the
    // percentiles, so a line never joins two buckets across an empty one.
    const size = body.bucket_seconds;
    const starts = [];
    for (let t = Math.floor(from / size) * size; t < to; t += size) starts.push(t);
    const series = (pick, empty) =>
      [...groups].map(([name, rows]) => {
        const at = new Map(rows.map((r) => [r.time, r]));
        return { name, points: starts.map((t) => [t + size / 2, at.has(t) ? pick(at.get(t)) : empty]) };
      });
    const count = (v) => (v >= 100 ? String(Math.round(v)) : String(Math.round(v * 100) / 100));
    const charts = [
      ["requests per minute", (r) => r.requests / minutes, count, 0],
      ["p50 latency (ms)", (r) => r.p50_latency_ms, count, null],
      ["p95 latency (ms)", (r) => r.p95_latency_ms, count, null],
      ["p50 time to first token (ms)", (r) => r.p50_ttft_ms, count, null],
      ["p95 time to first token (ms)", (r) => r.p95_ttft_ms, count, null],
      ["tokens", (r) => r.total_tokens, count, 0],
      ["cost (USD)", (r) => r.cost, (v) => "$" + (v >= 1 ? v.toFixed(2) : v === 0 ? "0" : v.toPrecision(2)), 0],
    ];
    $("#charts").replaceChildren(
      ...charts.map(([title, pick, fmt, empty]) => Charts.line(title, series(pick, empty), from, to, fmt)),
    );
  }

  // -- request log -------------------------------------------------------------------------------

  const pages = [null];  // the cursor of each page seen; the last is the page shown
  let nextCursor = null;

  function filters() {
    const params = new URLSearchParams({ limit: "25" });
    for (const [id, name] of [["f-model", "model"], ["f-key", "key"], ["f-customer", "customer"], ["f-status", "status"], ["f-from", "from"], ["f-to", "to"]]) {
      const value = $("#" + id).value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  async function loadRequests() {
    const params = filters();
    const cursor = pages[pages.length - 1];
    if (cursor) params.set("cursor", cursor);
    const body = await api("GET", "/v1/requests?" + params);
    nextCursor = body.next_cursor;
    $("#older").disabled = !body.has_more;
    $("#newer").disabled = pages.length <= 1;
    $("#requests tbody").replaceChildren(...body.data.map((r) => el("tr", { class: "row " + r.status, dataset: { requestId: r.request_id }, onclick: () => detail(r.request_id) },
      el("td", {}, when(r.created)), el("td", {}, r.model || ""), el("td", {}, r.deployment || ""), el("td", {}, r.status),
      el("td", {}, r.http_status), el("td", {}, r.prompt_tokens + r.completion_tokens), el("td", {}, ms(r.latency_ms)),
      el("td", {}, ms(r.ttft_ms)), el("td", {}, usd(r.cost)), el("td", {}, r.key_id || ""), el("td", {}, r.customer_identifier || ""))));
  }

  function pre(value) {
    return el("pre", {}, typeof value === "string" ? value : JSON.stringify(value, null, 2));
  }

  function traceView(trace) {
    if (!trace) return el("p", {}, "No trace was recorded.");
    const list = (title, items, show) => el("div", { class: "trace-part" }, el("h4", {}, title),
      items && items.length ? el("ul", {}, ...items.map((i) => el("li", {}, show(i)))) : el("p", {}, "none"));
    return el("div", { class: "trace" },
      el("p", {}, `strategy ${trace.strategy || "-"}, answered by ${trace.deployment || "-"} (${trace.provider || "-"}), fallbacks ${trace.fallbacks ?? 0}${trace.truncated ? ", truncated" : ""}`),
      list("candidates", trace.candidates, (c) => c),
      list("dropped", trace.dropped, (d) => `${d.deployment} (${d.model}): ${d.reason}`),
      list("attempts", trace.attempts, (a) => `${a.deployment} via ${a.provider}: ${a.status} in ${Math.round(a.latency * 1000)} ms${a.error ? " - " + a.error : ""}`));
  }

  async function detail(requestId) {
    const box = $("#detail");
    box.hidden = false;
    try {
      const row = await api("GET", "/v1/requests/" + encodeURIComponent(requestId));
      const fields = ["request_id", "created", "model", "deployment", "provider", "status", "http_status", "error", "prompt_tokens", "cached_tokens", "completion_tokens", "cost", "price_version", "latency_ms", "ttft_ms", "routing_ms", "attempts", "cache_hit", "stream", "key_id", "customer_identifier"];
      box.replaceChildren(
        el("h3", {}, "Request " + row.request_id, " ", el("button", { type: "button", onclick: () => { box.hidden = true; } }, "Close")),
        el("dl", {}, ...fields.flatMap((f) => [el("dt", {}, f), el("dd", {}, f === "created" ? when(row[f]) : String(row[f] ?? ""))])),
        el("h4", {}, "Routing trace"), traceView(row.trace),
        el("h4", {}, "Messages"), row.messages ? pre(row.messages) : el("p", {}, "not logged"),
        el("h4", {}, "Reply"), row.reply ? pre(row.reply) : el("p", {}, "not logged"),
        el("h4", {}, "Metadata"), row.metadata ? pre(row.metadata) : el("p", {}, "none"));
      box.scrollIntoView({ block: "nearest" });
    } catch (err) {
      box.replaceChildren(el("p", { class: "error" }, err.message));
    }
  }

  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); pages.length = 1; loadRequests().catch(fail("#dash-error")); });
  $("#older").addEventListener("click", () => { pages.push(nextCursor); loadRequests().catch(fail("#dash-error")); });
  $("#newer").addEventListener("click", () => { if (pages.length > 1) pages.pop(); loadRequests().catch(fail("#dash-error")); });

  // -- deployments -------------------------------------------------------------------------------

  async function loadDeployments() {
    const body = await api("GET", "/admin/deployments");
    $("#deployments tbody").replaceChildren(...body.data.map((d) => el("tr", { dataset: { deployment: d.name } },
      el("td", {}, d.name), el("td", {}, d.model), el("td", {}, d.engine), el("td", {}, d.provider),
      el("td", {}, d.ready ? "yes" : "loading"), el("td", {}, d.cooling_down ? `${d.cooldown_seconds_left.toFixed(1)} s` : "no"),
      el("td", {}, d.in_flight), el("td", {}, d.slots === undefined ? "" : `${d.slots_busy} / ${d.slots}`),
      el("td", {}, d.queued === undefined ? "" : d.queued), el("td", {}, ms(d.latency_ms)))));
  }

  // -- keys --------------------------------------------------------------------------------------

  let editing = null;  // the id of the key the form edits; null: the form creates one

  function keyFields() {
    const number = (id) => { const v = $(id).value.trim(); return v === "" ? null : Number(v); };
    const fields = {
      name: $("#k-name").value.trim(),
      models: $("#k-models").value.split(",").map((s) => s.trim()).filter(Boolean),
      rpm: number("#k-rpm"), tpm: number("#k-tpm"), budget: number("#k-budget"),
      budget_period: $("#k-period").value,
    };
    const expires = $("#k-expires").value.trim();
    if (expires || editing) fields.expires = expires || null;
    return fields;
  }

  function editKey(k) {
    editing = k.id;
    $("#k-name").value = k.name;
    $("#k-models").value = (k.models || []).join(", ");
    $("#k-rpm").value = k.rpm ?? "";
    $("#k-tpm").value = k.tpm ?? "";
    $("#k-budget").value = k.budget ?? "";
    $("#k-period").value = k.budget_period || "total";
    $("#k-expires").value = k.expires ? new Date(k.expires * 1000).toISOString() : "";
    $("#k-submit").textContent = "Save " + k.name;
    $("#k-cancel").hidden = false;
  }

  function resetKeyForm() {
    editing = null;
    $("#key-form").reset();
    $("#k-submit").textContent = "Create key";
    $("#k-cancel").hidden = true;
  }

  function revokeButton(k) {
    const button = el("button", { type: "button", class: "revoke" }, "Revoke");
    button.addEventListener("click", async () => {
      if (button.dataset.armed !== "yes") { button.dataset.armed = "yes"; button.textContent = "Confirm revoke"; return; }
      try { await api("POST", `/admin/keys/${encodeURIComponent(k.id)}/revoke`); await loadKeys(); }
      catch (err) { showError($("#key-error"), err); }
    });
    return button;
  }

  async function loadKeys() {
    const body = await api("GET", "/admin/keys");
    $("#keys tbody").replaceChildren(...body.data.map((k) => el("tr", { dataset: { keyId: k.id, keyName: k.name } },
      el("td", {}, k.name), el("td", {}, k.id), el("td", {}, k.prefix), el("td", {}, (k.models || []).join(", ") || "all"),
      el("td", {}, k.rpm ?? ""), el("td", {}, k.tpm ?? ""), el("td", {}, k.budget === null ? "" : `$${k.budget} / ${k.budget_period}`),
      el("td", {}, when(k.expires)), el("td", { class: "state" }, k.revoked ? "revoked " + when(k.revoked) : "active"),
      el("td", {}, k.revoked ? null : el("button", { type: "button", class: "edit", onclick: () => editKey(k) }, "Edit"), " ", k.revoked ? null : revokeButton(k)))));
  }

  $("#key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#key-error").hidden = true;
    try {
      if (editing) {
        await api("PATCH", "/admin/keys/" + encodeURIComponent(editing), keyFields());
        $("#new-key").hidden = true;
      } else {
        const created = await api("POST", "/admin/keys", keyFields());
        const box = $("#new-key");
        box.replaceChildren("New key (shown only now, copy it): ", el("code", { id: "new-key-value" }, created.key));
        box.hidden = false;
      }
      resetKeyForm();
      await loadKeys();
    } catch (err) {
      showError($("#key-error"), err);
    }
  });
  $("#k-cancel").addEventListener("click", resetKeyForm);

  // -- all of it ---------------------------------------------------------------------------------

  async function refresh() {
    $("#dash-error").hidden = true;
    const results = await Promise.allSettled([loadCharts(), loadRequests(), loadDeployments(), loadKeys()]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) showError($("#dash-error"), failed.reason);
  }
  $("#refresh").addEventListener("click", refresh);
  $("#range").addEventListener("change", () => loadCharts().catch(fail("#dash-error")));
  $("#group-by").addEventListener("change", () => loadCharts().catch(fail("#dash-error")));
  keyInput.addEventListener("change", refresh);
  refresh();
})();
