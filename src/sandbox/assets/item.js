// A work item's page in the sandbox: what a card's link opens. The path is the one a Feishu
// Project link has (/<space>/<type>/detail/<id>); the item comes from the page API and is
// fetched again whenever the items change.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const [space, typeKey, , id] = parts;
  const source = "/api/items/" + [space, typeKey, id].map(encodeURIComponent).join("/");

  function h(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function field(list, name, value) {
    list.appendChild(h("dt", null, name));
    list.appendChild(h("dd", null, value === "" || value === null || value === undefined ? "—" : value));
  }

  function show(it) {
    $("item-missing").hidden = true;
    document.title = it.id + " " + it.name + " · Feishu Project (emulated)";
    $("item-where").textContent = it.space_name + " (" + it.simple_name + ") / " + it.type_name + " (" + it.type_key + ")";
    $("item-id").textContent = "#" + it.id;
    $("item-name").textContent = it.name;
    const state = $("item-state");
    state.replaceChildren(h("span", "pill " + (it.aborted ? "pill-red" : "pill-green"), it.aborted ? "Aborted" : "Active"));
    state.dataset.aborted = String(it.aborted);
    const list = $("item-fields");
    list.replaceChildren();
    field(list, "Space", it.space_name + " · simple_name " + it.simple_name + " · project_key " + it.project_key);
    field(list, "Type", it.type_name + " · " + it.type_key);
    field(list, "Flow", it.pattern === "State" ? "state flow (cannot be aborted through the API)" : "node flow");
    field(list, "Reason option", it.reason_option);
    field(list, "Reason", it.reason);
    field(list, "Last changed by", it.changed_by);
    document.body.dataset.ready = "true";
  }

  function missing(text) {
    $("item-where").textContent = "";
    $("item-id").textContent = "";
    $("item-name").textContent = "";
    $("item-state").replaceChildren();
    $("item-fields").replaceChildren();
    const box = $("item-missing");
    box.textContent = text;
    box.hidden = false;
    document.body.dataset.ready = "true";
  }

  async function load() {
    if (parts.length !== 4 || parts[2] !== "detail") {
      missing("Not a work item link.");
      return;
    }
    try {
      const resp = await fetch(source);
      const data = await resp.json().catch(() => null);
      if (resp.ok && data) show(data);
      else missing((data && data.error) || "HTTP " + resp.status);
    } catch (e) {
      missing("Cannot reach the sandbox: " + (e.message || e));
    }
  }

  const es = new EventSource("/api/events");
  es.onmessage = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch (_) { return; }
    if (ev.kind === "items" || ev.kind === "resync") load();
  };
  load();
})();
