// Conversations: find one by id or agent, send a message, and see a conversation as a
// sequence diagram with its raw messages beside it (updated live while it goes on).
import { call, events, get } from "./api.js";
import { h, time } from "./dom.js";
import { sequenceDiagram } from "./sequence.js";

const PERFORMATIVES = ["request", "inform", "query_if", "query_ref", "cfp", "propose",
  "accept_proposal", "reject_proposal", "agree", "refuse", "failure", "not_understood", "subscribe",
  "cancel", "confirm", "disconfirm", "inform_if", "inform_ref", "request_when", "request_whenever",
  "propagate", "proxy"];

function sendForm(showError) {
  const to = h("input", { id: "send-to", required: true, placeholder: "manager" });
  const perf = h("select", { id: "send-performative" }, PERFORMATIVES.map((p) => h("option", { value: p }, p)));
  const content = h("textarea", { id: "send-content", rows: 3, placeholder: '{"op":"start"}' });
  return h("form", { id: "send", "aria-label": "Send a message", onsubmit: async (e) => {
    e.preventDefault();
    let parsed;
    const text = content.value.trim();
    try { parsed = text ? JSON.parse(text) : null; } catch (err) { showError(new Error(`Content is not JSON: ${err.message}`)); return; }
    const msg = { receiver: to.value.split(",").map((x) => x.trim()).filter(Boolean), performative: perf.value };
    if (msg.receiver.length === 1) msg.receiver = msg.receiver[0];
    if (text) msg.content = parsed;
    try {
      const { body } = await call("POST", "/api/v1/messages", { json: msg });
      location.hash = `#/conversations/${encodeURIComponent(body.conversation_id)}`;
    } catch (err) { showError(err); }
  } }, h("h2", {}, "Send a message"),
  h("div", { class: "row" }, h("label", { for: "send-to" }, "To (names, comma-separated)", to),
    h("label", { for: "send-performative" }, "Performative", perf)),
  h("label", { for: "send-content", class: "wide" }, "Content (JSON)", content),
  h("p", {}, h("button", { type: "submit", class: "primary" }, "Send")));
}

async function byAgent(agent, out, showError) {
  try {
    const dbg = await get(`/api/v1/agents/${encodeURIComponent(agent)}/debug?messages=100&logs=0`);
    const seen = new Map();
    for (const m of dbg.recent_messages.messages) {
      const c = seen.get(m.conversation_id) || { id: m.conversation_id, n: 0, last: m.created_at, first: m };
      c.n++; c.last = m.created_at; seen.set(m.conversation_id, c);
    }
    const list = [...seen.values()].reverse();
    out.replaceChildren(h("h2", {}, `Conversations of ${agent}`), list.length ? h("ul", { id: "found" }, list.map((c) =>
      h("li", {}, h("a", { href: `#/conversations/${encodeURIComponent(c.id)}` }, c.id),
        ` ${c.n} messages, last ${time(c.last)} (${c.first.performative} from ${c.first.sender})`))) :
      h("p", {}, "No recent messages."));
  } catch (err) { showError(err); }
}

export async function conversations(main, [id], { showError }) {
  const query = h("input", { id: "conv-query", type: "search", placeholder: "conversation id or agent name", value: id || "" });
  const found = h("div");
  const view = h("div", { id: "conversation" });
  main.append(h("h1", {}, "Conversations"),
    h("form", { role: "search", onsubmit: async (e) => {
      e.preventDefault();
      const q = query.value.trim();
      if (!q) return;
      if (/^[a-z][a-z0-9-]{0,62}$/.test(q)) {
        try { await get(`/api/v1/agents/${encodeURIComponent(q)}`); return byAgent(q, found, showError); } catch { /* not an agent */ }
      }
      location.hash = `#/conversations/${encodeURIComponent(q)}`;
    } }, h("div", { class: "row" }, h("label", { for: "conv-query" }, "Conversation id or agent", query),
      h("button", { type: "submit" }, "Find"))),
    found, view, sendForm(showError));
  if (!id) return null;
  async function draw() {
    const page = await get(`/api/v1/conversations/${encodeURIComponent(id)}?limit=1000`);
    const msgs = page.messages;
    view.replaceChildren(h("h2", {}, "Conversation ", h("code", {}, id), ` (${msgs.length} messages)`),
      h("div", { class: "split conv" },
        h("div", { class: "seq", tabindex: "0", "aria-label": "Sequence diagram" }, sequenceDiagram(msgs)),
        h("pre", { id: "raw-messages", tabindex: "0", "aria-label": "Raw messages" }, JSON.stringify(msgs, null, 2))));
  }
  // Subscribe first, then draw once subscribed: no message falls between the two.
  let soon = null;
  const ws = events(`?conversation=${encodeURIComponent(id)}&heartbeat=30s`, (ev) => {
    if ((ev.type === "message" || ev.type === "subscribed") && !soon) {
      soon = setTimeout(() => { soon = null; draw().then(() => showError(null), showError); }, 150);
    }
  });
  try { await draw(); } catch (err) { showError(err); }
  return () => { clearTimeout(soon); ws.close(); };
}
