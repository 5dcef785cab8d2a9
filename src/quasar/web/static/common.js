// What both pages share: keys kept in localStorage, API calls that surface the API's own error words.
"use strict";

const Quasar = (() => {
  const $ = (sel) => document.querySelector(sel);

  function stored(input, name) {
    input.value = localStorage.getItem(name) || "";
    input.addEventListener("input", () => localStorage.setItem(name, input.value.trim()));
  }

  function headers(key) {
    const h = { "Content-Type": "application/json" };
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || `HTTP ${status}`);
      this.status = status;
      this.type = e.type;
      this.code = e.code;
      this.param = e.param;
    }
  }

  async function errorOf(response) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    return new ApiError(response.status, body);
  }

  async function call(method, path, key, body) {
    const response = await fetch(path, {
      method, headers: headers(key), body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function showError(target, err) {
    target.textContent = err.code ? `${err.message} (${err.code})` : err.message;
    target.hidden = false;
  }

  return { $, stored, headers, call, errorOf, el, showError, ApiError };
})();
