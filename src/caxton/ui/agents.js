// Agents: the table (filter, sort), deploy by dropping a .wasm file, and one agent's page.
import { call, events, get } from "./api.js";
import { bytes, confirmDialog, h, state, table, time } from "./dom.js";

const COLUMNS = [
  { key: "name", label: "Name", render: (a) => h("a", { href: `#/agents/${encodeURIComponent(a.name)}` }, a.name) },
  { key: "node", label: "Node" },
  { key: "state", label: "State", render: (a) => state(a.state) },
  { key: "version", label: "Version", num: true },
  { key: "mailbox", label: "Mailbox", num: true },
  { key: "handled", label: "Handled", num: true },
  { key: "failures", label: "Failures", num: true },
  { key: "memory", label: "Memory", num: true, render: (a) => bytes(a.memory) },
];

function rowOf(a) {
  return { name: a.name, node: a.node || "", state: a.state, version: a.version,
    mailbox: a.mailbox_depth ?? null, handled: a.counters ? a.counters.messages_handled : null,
    failures: a.counters ? a.counters.failures : null, memory: a.memory_bytes ?? null };
}

async function loadRows() {
  const rows = []; let offset = 0;
  for (;;) {
    const page = await get(`/api/v1/agents?limit=1000&offset=${offset}`);
    rows.push(...page.agents.map(rowOf));
    offset += page.agents.length;
    if (!page.agents.length || offset >= page.total) return rows;
  }
}

function deployForm(onDeployed, showError) {
  const file = h("input", { type: "file", id: "deploy-file", accept: ".wasm,application/wasm" });
  const name = h("input", { id: "deploy-name", required: true, pattern: "[a-z][a-z0-9\\-]{0,62}", placeholder: "agent-name" });
  const status = h("p", { class: "note", role: "status", id: "deploy-status" });
  let chosen = null;
  function choose(f) {
    chosen = f;
    if (f && !name.value) name.value = f.name.replace(/\.wasm$/, "").toLowerCase().replace(/[^a-z0-9-]/g, "-");
    status.textContent = f ? `${f.name} (${bytes(f.size)})` : "";
  }
  file.addEventListener("change", () => choose(file.files[0] || null));
  const drop = h("div", { class: "drop", id: "deploy-drop" }, "Drop a .wasm module here, or ",
    h("label", { for: "deploy-file" }, "choose a file", file));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files[0] || null); });
  return h("form", { id: "deploy", "aria-label": "Deploy an agent", onsubmit: async (e) => {
    e.preventDefault();
    if (!chosen) { status.textContent = "Choose a .wasm file first."; return; }
    const form = new FormData();
    form.append("name", name.value.trim());
    form.append("wasm", chosen, chosen.name);
    try {
      const { body } = await call("POST", "/api/v1/agents", { body: form });
      status.textContent = `Deployed ${body.name} (version ${body.version}).`;
      name.value = ""; chosen = null; file.value = "";
      onDeployed(body);
    } catch (err) { showError(err); status.textContent = ""; }
  } },
  h("h2", {}, "Deploy"), drop,
  h("div", { class: "row" }, h("label", { for: "deploy-name" }, "Name", name),
    h("button", { type: "submit", class: "primary" }, "Deploy")), status);
}

export async function agentList(main, _params, { showError }) {
  const filter = h("input", { id: "agent-filter", type: "search", placeholder: "name, state, node…" });
  const t = table(COLUMNS, await loadRows(), { rowId: (r) => r.name });
  filter.addEventListener("input", () => t.setFilter(filter.value));
  const reload = async () => { try { t.setRows(await loadRows()); } catch (err) { showError(err); } };
  main.append(h("h1", {}, "Agents"),
    h("div", { class: "row" }, h("label", { for: "agent-filter" }, "Filter", filter)), t,
    deployForm(reload, showError));
  let soon = null;
  const ws = events("?heartbeat=30s", (ev) => {
    if (ev.type === "agent" && !soon) soon = setTimeout(() => { soon = null; reload(); }, 200);
  });
  return () => { clearTimeout(soon); ws.close(); };
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "")]));
}

export async function agentPage(main, [name], { showError }) {
  const path = `/api/v1/agents/${encodeURIComponent(name)}`;
  async function act(label, method, suffix, question) {
    if (question && !(await confirmDialog(question, label))) return;
    try {
      await call(method, path + suffix);
      if (method === "DELETE") { location.hash = "#/agents"; return; }
      await draw();
    } catch (err) { showError(err); }
  }
  async function upgrade(file) {
    try {
      await call("PUT", path, { body: file, headers: { "Content-Type": "application/wasm" } });
      await draw();
    } catch (err) { showError(err); }
  }
  async function draw() {
    const [a, dbg] = await Promise.all([get(path), get(`${path}/debug?messages=20&logs=50`)]);
    const upgradeFile = h("input", { type: "file", id: "upgrade-file", accept: ".wasm,application/wasm",
      onchange: (e) => { if (e.target.files[0]) upgrade(e.target.files[0]); } });
    const l = a.limits || {};
    main.replaceChildren(
      h("h1", {}, "Agent ", a.name, " ", state(a.state)),
      h("div", { class: "row", role: "group", "aria-label": "Actions" },
        h("button", { type: "button", id: "agent-stop", disabled: a.state === "stopped",
          onclick: () => act("Stop", "POST", "/stop", `Stop agent ${a.name}? Queued messages wait for a start.`) }, "Stop"),
        h("button", { type: "button", id: "agent-start", disabled: a.state === "running",
          onclick: () => act("Start", "POST", "/start", `Start agent ${a.name}?`) }, "Start"),
        h("button", { type: "button", id: "agent-remove", class: "danger",
          onclick: () => act("Remove", "DELETE", "", `Remove agent ${a.name} with its versions and data? This cannot be undone.`) }, "Remove")),
      h("div", { class: "split" },
        h("section", {}, h("h2", {}, "State"), facts([
          ["Kind", a.kind], ["Node", a.node || "this node"], ["Version", a.version],
          ["Mailbox", `${a.mailbox_depth} of ${l.mailbox_capacity}`],
          ["Handled", a.counters.messages_handled], ["Failures", a.counters.failures], ["Restarts", a.counters.restarts],
          ["Memory", `${bytes(a.memory_bytes)} of ${bytes(l.memory_bytes)}`],
          ["Fuel per message", l.fuel ?? "unlimited"], ["Timeout", `${l.execution_timeout_seconds} s`],
          ["Last active", a.last_active ? new Date(a.last_active).toLocaleString() : ""],
          ["Last error", a.last_error]])),
        h("section", {}, h("h2", {}, "Versions"),
          h("ul", { id: "versions" }, a.versions.map((v) => h("li", {}, `version ${v} `,
            v === a.version ? h("strong", {}, "(current)") :
              h("button", { type: "button", onclick: () => act("Roll back", "PUT", `?version=${v}`, `Roll ${a.name} back to version ${v}?`) }, `Roll back to ${v}`)))),
          h("label", { for: "upgrade-file" }, "Upgrade with a new module", upgradeFile))),
      h("h2", {}, "Recent messages"),
      h("div", { class: "table-wrap" }, h("table", { id: "recent-messages" },
        h("thead", {}, h("tr", {}, ["Time", "From", "To", "Performative", "Conversation"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, dbg.recent_messages.messages.slice().reverse().map((m) => h("tr", {},
          h("td", {}, time(m.created_at)), h("td", {}, m.sender), h("td", {}, [].concat(m.receiver).join(", ")),
          h("td", {}, m.performative),
          h("td", {}, h("a", { href: `#/conversations/${encodeURIComponent(m.conversation_id)}` }, m.conversation_id))))))),
      h("h2", {}, "Recent logs"),
      h("pre", { id: "agent-logs", tabindex: "0" }, dbg.logs.map((x) => `${time(x.time)} ${x.level} ${x.text}\n`).join("") || "(no log lines)"));
  }
  await draw();
  let soon = null;
  const ws = events(`?agent=${encodeURIComponent(name)}&heartbeat=30s`, (ev) => {
    if (ev.type === "agent" && !soon) soon = setTimeout(() => { soon = null; draw().catch(showError); }, 200);
  });
  return () => { clearTimeout(soon); ws.close(); };
}
