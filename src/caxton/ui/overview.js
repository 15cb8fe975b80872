// Overview: nodes, agents by state, messages/s and handling time (now and the last minutes),
// dead letters; refreshed from /api/v1/stats and on every event of the live stream.
import { events, get } from "./api.js";
import { h, s, state } from "./dom.js";

const KEEP = 150; // samples kept (2 s apart: 5 minutes)
const history = []; // survives page changes while the tab is open

function spark(values) {
  const max = Math.max(1e-9, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, KEEP - 1)) * 100},${38 - (v / max) * 36}`).join(" ");
  return s("svg", { viewBox: "0 0 100 40", preserveAspectRatio: "none", role: "img", "aria-label": "the last minutes" },
    s("polyline", { class: "spark", points: pts }));
}

export async function overview(main, _params, { showError }) {
  const cards = h("div", { class: "cards", id: "overview-cards" });
  main.append(h("h1", {}, "Overview"), cards,
    h("p", { class: "note" }, "Rates are this node's, measured every 2 s while this tab is open."));
  let timer = null; let pending = false; let stopped = false;

  async function refresh() {
    if (pending || stopped) return;
    pending = true;
    try {
      const [stats, members, agents, letters] = await Promise.all([
        get("/api/v1/stats"), get("/api/v1/cluster/members"),
        get("/api/v1/agents?limit=1000"), get("/api/v1/dead-letters?limit=1"),
      ]);
      const now = Date.parse(stats.time);
      const last = history[history.length - 1];
      if (!last || now - last.t >= 1000) {
        let rate = 0; let latency = 0;
        if (last) {
          const dt = (now - last.t) / 1000;
          rate = Math.max(0, stats.messages.handled - last.handled) / dt;
          const dn = stats.processing.count - last.count;
          latency = dn > 0 ? ((stats.processing.seconds_sum - last.sum) / dn) * 1000 : 0;
        }
        history.push({ t: now, handled: stats.messages.handled, count: stats.processing.count,
          sum: stats.processing.seconds_sum, rate, latency });
        while (history.length > KEEP) history.shift();
      }
      const cur = history[history.length - 1];
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
          h("div", { class: "big" }, cur.rate.toFixed(1)), spark(history.map((x) => x.rate)),
          h("div", { class: "note" }, `${stats.messages.handled} handled, ${stats.messages.sent} sent since start`)),
        h("section", { class: "card", "aria-label": "Handling time" }, h("h2", {}, "Handling time"),
          h("div", { class: "big" }, `${cur.latency.toFixed(2)} ms`), spark(history.map((x) => x.latency)),
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
