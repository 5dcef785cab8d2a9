// A small Markdown renderer that builds DOM nodes and sets only textContent: model output can never
// become HTML. Supports fenced code blocks, headings, lists, paragraphs, **bold**, *italic*, `code`
// and [links](https://...) (http and https only).
"use strict";

const Markdown = (() => {
  const INLINE = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\[[^\]]+\]\((https?:\/\/[^)\s]+)\))/;

  function inline(parent, text) {
    while (text) {
      const m = INLINE.exec(text);
      if (!m) { parent.appendChild(document.createTextNode(text)); return; }
      if (m.index) parent.appendChild(document.createTextNode(text.slice(0, m.index)));
      const token = m[0];
      let node;
      if (m[1]) { node = document.createElement("code"); node.textContent = token.slice(1, -1); }
      else if (m[2]) { node = document.createElement("strong"); inline(node, token.slice(2, -2)); }
      else if (m[3]) { node = document.createElement("em"); inline(node, token.slice(1, -1)); }
      else {
        node = document.createElement("a");
        node.textContent = token.slice(1, token.indexOf("]("));
        node.href = m[5];
        node.rel = "noopener noreferrer";
        node.target = "_blank";
      }
      parent.appendChild(node);
      text = text.slice(m.index + token.length);
    }
  }

  function render(target, source) {
    target.replaceChildren();
    const lines = source.split("\n");
    let i = 0;
    let para = null;
    let list = null;
    const close = () => { para = null; list = null; };
    while (i < lines.length) {
      const line = lines[i];
      const fence = /^\s*```\s*([\w+-]*)/.exec(line);
      if (fence) {
        close();
        const body = [];
        i++;
        while (i < lines.length && !/^\s*```/.test(lines[i])) body.push(lines[i++]);
        i++;
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        if (fence[1]) code.dataset.lang = fence[1];
        code.textContent = body.join("\n");
        pre.appendChild(code);
        target.appendChild(pre);
        continue;
      }
      const heading = /^(#{1,6})\s+(.*)$/.exec(line);
      const item = /^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/.exec(line);
      if (heading) {
        close();
        const h = document.createElement("h" + Math.min(heading[1].length + 2, 6));
        inline(h, heading[2]);
        target.appendChild(h);
      } else if (item) {
        para = null;
        const kind = item[1] ? "OL" : "UL";
        if (!list || list.tagName !== kind) { list = document.createElement(kind); target.appendChild(list); }
        const li = document.createElement("li");
        inline(li, item[2]);
        list.appendChild(li);
      } else if (!line.trim()) {
        close();
      } else {
        list = null;
        if (!para) { para = document.createElement("p"); target.appendChild(para); }
        else para.appendChild(document.createElement("br"));
        inline(para, line);
      }
      i++;
    }
  }

  return { render };
})();
