// The dashboard's shell: login, navigation (hash routes), the error line, page lifecycles.
import { ApiError, get, setToken, token } from "./api.js";
import { h } from "./dom.js";
import { overview } from "./overview.js";
import { agentList, agentPage } from "./agents.js";
import { conversations } from "./conversations.js";
import { live } from "./live.js";
import { deadLetters } from "./deadletters.js";
import { cluster } from "./cluster.js";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
let cleanup = null;

export function showError(err) {
  if (!err) { errorBox.hidden = true; errorBox.textContent = ""; return; }
  if (err instanceof ApiError && err.status === 401) { login(err.message); return; }
  errorBox.textContent = err instanceof ApiError ? err.message : String(err.message || err);
  errorBox.hidden = false;
}

const routes = [
  [/^#\/overview$/, overview],
  [/^#\/agents$/, agentList],
  [/^#\/agents\/([^/]+)$/, agentPage],
  [/^#\/conversations$/, conversations],
  [/^#\/conversations\/(.+)$/, conversations],
  [/^#\/live$/, live],
  [/^#\/dead-letters$/, deadLetters],
  [/^#\/cluster$/, cluster],
];

async function route(event) {
  if (cleanup) { cleanup(); cleanup = null; }
  showError(null);
  const hash = location.hash || "#/overview";
  for (const a of document.querySelectorAll("nav a")) {
    const here = hash === a.getAttribute("href") || hash.startsWith(a.getAttribute("href") + "/");
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    main.replaceChildren();
    try {
      cleanup = (await page(main, m.slice(1).map(decodeURIComponent), { showError })) || null;
    } catch (err) { showError(err); }
    if (event) main.focus({ preventScroll: true }); // after a navigation, reading starts here
    return;
  }
  location.hash = "#/overview";
}

function shell(on) {
  document.getElementById("nav").hidden = !on;
  document.getElementById("logout").hidden = !on || !token();
}

function login(message) {
  if (cleanup) { cleanup(); cleanup = null; }
  setToken("");
  shell(false);
  errorBox.hidden = true;
  const input = h("input", { id: "token", type: "password", name: "token", autocomplete: "off", required: true });
  const problem = h("p", { id: "login-error", class: "error", role: "alert", hidden: !message }, message || "");
  const form = h("form", { class: "login", "aria-labelledby": "login-title", onsubmit: async (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    try {
      await get("/api/v1/agents?limit=1");
    } catch (err) {
      setToken("");
      problem.textContent = err.message; problem.hidden = false; input.focus();
      return;
    }
    start();
  } },
    h("h1", { id: "login-title" }, "Log in to this node"),
    h("p", { class: "note" }, "This node asks for a token (`caxton token create`) or an API key. It is kept in this tab only."),
    h("label", { for: "token" }, "Token or API key", input),
    problem,
    h("p", {}, h("button", { type: "submit", class: "primary" }, "Log in")));
  main.replaceChildren(form);
  input.focus();
}

async function start() {
  try {
    await get("/api/v1/agents?limit=1");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { login(token() ? err.message : ""); return; }
    showError(err);
  }
  shell(true);
  window.onhashchange = route;
  route();
}

// The skip link moves focus without touching the hash (the hash is the page's route).
document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });
document.getElementById("logout").addEventListener("click", () => { setToken(""); window.onhashchange = null; login(""); });
start();
