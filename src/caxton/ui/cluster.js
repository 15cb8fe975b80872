// Cluster: the members this node knows, with their state and the agents they host.
import { get } from "./api.js";
import { h, state } from "./dom.js";

export async function cluster(main, _params, { showError }) {
  const out = h("div");
  main.append(h("h1", {}, "Cluster"), out);
  async function draw() {
    const m = await get("/api/v1/cluster/members");
    out.replaceChildren(
      h("p", {}, m.cluster_enabled ? `${m.total} members, seen from ${m.node}.` : `Not clustered: this node (${m.node}) alone.`),
      h("div", { class: "table-wrap" }, h("table", { id: "members" },
        h("thead", {}, h("tr", {}, ["Name", "State", "Agents", "API", "Cluster", "Last change"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, m.members.map((x) => h("tr", { "data-name": x.name },
          h("td", {}, x.name, x.self ? " (this node)" : ""), h("td", {}, state(x.state)), h("td", { class: "num" }, x.agents),
          h("td", {}, x.api_address || ""), h("td", {}, x.cluster_address || ""),
          h("td", {}, x.last_change ? new Date(x.last_change).toLocaleString() : "")))))));
  }
  await draw();
  const timer = setInterval(() => draw().catch(showError), 3000);
  return () => clearInterval(timer);
}
