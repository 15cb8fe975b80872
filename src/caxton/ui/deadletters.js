// Dead letters: each with its reason; redrive one or the selected ones.
import { call, get } from "./api.js";
import { h, time } from "./dom.js";

export async function deadLetters(main, _params, { showError }) {
  const body = h("tbody");
  const status = h("p", { class: "note", role: "status", id: "redrive-status" });
  const all = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all not redriven" });
  let letters = [];
  const path = (d) => `/api/v1/dead-letters/${d.id}/redrive${d.node ? `?node=${encodeURIComponent(d.node)}` : ""}`;
  async function redrive(list) {
    let done = 0;
    for (const d of list) {
      try { await call("POST", path(d)); done++; } catch (err) { showError(err); }
    }
    status.textContent = `Redrove ${done} of ${list.length}.`;
    await draw();
  }
  async function draw() {
    const page = await get("/api/v1/dead-letters?limit=1000");
    letters = page.dead_letters.slice().reverse();
    all.checked = false;
    body.replaceChildren(...letters.map((d) => h("tr", { "data-id": d.id },
      h("td", {}, d.redriven_at ? "" : h("input", { type: "checkbox", class: "pick", value: d.id, "aria-label": `Select dead letter ${d.id}` })),
      h("td", { class: "num" }, d.id), d.node !== undefined ? h("td", {}, d.node) : null,
      h("td", {}, time(d.created_at)), h("td", {}, d.reason, d.details && d.details.error ? `: ${d.details.error}` : ""),
      h("td", {}, d.sender), h("td", {}, d.receiver), h("td", {}, d.message ? d.message.performative : ""),
      h("td", {}, d.redriven_at ? `redriven ${time(d.redriven_at)}` :
        h("button", { type: "button", onclick: () => redrive([d]) }, "Redrive")))));
    countLine.textContent = `${page.total} dead letters` + (page.missing_nodes && page.missing_nodes.length ? `; no answer from ${page.missing_nodes.join(", ")}` : "");
  }
  all.addEventListener("change", () => { for (const c of body.querySelectorAll(".pick")) c.checked = all.checked; });
  const countLine = h("p", { id: "dead-letter-total" });
  const cluster = (await get("/api/v1/cluster/members")).cluster_enabled;
  main.append(h("h1", {}, "Dead letters"), countLine,
    h("div", { class: "row" }, h("button", { type: "button", id: "redrive-selected", onclick: () => {
      const ids = new Set([...body.querySelectorAll(".pick:checked")].map((c) => Number(c.value)));
      if (ids.size) redrive(letters.filter((d) => ids.has(d.id))); else status.textContent = "Select dead letters first.";
    } }, "Redrive selected"), h("button", { type: "button", onclick: () => draw().catch(showError) }, "Refresh")), status,
    h("div", { class: "table-wrap" }, h("table", { id: "dead-letters" }, h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, all), ["Id", ...(cluster ? ["Node"] : []), "Time", "Reason", "From", "To", "Performative", ""].map((c) => h("th", { scope: "col" }, c)))), body)));
  await draw();
  return null;
}
