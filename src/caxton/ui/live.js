// Live: the node's event stream as a scrolling list, filtered as you type, paused at will.
import { events } from "./api.js";
import { h, time } from "./dom.js";

const MAX = 500;

function summary(ev) {
  switch (ev.type) {
    case "message": return `${ev.sender} → ${[].concat(ev.receiver).join(", ")} ${ev.performative} (${ev.conversation_id})`;
    case "agent": return `${ev.name} is ${ev.state}`;
    case "dead_letter": return `#${ev.id} ${ev.reason}: ${ev.sender} → ${ev.receiver}`;
    case "member": return `${ev.node} ${ev.previous || "new"} → ${ev.state}`;
    case "conflict": return `${ev.name}: ${ev.winner} kept, ${ev.loser} ${ev.action}`;
    default: return JSON.stringify(ev);
  }
}

export async function live(main) {
  const list = h("ol", { class: "events", id: "events", "aria-live": "off", tabindex: "0", "aria-label": "Events, newest first" });
  const filter = h("input", { id: "event-filter", type: "search", placeholder: "type, agent, performative…" });
  const status = h("span", { class: "note", role: "status", id: "live-status" }, "connecting…");
  const pause = h("button", { type: "button", id: "pause", "aria-pressed": "false" }, "Pause");
  const showHeartbeats = h("input", { type: "checkbox", id: "heartbeats" });
  let paused = false; let held = [];
  const matches = (li) => {
    const t = filter.value.trim().toLowerCase();
    return (!t || li.dataset.text.includes(t)) && (showHeartbeats.checked || li.dataset.type !== "heartbeat");
  };
  const refilter = () => { for (const li of list.children) li.hidden = !matches(li); };
  filter.addEventListener("input", refilter);
  showHeartbeats.addEventListener("change", refilter);
  function add(ev) {
    const text = summary(ev);
    const li = h("li", { "data-type": ev.type, title: JSON.stringify(ev) },
      h("span", { class: "note" }, time(ev.created_at || ev.time || new Date().toISOString()), " "),
      h("span", { class: "kind" }, ev.type), text);
    li.dataset.text = `${ev.type} ${text}`.toLowerCase();
    li.hidden = !matches(li);
    list.prepend(li);
    while (list.children.length > MAX) list.lastElementChild.remove();
  }
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) { held.forEach(add); held = []; }
    status.textContent = paused ? "paused" : "live";
  });
  main.append(h("h1", {}, "Live events"),
    h("div", { class: "row" }, h("label", { for: "event-filter" }, "Filter", filter), pause,
      h("label", { for: "heartbeats", class: "check" }, showHeartbeats, "heartbeats"), status),
    list);
  const ws = events("?heartbeat=15s", (ev) => {
    if (ev.type === "subscribed") { status.textContent = "live"; return; }
    if (paused) { held.push(ev); status.textContent = `paused (${held.length} new)`; return; }
    add(ev);
  }, (e) => { status.textContent = `disconnected (${e.code}${e.reason ? " " + e.reason : ""})`; });
  return () => ws.close();
}
