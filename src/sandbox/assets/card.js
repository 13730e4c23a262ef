// Card JSON 2.0 → DOM, close to how the Feishu client draws a card: header colours, i18n
// texts, markdown, hr, column_set, button, select_static, multi_select_static, input, form.
// Interactions come back through opts.onAction exactly as Lark would put them in
// event.action: {tag, name, value, option, input_value, form_value}.
"use strict";

(function () {
  const SAFE_URL = /^(https?:|mailto:)/i;

  function h(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function escapeHtml(s) {
    return String(s)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&#39;");
  }

  // A text object ({content, i18n_content}) or a plain string, in the chosen language; a
  // missing language falls back to content, then to any configured one.
  function pick(t, lang) {
    if (t === undefined || t === null) return "";
    if (typeof t === "string") return t;
    const i18n = t.i18n_content || t.i18n;
    if (i18n && typeof i18n === "object") {
      if (typeof i18n[lang] === "string") return i18n[lang];
      if (typeof t.content === "string") return t.content;
      const any = Object.values(i18n).find((v) => typeof v === "string");
      if (any !== undefined) return any;
    }
    return typeof t.content === "string" ? t.content : "";
  }

  // ---- markdown (the subset cards use) ----------------------------------------------------

  // `shared`: the placeholder slots of the enclosing call, so text nested in a link or font
  // keeps its placeholders until the outermost call restores them all.
  function inline(src, ctx, shared) {
    const slots = shared || [];
    const keep = (html) => {
      slots.push(html);
      return "\u0000" + (slots.length - 1) + "\u0000";
    };
    let s = src;
    // code spans first: nothing inside them is markup
    s = s.replace(/`([^`]+)`/g, (_, code) => keep('<code class="lc-code">' + escapeHtml(code) + "</code>"));
    // HTML entities, which Lark decodes in markdown to show a character that would be markup
    // (protocol/lark.md §5.3; the rich-text page's 特殊字符转义说明: `&#N;` numbers and the
    // named &nbsp; &ensp; &emsp; &sim;). The decoded character is text, never markup again.
    s = s.replace(ENTITY, (all, num, name) => {
      const ch = num !== undefined ? decodeNumber(num) : NAMED[name];
      return ch === undefined ? all : keep(escapeHtml(ch));
    });
    // mentions: <at id=ou_x></at>, <at user_id="…"></at>, <at id=all></at>
    s = s.replace(/<at\s+(?:id|open_id|user_id|union_id|email)\s*=\s*["']?([^"'>\s]+)["']?\s*>(.*?)<\/at>/gi, (_, id, inner) => {
      const name = id === "all" ? (ctx.lang === "zh_cn" ? "所有人" : "all") : ctx.resolveAt(id) || inner || id;
      return keep('<span class="lc-at">@' + escapeHtml(name) + "</span>");
    });
    // <link url='…'>text</link>
    s = s.replace(/<link\s+url\s*=\s*["']([^"']*)["'][^>]*>(.*?)<\/link>/gi, (_, url, text) => keep(link(url, inline(text, ctx, slots))));
    // [text](url)
    s = s.replace(/\[([^\]]*)\]\(([^)\s]*)\)/g, (_, text, url) => keep(link(url, inline(text, ctx, slots))));
    // <font color='red'>text</font> and <text_tag color='…'>text</text_tag>
    s = s.replace(/<font\s+color\s*=\s*["']?([a-z_-]+)["']?\s*>(.*?)<\/font>/gi, (_, color, text) =>
      keep('<span class="lc-font-' + escapeHtml(color) + '">' + inline(text, ctx, slots) + "</span>"));
    s = s.replace(/<text_tag\s+color\s*=\s*["']?([a-z_-]+)["']?\s*>(.*?)<\/text_tag>/gi, (_, color, text) =>
      keep('<span class="lc-tag lc-tag-' + escapeHtml(color) + '">' + escapeHtml(text) + "</span>"));
    // bare URLs become links, as in Feishu
    s = s.replace(/\bhttps?:\/\/[^\s<>()]+/g, (url) => keep(link(url, escapeHtml(url))));
    s = escapeHtml(s);
    s = s.replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>");
    s = s.replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<i>$2</i>");
    s = s.replace(/~~([^~]+)~~/g, "<s>$1</s>");
    if (shared) return s;
    // placeholders may nest (a link inside bold), so restore until none is left
    for (let i = 0; i < 8 && s.indexOf("\u0000") >= 0; i++) {
      s = s.replace(/\u0000(\d+)\u0000/g, (_, n) => slots[Number(n)]);
    }
    return s;
  }

  const ENTITY = /&(?:#(\d{1,7})|(nbsp|ensp|emsp|sim));/g;
  const NAMED = { nbsp: "\u00a0", ensp: "\u2002", emsp: "\u2003", sim: "~" };

  function decodeNumber(num) {
    const n = Number(num);
    if (!(n > 0 && n <= 0x10ffff) || (n >= 0xd800 && n <= 0xdfff)) return undefined;
    return String.fromCodePoint(n);
  }

  function link(url, innerHtml) {
    if (!SAFE_URL.test(url)) return innerHtml;
    return '<a class="lc-link" href="' + escapeHtml(url) + '" target="_blank" rel="noopener noreferrer">' + innerHtml + "</a>";
  }

  function markdown(src, ctx) {
    const out = h("div", "lc-md");
    const lines = String(src).replace(/\r\n/g, "\n").split("\n");
    let list = null;
    let fence = null;
    for (const line of lines) {
      if (fence) {
        if (/^```/.test(line)) {
          out.appendChild(fence);
          fence = null;
        } else {
          fence.firstChild.textContent += (fence.firstChild.textContent ? "\n" : "") + line;
        }
        continue;
      }
      if (/^```/.test(line)) {
        list = null;
        fence = h("pre", "lc-pre");
        fence.appendChild(h("code", null, ""));
        continue;
      }
      const bullet = /^\s*[-*]\s+(.*)$/.exec(line);
      const numbered = /^\s*(\d+)\.\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        const kind = bullet ? "ul" : "ol";
        if (!list || list.tagName.toLowerCase() !== kind) {
          list = h(kind, "lc-list");
          out.appendChild(list);
        }
        const li = h("li");
        li.innerHTML = inline(bullet ? bullet[1] : numbered[2], ctx);
        list.appendChild(li);
        continue;
      }
      list = null;
      const heading = /^(#{1,4})\s+(.*)$/.exec(line);
      if (heading) {
        const el = h("div", "lc-h" + heading[1].length);
        el.innerHTML = inline(heading[2], ctx);
        out.appendChild(el);
      } else if (/^\s*(---|\*\*\*)\s*$/.test(line)) {
        out.appendChild(h("hr", "lc-hr"));
      } else if (/^>\s?/.test(line)) {
        const q = h("div", "lc-quote");
        q.innerHTML = inline(line.replace(/^>\s?/, ""), ctx);
        out.appendChild(q);
      } else if (line.trim() === "") {
        out.appendChild(h("div", "lc-gap"));
      } else {
        const p = h("div", "lc-line");
        p.innerHTML = inline(line, ctx);
        out.appendChild(p);
      }
    }
    if (fence) out.appendChild(fence);
    return out;
  }

  // ---- components -------------------------------------------------------------------------

  function callbackValue(el) {
    const b = (el.behaviors || []).find((x) => x && x.type === "callback");
    if (b) return b.value === undefined ? {} : b.value;
    return el.value === undefined ? undefined : el.value;
  }

  function openUrl(el) {
    const b = (el.behaviors || []).find((x) => x && x.type === "open_url");
    if (!b) return null;
    return b.default_url || b.pc_url || b.url || null;
  }

  function align(el, node) {
    if (el.text_align) node.style.textAlign = el.text_align;
  }

  function renderText(t, ctx, cls) {
    const content = pick(t, ctx.lang);
    if (t && (t.tag === "lark_md" || t.tag === "markdown")) {
      const md = markdown(content, ctx);
      if (cls) md.classList.add(cls);
      return md;
    }
    return h("div", "lc-plain" + (cls ? " " + cls : ""), content);
  }

  function button(el, ctx) {
    const type = el.type || "default";
    const b = h("button", "lc-btn lc-btn-" + type + " lc-size-" + (el.size || "medium"));
    b.type = "button";
    if (el.width === "fill") b.classList.add("lc-fill");
    const label = h("span", "lc-btn-label", pick(el.text, ctx.lang));
    b.appendChild(label);
    if (el.name) b.dataset.name = el.name;
    if (el.disabled) {
      b.disabled = true;
      if (el.disabled_tips) b.title = pick(el.disabled_tips, ctx.lang);
    }
    if (el.hover_tips) b.title = pick(el.hover_tips, ctx.lang);
    b.addEventListener("click", async () => {
      if (b.disabled) return;
      if (el.confirm) {
        const ok = await ctx.confirm(pick(el.confirm.title, ctx.lang), pick(el.confirm.text, ctx.lang));
        if (!ok) return;
      }
      const url = openUrl(el);
      if (url && SAFE_URL.test(url)) window.open(url, "_blank", "noopener");
      if (el.form_action_type === "reset" && ctx.form) {
        ctx.form.reset();
        return;
      }
      if (el.form_action_type === "submit" && ctx.form) {
        const collected = ctx.form.collect();
        if (!collected.ok) return;
        ctx.busy(b, ctx.onAction({ tag: "button", name: el.name, value: callbackValue(el) ?? {}, form_value: collected.values }));
        return;
      }
      const value = callbackValue(el);
      if (value !== undefined) ctx.busy(b, ctx.onAction({ tag: "button", name: el.name, value }));
    });
    return b;
  }

  function fieldWrap(el, ctx, control) {
    const wrap = h("div", "lc-field");
    if (el.width === "fill" || !el.width) wrap.classList.add("lc-fill");
    else if (/^\d+px$/.test(el.width)) wrap.style.width = el.width;
    if (el.label) {
      const label = h("div", "lc-label", pick(el.label, ctx.lang));
      if (el.required) label.appendChild(h("span", "lc-required", " *"));
      wrap.appendChild(label);
    }
    wrap.appendChild(control);
    const err = h("div", "lc-error");
    wrap.appendChild(err);
    return { wrap, err };
  }

  function selectStatic(el, ctx, multiple) {
    const sel = h("select", "lc-select");
    if (multiple) sel.multiple = true;
    if (el.name) sel.name = el.name;
    if (el.disabled) sel.disabled = true;
    if (!multiple) {
      const ph = h("option", null, pick(el.placeholder, ctx.lang) || (ctx.lang === "zh_cn" ? "请选择" : "Select"));
      ph.value = "";
      ph.disabled = true;
      sel.appendChild(ph);
    }
    for (const o of el.options || []) {
      const opt = h("option", null, pick(o.text, ctx.lang) || o.value);
      opt.value = o.value;
      sel.appendChild(opt);
    }
    const initial = multiple ? el.selected_values || [] : el.initial_option;
    if (multiple) {
      for (const opt of sel.options) opt.selected = initial.includes(opt.value);
    } else {
      sel.value = initial !== undefined && initial !== null ? initial : "";
    }
    if (!multiple && sel.value === "") sel.selectedIndex = 0;
    const { wrap, err } = fieldWrap(el, ctx, sel);
    if (ctx.form && el.name) {
      ctx.form.register(el.name, {
        get: () => (multiple ? Array.from(sel.selectedOptions).map((o) => o.value) : sel.value),
        empty: () => (multiple ? sel.selectedOptions.length === 0 : sel.value === ""),
        reset: () => { sel.value = initial || ""; if (!multiple && sel.value === "") sel.selectedIndex = 0; },
        required: !!el.required,
        error: err,
      });
    } else {
      sel.addEventListener("change", () => {
        const value = callbackValue(el);
        const action = { tag: multiple ? "multi_select_static" : "select_static", name: el.name, value: value ?? {} };
        if (multiple) action.options = Array.from(sel.selectedOptions).map((o) => o.value);
        else action.option = sel.value;
        ctx.busy(sel, ctx.onAction(action));
      });
    }
    return wrap;
  }

  function input(el, ctx) {
    const multiline = el.input_type === "multiline_text";
    const inp = h(multiline ? "textarea" : "input", "lc-input");
    if (!multiline) inp.type = el.input_type === "password" ? "password" : "text";
    if (multiline) inp.rows = el.rows || 3;
    if (el.name) inp.name = el.name;
    inp.placeholder = pick(el.placeholder, ctx.lang);
    const initial = pick(el.default_value !== undefined ? { content: el.default_value, i18n_content: el.i18n_default_value } : undefined, ctx.lang);
    inp.value = initial;
    if (el.max_length) inp.maxLength = el.max_length;
    if (el.disabled) inp.disabled = true;
    const { wrap, err } = fieldWrap(el, ctx, inp);
    if (ctx.form && el.name) {
      ctx.form.register(el.name, {
        get: () => inp.value,
        empty: () => inp.value.trim() === "",
        reset: () => { inp.value = initial; },
        required: !!el.required,
        error: err,
      });
    } else {
      inp.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !multiline) {
          ctx.busy(inp, ctx.onAction({ tag: "input", name: el.name, value: callbackValue(el) ?? {}, input_value: inp.value }));
        }
      });
    }
    return wrap;
  }

  function form(el, ctx) {
    const node = h("form", "lc-form");
    node.addEventListener("submit", (e) => e.preventDefault());
    const fields = new Map();
    const f = {
      register: (name, field) => fields.set(name, field),
      collect: () => {
        let ok = true;
        const values = {};
        for (const [name, field] of fields) {
          field.error.textContent = "";
          if (field.required && field.empty()) {
            ok = false;
            field.error.textContent = ctx.lang === "zh_cn" ? "此项为必填" : "Required";
            continue;
          }
          if (!field.empty()) values[name] = field.get();
        }
        return { ok, values };
      },
      reset: () => fields.forEach((field) => { field.reset(); field.error.textContent = ""; }),
    };
    const inner = Object.assign({}, ctx, { form: f });
    node.appendChild(elements(el.elements, inner, el.direction));
    node.dataset.name = el.name || "";
    return node;
  }

  function columnSet(el, ctx) {
    const row = h("div", "lc-columns lc-flex-" + (el.flex_mode || "none"));
    if (el.horizontal_spacing) row.style.gap = spacing(el.horizontal_spacing);
    if (el.background_style && el.background_style !== "default") row.classList.add("lc-bg-" + el.background_style);
    for (const col of el.columns || []) {
      const c = h("div", "lc-column");
      if (col.width === "weighted") c.style.flex = String(col.weight || 1) + " 1 0";
      else if (/^\d+px$/.test(col.width || "")) c.style.flex = "0 0 " + col.width;
      else c.style.flex = "0 0 auto";
      if (col.vertical_align) c.classList.add("lc-valign-" + col.vertical_align);
      if (col.background_style && col.background_style !== "default") c.classList.add("lc-bg-" + col.background_style);
      c.appendChild(elements(col.elements, ctx, col.direction));
      row.appendChild(c);
    }
    return row;
  }

  function spacing(v) {
    const named = { small: "4px", medium: "8px", large: "12px", extra_large: "16px" };
    return named[v] || (/^\d+px$/.test(v) ? v : "8px");
  }

  function div(el, ctx) {
    const node = h("div", "lc-div");
    if (el.text) node.appendChild(renderText(el.text, ctx));
    if (Array.isArray(el.fields) && el.fields.length) {
      const grid = h("div", "lc-fields");
      for (const f of el.fields) {
        const cell = renderText(f.text, ctx, f.is_short ? "lc-short" : "lc-long");
        grid.appendChild(cell);
      }
      node.appendChild(grid);
    }
    align(el, node);
    return node;
  }

  function element(el, ctx) {
    if (!el || typeof el !== "object") return null;
    switch (el.tag) {
      case "markdown":
      case "lark_md": {
        const md = markdown(pick(el, ctx.lang), ctx);
        md.classList.add("lc-size-" + (el.text_size || "normal"));
        align(el, md);
        return md;
      }
      case "plain_text": {
        const p = h("div", "lc-plain lc-size-" + (el.text_size || "normal"), pick(el, ctx.lang));
        align(el, p);
        return p;
      }
      case "div":
        return div(el, ctx);
      case "hr":
        return h("hr", "lc-hr");
      case "column_set":
        return columnSet(el, ctx);
      case "button":
        return button(el, ctx);
      case "select_static":
        return selectStatic(el, ctx, false);
      case "multi_select_static":
        return selectStatic(el, ctx, true);
      case "input":
        return input(el, ctx);
      case "form":
        return form(el, ctx);
      case "img": {
        const box = h("div", "lc-img", pick(el.alt, ctx.lang) || "image");
        return box;
      }
      case "person": {
        const name = ctx.resolveAt(el.user_id) || el.user_id;
        return h("span", "lc-at", "@" + name);
      }
      case "interactive_container":
      case "collapsible_panel": {
        const box = h("div", "lc-container");
        if (el.header && el.header.title) box.appendChild(renderText(el.header.title, ctx, "lc-panel-title"));
        box.appendChild(elements(el.elements, ctx, el.direction));
        return box;
      }
      default:
        return h("div", "lc-unsupported", "[" + (el.tag || "?") + "]");
    }
  }

  // Card JSON 2.0 lays out a container's elements one per row unless it says
  // `direction: horizontal` (side-by-side buttons need a column_set or that property).
  function elements(list, ctx, direction) {
    const box = h("div", "lc-elements" + (direction === "horizontal" ? " lc-horizontal" : ""));
    for (const el of list || []) {
      const node = element(el, ctx);
      if (node) box.appendChild(node);
    }
    return box;
  }

  function header(hd, ctx) {
    const template = hd.template || "default";
    const node = h("div", "lc-header lc-tpl-" + template);
    const titles = h("div", "lc-titles");
    const title = h("div", "lc-title", pick(hd.title, ctx.lang));
    titles.appendChild(title);
    for (const tag of hd.text_tag_list || []) {
      title.appendChild(h("span", "lc-tag lc-tag-" + (tag.color || "neutral"), pick(tag.text, ctx.lang)));
    }
    const sub = pick(hd.subtitle, ctx.lang);
    if (sub) titles.appendChild(h("div", "lc-subtitle", sub));
    node.appendChild(titles);
    return node;
  }

  // opts: {lang, onAction(action) → Promise, resolveAt(id) → name, confirm(title, text) → Promise<bool>}
  function render(card, opts) {
    const ctx = {
      lang: opts.lang || "en_us",
      onAction: opts.onAction || (() => Promise.resolve()),
      resolveAt: opts.resolveAt || (() => null),
      confirm: opts.confirm || ((t, x) => Promise.resolve(window.confirm(t + "\n" + x))),
      busy: (node, promise) => {
        node.classList.add("lc-busy");
        const done = () => node.classList.remove("lc-busy");
        Promise.resolve(promise).then(done, done);
      },
      form: null,
    };
    const cfg = (card && card.config) || {};
    const root = h("div", "lark-card lc-width-" + (cfg.width_mode || "default"));
    if (!card || card.schema !== "2.0") {
      root.appendChild(h("div", "lc-unsupported", "Not a Card JSON 2.0 card"));
      return root;
    }
    if (card.header) root.appendChild(header(card.header, ctx));
    const body = h("div", "lc-body");
    const b = card.body || {};
    if (b.padding) body.style.padding = b.padding;
    body.appendChild(elements(b.elements, ctx, b.direction));
    root.appendChild(body);
    return root;
  }

  window.LarkCard = { render, markdown: (s, ctx) => markdown(s, Object.assign({ lang: "en_us", resolveAt: () => null }, ctx)) };
})();
