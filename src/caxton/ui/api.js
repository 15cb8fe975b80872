// Calls to the node's HTTP API with the tab's token; errors carry the API's own words.
const KEY = "caxton.token";

export function token() { return sessionStorage.getItem(KEY) || ""; }
export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status; this.code = code; this.details = details || {};
  }
}

// fetch(path) with the token; JSON in and out. Returns {body, headers, status}.
export async function call(method, path, { json, body, headers } = {}) {
  const h = new Headers(headers || {});
  if (token()) h.set("Authorization", "Bearer " + token());
  let payload = body;
  if (json !== undefined) { h.set("Content-Type", "application/json"); payload = JSON.stringify(json); }
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: payload });
  } catch (exc) {
    throw new ApiError(0, "NETWORK", "the node did not answer: " + exc.message);
  }
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (!resp.ok) {
    const err = data && data.error;
    if (err) throw new ApiError(resp.status, err.code, err.message, err.details);
    throw new ApiError(resp.status, "HTTP", `${resp.status} ${resp.statusText}`);
  }
  return { body: data, headers: resp.headers, status: resp.status };
}

export async function get(path) { return (await call("GET", path)).body; }

// The live event stream; the token rides as a subprotocol (a browser cannot set headers).
export function events(query, onEvent, onClose) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const protocols = ["caxton.events"];
  if (token()) protocols.push("caxton.token." + token());
  const ws = new WebSocket(`${scheme}//${location.host}/api/v1/events${query || ""}`, protocols);
  ws.onmessage = (frame) => { try { onEvent(JSON.parse(frame.data)); } catch { /* not JSON */ } };
  ws.onclose = (e) => { if (onClose) onClose(e); };
  return ws;
}
