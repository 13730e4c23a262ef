// The sandbox chat page: who you are, the chat, the work items, the request log, the fault
// switches. Everything goes through the page API (/api/*); live changes arrive as
// server-sent events and are applied idempotently (messages by id, log lines by seq).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    users: [],
    bot: { name: "abort-bot", open_id: "" },
    group: { chat_id: "", name: "Docs Team" },
    me: localStorage.getItem("sandbox.me") || "alice",
    view: localStorage.getItem("sandbox.view") || "group",
    lang: localStorage.getItem("sandbox.lang") || "en_us",
    messages: new Map(),
    items: [],
    log: [],
    seen: new Set(),
    switches: { rate_limited: false, slow_ms: 0 },
  };
  const COLORS = { alice: "#3370ff", bob: "#00b365", carol: "#f77234", dave: "#7f3bf5" };
  const SUGGESTIONS = [
    ["/abort 12345 repeat duplicate of 12001", "done"],
    ["/abort 12345", "pick a reason"],
    ["/restore 12348 restart", "restore"],
    ["/abort 22003 cancel", "20007 already aborted"],
    ["/abort 99999 cancel", "30005 not found"],
    ["/abort 32001 cancel", "20056 state flow"],
    ["/abort 12349 test", "20090 rule"],
    ["/help", "help"],
  ];

  function h(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) throw new Error((data && data.error) || "HTTP " + resp.status);
    return data;
  }

  function user(key) { return state.users.find((u) => u.key === key); }
  function me() { return user(state.me) || state.users[0]; }
  function resolveAt(id) {
    if (id === state.bot.open_id) return state.bot.name;
    const u = state.users.find((x) => x.open_id === id);
    return u ? u.name : null;
  }
  function currentChat() {
    if (state.view === "p2p") return me() ? me().p2p_chat : "";
    return state.group.chat_id;
  }
  function time(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }
  // Long ids in a path (project keys, message ids) shortened for the log; the full path is
  // in the row's tooltip.
  function shortPath(path) {
    return path.split("/").map((seg) => (seg.length > 14 ? seg.slice(0, 7) + "…" + seg.slice(-3) : seg)).join("/");
  }

  // ---- toasts and the confirm dialog ------------------------------------------------------

  // At most MAX_TOASTS at once: a new one replaces the oldest, and the same words shown
  // again replace their earlier toast instead of stacking a copy.
  const MAX_TOASTS = 3;
  const TOAST_MS = 4000;

  function toast(t) {
    if (!t) return;
    const text = (t.i18n && t.i18n[state.lang]) || t.content || "";
    if (!text) return;
    const area = $("toasts");
    for (const old of Array.from(area.children)) {
      if (old.dataset.text === text) old.remove();
    }
    while (area.childElementCount >= MAX_TOASTS) area.firstElementChild.remove();
    const node = h("div", "toast toast-" + (t.type || "info"));
    node.dataset.text = text;
    node.appendChild(h("span", "toast-icon", { success: "✓", error: "!", warning: "!", info: "i" }[t.type] || "i"));
    node.appendChild(h("span", "toast-text", text));
    area.appendChild(node);
    setTimeout(() => node.remove(), TOAST_MS);
  }

  function confirmDialog(title, text) {
    return new Promise((resolve) => {
      $("modal-title").textContent = title || "";
      $("modal-text").textContent = text || "";
      $("modal-ok").textContent = state.lang === "zh_cn" ? "确定" : "OK";
      $("modal-cancel").textContent = state.lang === "zh_cn" ? "取消" : "Cancel";
      $("modal").hidden = false;
      const close = (v) => {
        $("modal").hidden = true;
        $("modal-ok").onclick = null;
        $("modal-cancel").onclick = null;
        resolve(v);
      };
      $("modal-ok").onclick = () => close(true);
      $("modal-cancel").onclick = () => close(false);
    });
  }

  // ---- chat -------------------------------------------------------------------------------

  function avatar(key, label) {
    const a = h("div", "avatar", label);
    a.style.background = COLORS[key] || "#3370ff";
    return a;
  }

  function renderMessage(m) {
    const row = h("div", "msg msg-" + m.from);
    row.dataset.id = m.id;
    if (m.from === "bot") {
      const a = avatar("bot", "AB");
      a.classList.add("avatar-bot");
      row.appendChild(a);
    } else {
      const u = user(m.sender);
      row.appendChild(avatar(m.sender, u ? u.name.slice(0, 1) : "?"));
    }
    const main = h("div", "msg-main");
    const meta = h("div", "msg-meta");
    if (m.from === "bot") {
      meta.appendChild(h("span", "msg-name", state.bot.name));
      meta.appendChild(h("span", "bot-tag", "Bot"));
    } else {
      const u = user(m.sender);
      meta.appendChild(h("span", "msg-name", u ? u.name : m.sender));
    }
    meta.appendChild(h("span", "msg-time", time(m.at_ms)));
    if (m.updates > 0) meta.appendChild(h("span", "msg-edited", state.lang === "zh_cn" ? "已更新" : "updated"));
    main.appendChild(meta);
    if (m.from === "bot" && m.card) {
      main.appendChild(window.LarkCard.render(m.card, {
        lang: state.lang,
        resolveAt,
        confirm: confirmDialog,
        onAction: (action) => click(m.id, action),
      }));
    } else {
      const bubble = h("div", "bubble");
      bubble.innerHTML = mentionHtml(m.text || "");
      main.appendChild(bubble);
      if (m.note) main.appendChild(h("div", "msg-note", m.note));
    }
    row.appendChild(main);
    return row;
  }

  function mentionHtml(text) {
    const esc = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    return esc.replace(/@abort-bot/gi, '<span class="lc-at">@abort-bot</span>');
  }

  function renderMessages() {
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    box.replaceChildren();
    const chat = currentChat();
    const list = Array.from(state.messages.values()).filter((m) => m.chat_id === chat);
    if (!list.length) {
      const empty = h("div", "empty");
      empty.appendChild(h("div", "empty-title", state.view === "group"
        ? "This is the Docs Team group. abort-bot is a member."
        : "Your direct chat with abort-bot."));
      empty.appendChild(h("div", "empty-text", state.view === "group"
        ? "Mention the bot, e.g. @abort-bot /abort 12345 repeat — or pick a command below."
        : "No mention needed here: type /abort 12345 repeat."));
      box.appendChild(empty);
    }
    for (const m of list) box.appendChild(renderMessage(m));
    if (atBottom || list.length < 3) box.scrollTop = box.scrollHeight;
  }

  function upsertMessage(m) {
    const known = state.messages.has(m.id);
    state.messages.set(m.id, m);
    if (m.chat_id !== currentChat()) return;
    const existing = document.querySelector('.msg[data-id="' + CSS.escape(m.id) + '"]');
    if (known && existing) {
      existing.replaceWith(renderMessage(m));
    } else {
      renderMessages();
      const box = $("messages");
      box.scrollTop = box.scrollHeight;
    }
  }

  async function click(messageId, action) {
    const body = Object.assign({ user: state.me, message_id: messageId }, action);
    try {
      const answer = await api("POST", "/api/clicks", body);
      toast(answer.toast);
    } catch (e) {
      toast({ type: "error", content: String(e.message || e) });
    }
  }

  async function send(text) {
    const hint = $("composer-hint");
    hint.textContent = "";
    try {
      const r = await api("POST", "/api/messages", { user: state.me, chat: state.view, text });
      if (r.delivered === false && r.note) hint.textContent = r.note;
      else if (r.status && r.status !== 200) hint.textContent = "The bot answered Lark with HTTP " + r.status;
    } catch (e) {
      hint.textContent = String(e.message || e);
    }
  }

  function renderSuggestions() {
    const box = $("suggest");
    box.replaceChildren();
    for (const [cmd, what] of SUGGESTIONS) {
      const chip = h("button", "chip");
      chip.type = "button";
      chip.appendChild(h("code", null, cmd));
      chip.appendChild(h("span", "chip-what", what));
      chip.addEventListener("click", () => {
        const input = $("composer-input");
        input.value = composerStart() + cmd;
        input.focus();
      });
      box.appendChild(chip);
    }
  }

  // A group message needs the bot's mention, so the group's composer starts with it; the
  // direct chat needs none and starts empty. Switching chats moves what was typed along,
  // with the mention added or taken off.
  const MENTION = "@abort-bot ";

  function composerStart() {
    return state.view === "group" ? MENTION : "";
  }

  function moveDraft() {
    const input = $("composer-input");
    const typed = input.value.replace(/^\s*@abort-bot\s*/i, "").trim();
    input.value = composerStart() + typed;
  }

  function renderComposer() {
    const input = $("composer-input");
    input.placeholder = state.view === "group" ? "@abort-bot /abort 12345 repeat" : "/abort 12345 repeat";
    $("tab-group").classList.toggle("active", state.view === "group");
    $("tab-p2p").classList.toggle("active", state.view === "p2p");
    $("tab-group").textContent = "# " + state.group.name;
  }

  // ---- side panels ------------------------------------------------------------------------

  function renderItems(changed) {
    const body = $("items");
    const before = new Map(Array.from(body.querySelectorAll("tr")).map((tr) => [tr.dataset.id, tr.dataset.aborted]));
    body.replaceChildren();
    for (const it of state.items) {
      const tr = h("tr");
      tr.dataset.id = String(it.id);
      tr.dataset.aborted = String(it.aborted);
      tr.appendChild(h("td", "mono", String(it.id)));
      const type = h("td", null, it.type_name);
      type.appendChild(h("span", "type-key", it.type_key));
      if (it.pattern === "State") type.appendChild(h("span", "pill pill-grey", "state flow"));
      tr.appendChild(type);
      tr.appendChild(h("td", "name", it.name));
      const st = h("td", "state");
      const pill = h("span", "pill " + (it.aborted ? "pill-red" : "pill-green"), it.aborted ? "Aborted" : "Active");
      st.appendChild(pill);
      const why = [it.reason_option, it.reason].filter(Boolean).join(" · ");
      const by = it.changed_by ? "by " + it.changed_by : "";
      if (why || by) st.appendChild(h("div", "state-why", [by, why].filter(Boolean).join(" — ")));
      tr.appendChild(st);
      if (changed && before.has(tr.dataset.id) && before.get(tr.dataset.id) !== tr.dataset.aborted) {
        tr.classList.add("flash");
      }
      body.appendChild(tr);
    }
  }

  const SERVICE = {
    lark: ["bot → Lark", "svc-lark", "the bot called the Lark Open Platform"],
    feishu_project: ["bot → Project", "svc-project", "the bot called Feishu Project"],
    bot: ["Lark → bot", "svc-bot", "Lark delivered an event or a click to the bot"],
  };

  function logRow(l) {
    const row = h("div", "log-row");
    row.dataset.seq = String(l.seq);
    row.dataset.at = String(l.at_ms);
    const [who, cls, about] = SERVICE[l.service] || [l.service, "", ""];
    row.appendChild(h("span", "log-time", time(l.at_ms)));
    const svc = h("span", "log-svc " + cls, who);
    svc.title = about;
    row.appendChild(svc);
    row.appendChild(h("span", "log-method", l.method));
    const path = h("span", "log-path", shortPath(l.path));
    path.title = l.path + (l.detail ? "\n" + l.detail : "");
    row.appendChild(path);
    const st = h("span", "log-status " + statusClass(l), l.status === 0 ? "no answer" : String(l.status));
    if (l.code !== null && l.code !== undefined && l.code !== 0) st.textContent += " · " + l.code;
    row.appendChild(st);
    row.appendChild(h("span", "log-latency", l.latency_ms.toFixed(1) + " ms"));
    if (l.action || l.detail) {
      const detail = h("div", "log-detail");
      if (l.action) detail.appendChild(h("span", "log-action act-" + l.action, l.action));
      if (l.detail) detail.appendChild(document.createTextNode(l.detail));
      row.appendChild(detail);
    }
    return row;
  }

  function statusClass(l) {
    if (l.status === 0 || l.status >= 500) return "st-bad";
    if (l.status >= 400 || (l.code && l.code !== 0)) return "st-warn";
    return "st-ok";
  }

  // Lines arrive as requests finish; they are shown in the order the requests started, so
  // a delivery to the bot sits before the calls it caused. The log follows new lines while
  // it is scrolled to its end; scrolled up to read, it stays where it is.
  function logAtEnd(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  function appendLog(l) {
    if (state.seen.has(l.seq)) return;
    state.seen.add(l.seq);
    state.log.push(l);
    while (state.log.length > 1000) state.seen.delete(state.log.shift().seq);
    const box = $("log");
    const atBottom = logAtEnd(box);
    const row = logRow(l);
    let before = null;
    for (let c = box.lastElementChild; c && Number(c.dataset.at) > l.at_ms; c = c.previousElementSibling) before = c;
    box.insertBefore(row, before);
    while (box.childElementCount > 400) box.firstChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
    $("log-count").textContent = state.log.length + " requests";
  }

  function renderSwitches() {
    $("rate-limited").checked = !!state.switches.rate_limited;
    const slow = $("slow");
    const v = String(state.switches.slow_ms || 0);
    if (!Array.from(slow.options).some((o) => o.value === v)) {
      const o = h("option", null, v + " ms per call");
      o.value = v;
      slow.appendChild(o);
    }
    slow.value = v;
  }

  function renderMe() {
    const sel = $("me");
    sel.replaceChildren();
    for (const u of state.users) {
      const o = h("option", null, u.name);
      o.value = u.key;
      sel.appendChild(o);
    }
    sel.value = me() ? me().key : "";
    $("me-about").textContent = me() ? me().about : "";
    for (const b of document.querySelectorAll("#lang button")) {
      b.classList.toggle("active", b.dataset.lang === state.lang);
    }
  }

  // ---- loading and live updates -----------------------------------------------------------

  async function loadState() {
    const s = await api("GET", "/api/state");
    state.users = s.users;
    state.bot = s.bot;
    state.group = s.group;
    state.messages = new Map(s.messages.map((m) => [m.id, m]));
    state.items = s.items;
    state.switches = s.switches;
    state.log = [];
    state.seen = new Set();
    $("log").replaceChildren();
    for (const l of s.log) appendLog(l);
    $("log").scrollTop = $("log").scrollHeight;
    renderMe();
    renderComposer();
    renderMessages();
    renderItems(false);
    renderSwitches();
    document.body.dataset.ready = "true";
  }

  function connect() {
    const es = new EventSource("/api/events");
    es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn live"; };
    es.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn"; };
    es.onmessage = (e) => {
      let ev;
      try { ev = JSON.parse(e.data); } catch (_) { return; }
      switch (ev.kind) {
        case "message": upsertMessage(ev.message); break;
        case "log": appendLog(ev.line); break;
        case "items": state.items = ev.items; renderItems(true); break;
        case "switches": state.switches = ev.switches; renderSwitches(); break;
        case "resync": loadState().catch(() => {}); break;
        default: break;
      }
    };
  }

  function wire() {
    $("me").addEventListener("change", (e) => {
      state.me = e.target.value;
      localStorage.setItem("sandbox.me", state.me);
      renderMe();
      renderMessages();
    });
    for (const b of document.querySelectorAll("#lang button")) {
      b.addEventListener("click", () => {
        state.lang = b.dataset.lang;
        localStorage.setItem("sandbox.lang", state.lang);
        renderMe();
        renderMessages();
      });
    }
    for (const t of document.querySelectorAll(".chat-tabs .tab")) {
      t.addEventListener("click", () => {
        state.view = t.dataset.view;
        localStorage.setItem("sandbox.view", state.view);
        moveDraft();
        renderComposer();
        renderMessages();
      });
    }
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = $("composer-input");
      const text = input.value.trim();
      if (!text) return;
      input.value = composerStart();
      send(text);
    });
    $("rate-limited").addEventListener("change", (e) => {
      api("POST", "/api/switches", { rate_limited: e.target.checked }).catch((err) => toast({ type: "error", content: String(err.message) }));
    });
    $("slow").addEventListener("change", (e) => {
      api("POST", "/api/switches", { slow_ms: Number(e.target.value) }).catch((err) => toast({ type: "error", content: String(err.message) }));
    });
    $("reset").addEventListener("click", () => {
      api("POST", "/api/reset").catch((err) => toast({ type: "error", content: String(err.message) }));
    });
  }

  wire();
  renderSuggestions();
  connect();
  loadState().catch((e) => { $("composer-hint").textContent = "Cannot load the sandbox state: " + e.message; });
  $("composer-input").value = composerStart();
})();
