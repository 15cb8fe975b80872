// Small DOM helpers: elements are built with text nodes only (no HTML from data).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

export function state(value) { return h("span", { class: `state state-${value}` }, value); }

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0; let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// A modal confirmation (the <dialog> in index.html); resolves true on Confirm.
export function confirmDialog(text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel || "Confirm";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// A sortable, filterable table. columns: [{key, label, num, render(row)}].
export function table(columns, rows, { sortKey, filter, rowId } = {}) {
  let key = sortKey || columns[0].key; let dir = 1;
  const tbody = h("tbody");
  const heads = columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null, "aria-sort": "none" },
    h("button", { type: "button", onclick: () => { dir = key === c.key ? -dir : 1; key = c.key; draw(); } }, c.label)));
  const el = h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, heads)), tbody));
  let text = filter || "";
  function draw() {
    columns.forEach((c, i) => heads[i].setAttribute("aria-sort", c.key === key ? (dir > 0 ? "ascending" : "descending") : "none"));
    const shown = rows.filter((r) => !text || columns.some((c) => String(r[c.key] ?? "").toLowerCase().includes(text)));
    shown.sort((a, b) => {
      const x = a[key] ?? ""; const y = b[key] ?? "";
      return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
    });
    tbody.replaceChildren(...shown.map((r) => h("tr", { "data-id": rowId ? rowId(r) : null },
      columns.map((c) => h("td", { class: c.num ? "num" : null }, c.render ? c.render(r) : r[c.key] ?? "")))));
  }
  el.setFilter = (t) => { text = t.toLowerCase(); draw(); };
  el.setRows = (r) => { rows = r; draw(); };
  draw();
  return el;
}
