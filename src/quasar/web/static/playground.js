// The playground: pick a model, chat with it over a streamed /v1/chat/completions, stop it, see the
// numbers of each reply and the same request as code.
"use strict";

(() => {
  const { $, el, stored, headers, errorOf, call, showError } = Quasar;
  const NUMBERS = ["temperature", "top_p", "max_tokens", "n", "frequency_penalty", "presence_penalty", "seed"];
  const INTEGERS = new Set(["max_tokens", "n", "seed"]);
  const history = [];  // {role, content} of the conversation so far
  let controller = null;
  let codeLang = "curl";

  const keyInput = $("#api-key");
  stored(keyInput, "quasar.apiKey");
  stored($("#system"), "quasar.system");
  const key = () => keyInput.value.trim();

  async function loadModels() {
    const select = $("#model");
    $("#models-error").hidden = true;
    try {
      const body = await call("GET", "/v1/models", key());
      const chosen = select.value || localStorage.getItem("quasar.model");
      select.replaceChildren(...body.data.map((m) => el("option", { value: m.id }, m.id)));
      if (chosen && body.data.some((m) => m.id === chosen)) select.value = chosen;
    } catch (err) {
      showError($("#models-error"), err);
    }
  }
  $("#model").addEventListener("change", (e) => localStorage.setItem("quasar.model", e.target.value));
  keyInput.addEventListener("change", loadModels);

  // The tools field as the request's `tools`: null when empty; a ToolsError (shown, nothing sent) when it
  // is not a JSON array.
  class ToolsError extends Error {}
  function tools() {
    const text = $("#p-tools").value.trim();
    if (!text) return null;
    let value;
    try { value = JSON.parse(text); } catch (err) { throw new ToolsError(`tools: not valid JSON (${err.message})`); }
    if (!Array.isArray(value)) throw new ToolsError("tools: give a JSON array of tools");
    return value;
  }

  // tool_choice offers auto, none, required and each function of the tools field by name.
  function toolChoices() {
    const select = $("#p-tool_choice");
    let names = [];
    try { names = (tools() || []).map((t) => t && t.function && t.function.name).filter((n) => typeof n === "string"); } catch { /* shown on send */ }
    const chosen = select.value;
    const fixed = ["", "auto", "none", "required"].map((v) => el("option", { value: v }, v || "default"));
    const named = names.map((n) => el("option", { value: "function:" + n }, n));
    select.replaceChildren(...fixed, ...named);
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }
  $("#p-tools").addEventListener("input", toolChoices);

  function parameters() {
    const out = {};
    for (const name of NUMBERS) {
      const text = $("#p-" + name).value.trim();
      if (text !== "") out[name] = INTEGERS.has(name) ? parseInt(text, 10) : parseFloat(text);
    }
    const stop = $("#p-stop").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (stop.length) out.stop = stop.length === 1 ? stop[0] : stop;
    if ($("#p-json").checked) out.response_format = { type: "json_object" };
    const listed = tools();
    if (listed) out.tools = listed;
    const choice = $("#p-tool_choice").value;
    if (choice.startsWith("function:")) out.tool_choice = { type: "function", function: { name: choice.slice(9) } };
    else if (choice) out.tool_choice = choice;
    return out;
  }

  function messages(extra) {
    const system = $("#system").value.trim();
    return [...(system ? [{ role: "system", content: system }] : []), ...history, ...(extra ? [extra] : [])];
  }

  function requestBody(extra) {
    return { model: $("#model").value, messages: messages(extra), ...parameters() };
  }

  function bubble(role, label) {
    const content = el("div", { class: "content" });
    const node = el("div", { class: "message " + role, dataset: { role } }, el("div", { class: "who" }, label), content);
    $("#messages").appendChild(node);
    node.scrollIntoView({ block: "end" });
    return content;
  }

  // Server-sent events from a fetch body: yields each `data:` payload as text.
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, ""));
        if (data.length) yield data.join("\n");
      }
    }
  }

  function setStats(parts, requestId) {
    const stats = $("#stats");
    stats.replaceChildren(...parts.map(([name, value]) => el("span", { dataset: { stat: name } }, `${name} ${value}`)));
    if (requestId) stats.dataset.requestId = requestId;
  }

  async function costOf(requestId) {
    // A stream's cost is known only once it ends: read it back from its log row (written within a second).
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 500));
      try {
        const row = await call("GET", "/v1/requests/" + encodeURIComponent(requestId), key());
        return row.cost;
      } catch (err) {
        if (err.status !== 404) return null;
      }
    }
    return null;
  }

  // A reply's tool calls, under its text: each function's name and its arguments (pretty when they are JSON).
  function showCalls(out) {
    let box = out.node.parentNode.querySelector(".tool-calls");
    if (!box) {
      box = el("div", { class: "tool-calls" });
      out.node.parentNode.appendChild(box);
    }
    box.replaceChildren(...out.calls.filter(Boolean).map((call) => {
      let args = call.arguments;
      try { args = JSON.stringify(JSON.parse(args), null, 2); } catch { /* still arriving, or not JSON */ }
      return el("div", { class: "tool-call", dataset: { name: call.name } },
        el("div", { class: "who" }, `Tool call: ${call.name}`), el("pre", {}, el("code", {}, args)));
    }));
  }

  async function send(text) {
    const user = { role: "user", content: text };
    const error = $("#chat-error");
    error.hidden = true;
    let body;
    try {
      body = { ...requestBody(user), stream: true, stream_options: { include_usage: true } };
    } catch (err) {
      if (!(err instanceof ToolsError)) throw err;
      error.textContent = err.message;
      error.hidden = false;
      $("#prompt").value = text;  // nothing was sent: the message stays to send again
      return;
    }
    bubble("user", "You").textContent = text;
    const outputs = new Map();  // choice index -> {node, text, calls}
    const output = (index) => {
      if (!outputs.has(index)) {
        const label = body.n > 1 ? `Assistant (choice ${index + 1})` : "Assistant";
        outputs.set(index, { node: bubble("assistant", label), text: "", calls: [] });
      }
      return outputs.get(index);
    };
    output(0).node.classList.add("waiting");
    controller = new AbortController();
    $("#send").disabled = true;
    $("#stop").disabled = false;
    setStats([["status", "waiting"]]);
    const started = performance.now();
    let first = null;
    let usage = null;
    let requestId = null;
    let cost = null;
    let ended = "done";
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", headers: headers(key()), body: JSON.stringify(body), signal: controller.signal,
      });
      requestId = response.headers.get("x-request-id");
      if (!response.ok) throw await errorOf(response);
      cost = response.headers.get("x-quasar-cost");
      for await (const data of events(response)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Quasar.ApiError(200, chunk);
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const delta = choice.delta || {};
          const piece = delta.content;
          if (!piece && !delta.tool_calls) continue;
          if (first === null) first = performance.now();
          const out = output(choice.index || 0);
          out.node.classList.remove("waiting");
          if (piece) {
            out.text += piece;
            Markdown.render(out.node, out.text);
          }
          for (const part of delta.tool_calls || []) {
            const call = out.calls[part.index || 0] || (out.calls[part.index || 0] = { id: "", name: "", arguments: "" });
            if (part.id) call.id = part.id;
            if (part.function && part.function.name) call.name += part.function.name;
            if (part.function && part.function.arguments) call.arguments += part.function.arguments;
          }
          if (delta.tool_calls) showCalls(out);
        }
      }
    } catch (err) {
      if (err.name === "AbortError") ended = "stopped";
      else { ended = "error"; showError(error, err); }
    } finally {
      controller = null;
      $("#send").disabled = false;
      $("#stop").disabled = true;
      output(0).node.classList.remove("waiting");
    }
    const reply = outputs.get(0);
    history.push(user);
    // A reply that called tools is kept as its text only: the next message goes on without tool results.
    if (reply && reply.text) history.push({ role: "assistant", content: reply.text });
    const done = performance.now();
    const tokens = usage ? usage.completion_tokens : null;
    const parts = [["status", ended]];
    if (tokens !== null) parts.push(["tokens", tokens]);
    if (first !== null) parts.push(["TTFT", `${Math.round(first - started)} ms`]);
    // a rate over less than 10 ms (a reply that came in one burst) says nothing: left out
    if (tokens && first !== null && done - first >= 10) parts.push(["tokens/s", (tokens / ((done - first) / 1000)).toFixed(1)]);
    setStats(parts, requestId);
    if (ended === "error" || !requestId) return;
    if (cost === null) cost = await costOf(requestId);
    if (cost !== null) parts.push(["cost", `$${Number(cost).toFixed(6)}`]);
    setStats(parts, requestId);
  }

  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("#prompt").value.trim();
    if (!text || controller) return;
    $("#prompt").value = "";
    send(text);
  });
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("#composer").requestSubmit(); }
  });
  $("#stop").addEventListener("click", () => controller && controller.abort());
  $("#clear").addEventListener("click", () => { history.length = 0; $("#messages").replaceChildren(); $("#stats").replaceChildren(); });

  // -- View code ---------------------------------------------------------------------------------

  function py(value, indent) {
    const pad = "    ".repeat(indent + 1);
    if (value === null) return "None";
    if (value === true) return "True";
    if (value === false) return "False";
    if (Array.isArray(value)) return value.length ? `[\n${value.map((v) => pad + py(v, indent + 1)).join(",\n")},\n${"    ".repeat(indent)}]` : "[]";
    if (typeof value === "object") {
      return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${py(v, indent)}`).join(", ")}}`;
    }
    return JSON.stringify(value);
  }

  function code(lang) {
    // The conversation with the draft in the box; an empty one gets seed 000's example question.
    const draft = $("#prompt").value.trim() || (history.length ? "" : "How many days are in a year?");
    let body;
    try {
      body = requestBody(draft ? { role: "user", content: draft } : null);
    } catch (err) {
      if (err instanceof ToolsError) return err.message;
      throw err;
    }
    const calls = Boolean(body.tools);  // a reply may then be tool calls instead of text
    const base = location.origin + "/v1";
    if (lang === "curl") {
      const json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
      return `curl ${base}/chat/completions \\\n  -H "Content-Type: application/json" \\\n  -H "Authorization: Bearer YOUR_API_KEY" \\\n  -d '${json}'`;
    }
    const { model, messages: msgs, ...rest } = body;
    if (lang === "python") {
      const args = [`    messages=${py(msgs, 1)},`, `    model=${JSON.stringify(model)},`];
      for (const [k, v] of Object.entries(rest)) args.push(`    ${k}=${py(v, 1)},`);
      return [
        "# pip install --upgrade openai",
        "from openai import OpenAI",
        "",
        "client = OpenAI(",
        '    api_key="YOUR_API_KEY",',
        `    base_url=${JSON.stringify(base)},`,
        ")",
        "completion = client.chat.completions.create(",
        ...args,
        ")",
        calls ? "message = completion.choices[0].message\nprint(message.tool_calls or message.content)"
          : "print(completion.choices[0].message.content)",
      ].join("\n");
    }
    const fields = JSON.stringify({ messages: msgs, model, ...rest }, null, 2).slice(1, -1).trim();
    return [
      "// npm install --save openai or yarn add openai",
      'import OpenAI from "openai";',
      "",
      "const openai = new OpenAI({",
      '  apiKey: "YOUR_API_KEY",',
      `  baseURL: ${JSON.stringify(base)},`,
      "});",
      "const completion = await openai.chat.completions.create({",
      "  " + fields,
      "});",
      calls ? "const message = completion.choices[0].message;\nconsole.log(message.tool_calls ?? message.content);"
        : "console.log(completion.choices[0].message.content);",
    ].join("\n");
  }

  function showCode(lang) {
    codeLang = lang;
    for (const b of document.querySelectorAll(".tabs [data-lang]")) b.classList.toggle("active", b.dataset.lang === lang);
    $("#code").textContent = code(lang);
    $("#code").dataset.lang = lang;
  }
  $("#view-code").addEventListener("click", () => { showCode(codeLang); $("#code-dialog").showModal(); });
  $("#code-close").addEventListener("click", () => $("#code-dialog").close());
  for (const b of document.querySelectorAll(".tabs [data-lang]")) b.addEventListener("click", () => showCode(b.dataset.lang));

  toolChoices();
  loadModels();
})();
