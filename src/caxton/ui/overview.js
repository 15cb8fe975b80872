// Overview: nodes, agents by state, messages/s and handling time (now and the last minutes),
// dead letters; refreshed from /api/v1/stats and on every event of the live stream.
import { events, get } from "./api.js";
import { h, s, state } from "./dom.js";

const KEEP = 120; // the node's samples (5 s apart: 10 minutes)
let last = null; // the previous poll, for the rates "now"

// Rates between successive samples of the node's own history (GET /api/v1/stats).
function rates(history) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1]; const b = history[i];
    const dt = (Date.parse(b.time) - Date.parse(a.time)) / 1000;
    const n = b.handled - a.handled;
    out.push({ rate: dt > 0 ? Math.max(0, n) / dt : 0, latency: n > 0 ? ((b.seconds_sum - a.seconds_sum) / n) * 1000 : 0 });
  }
  return out;
}

function spark(values, label) {
  const max = Math.max(1e-9, ...values);
  const start = KEEP - 1 - values.length;
  const pts = values.map((v, i) => `${((start + i) / (KEEP - 2)) * 100},${38 - (v / max) * 36}`).join(" ");
  return s("svg", { viewBox: "0 0 100 40", preserveAspectRatio: "none", role: "img",
    "aria-label": `${label} over the last ${Math.round(values.length * 5 / 60)} minutes, at most ${max.toFixed(2)}` },
    s("line", { class: "axis", x1: 0, x2: 100, y1: 39, y2: 39 }), s("polyline", { class: "spark", points: pts }));
}

export async function overview(main, _params, { showError }) {
  const cards = h("div", { class: "cards", id: "overview-cards" });
  main.append(h("h1", {}, "Overview"), cards,
    h("p", { class: "note" }, "Rates are this node's: now (over the last 2 s) and over the last 10 minutes (its 5 s samples)."));
  let timer = null; let pending = false; let stopped = false; let shown = { rate: 0, latency: 0 };
  last = null;

  async function refresh() {
    if (pending || stopped) return;
    pending = true;
    try {
      const [stats, members, agents, letters] = await Promise.all([
        get("/api/v1/stats"), get("/api/v1/cluster/members"),
        get("/api/v1/agents?limit=1000"), get("/api/v1/dead-letters?limit=1"),
      ]);
      const now = { t: Date.parse(stats.time), handled: stats.processing.count, sum: stats.processing.seconds_sum };
      const cur = { rate: 0, latency: 0 };
      if (last && now.t - last.t >= 500) {
        const dn = now.handled - last.handled;
        cur.rate = Math.max(0, dn) / ((now.t - last.t) / 1000);
        cur.latency = dn > 0 ? ((now.sum - last.sum) / dn) * 1000 : 0;
        last = now; shown = cur;
      } else if (!last) { last = now; } else { Object.assign(cur, shown); }
      const history = rates(stats.history || []);
      const byState = {};
      for (const a of agents.agents) byState[a.state] = (byState[a.state] || 0) + 1;
      const nodes = members.members;
      cards.replaceChildren(
        h("section", { class: "card", "aria-label": "Nodes" }, h("h2", {}, "Nodes"),
          h("div", { class: "big" }, nodes.length),
          h("ul", {}, nodes.map((m) => h("li", {}, m.name, " ", state(m.state), ` ${m.agents} agents`)))),
        h("section", { class: "card", "aria-label": "Agents" }, h("h2", {}, "Agents"),
          h("div", { class: "big", id: "agents-total" }, agents.total),
          h("ul", {}, Object.entries(byState).sort().map(([k, v]) => h("li", {}, state(k), ` ${v}`)))),
        h("section", { class: "card", "aria-label": "Messages per second" }, h("h2", {}, "Messages/s"),
          h("div", { class: "big" }, cur.rate.toFixed(1)), spark(history.map((x) => x.rate), "messages per second"),
          h("div", { class: "note" }, `${stats.messages.handled} handled, ${stats.messages.sent} sent since start`)),
        h("section", { class: "card", "aria-label": "Handling time" }, h("h2", {}, "Handling time"),
          h("div", { class: "big" }, `${cur.latency.toFixed(2)} ms`), spark(history.map((x) => x.latency), "milliseconds per message"),
          h("div", { class: "note" }, "mean time inside the agent per message")),
        h("section", { class: "card", "aria-label": "Dead letters" }, h("h2", {}, "Dead letters"),
          h("div", { class: "big", id: "dead-letter-count" }, letters.total),
          h("a", { href: "#/dead-letters" }, "See them")));
    } catch (err) { showError(err); }
    pending = false;
  }
  await refresh();
  timer = setInterval(refresh, 2000);
  let soon = null;
  const ws = events("?heartbeat=30s", () => { if (!soon) soon = setTimeout(() => { soon = null; refresh(); }, 300); });
  return () => { stopped = true; clearInterval(timer); clearTimeout(soon); ws.close(); };
}
