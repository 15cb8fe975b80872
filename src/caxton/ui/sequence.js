// A conversation as a sequence diagram: one lifeline per participant, one arrow per message
// (performative and time above it), top to bottom in the order the node recorded them.
import { s, time } from "./dom.js";

const COL = 140; const TOP = 50; const ROW = 44; const PAD = 20;

export function sequenceDiagram(messages) {
  const names = [];
  for (const m of messages) {
    for (const n of [m.sender, ...[].concat(m.receiver)]) if (n && !names.includes(n)) names.push(n);
  }
  const x = (n) => PAD + COL / 2 + names.indexOf(n) * COL;
  const arrows = messages.flatMap((m) => [].concat(m.receiver).map((r) => ({ m, r })));
  const width = PAD * 2 + Math.max(1, names.length) * COL;
  const height = TOP + (arrows.length + 1) * ROW;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Sequence diagram: ${names.length} participants, ${arrows.length} messages` },
    s("defs", {}, s("marker", { id: "ah", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const n of names) {
    const g = s("g", { class: "participant", "data-name": n },
      s("line", { class: "lifeline", x1: x(n), x2: x(n), y1: TOP, y2: height - 8 }),
      s("rect", { class: "head", x: x(n) - COL / 2 + 8, y: 8, width: COL - 16, height: 30, rx: 6 }),
      s("text", { x: x(n), y: 28, "text-anchor": "middle" }, n.length > 18 ? n.slice(0, 17) + "…" : n),
      s("title", {}, n));
    svg.append(g);
  }
  arrows.forEach(({ m, r }, i) => {
    const y = TOP + (i + 1) * ROW;
    const x1 = x(m.sender); const x2 = x(r);
    const g = s("g", { class: "message", "data-performative": m.performative, "data-from": m.sender, "data-to": r });
    if (x1 === x2) {
      g.append(s("path", { class: "arrow", d: `M${x1},${y - 10} h30 v14 h-30`, fill: "none", "marker-end": "url(#ah)" }));
    } else {
      g.append(s("line", { class: "arrow", x1, x2: x2 + (x2 > x1 ? -1 : 1), y1: y, y2: y, "marker-end": "url(#ah)" }));
    }
    const mid = x1 === x2 ? x1 + 40 : (x1 + x2) / 2;
    g.append(s("text", { x: mid, y: y - 6, "text-anchor": x1 === x2 ? "start" : "middle" }, m.performative),
      s("text", { class: "time", x: mid, y: y + 14, "text-anchor": x1 === x2 ? "start" : "middle" }, time(m.created_at)),
      s("title", {}, `${m.sender} → ${r}: ${m.performative}\n${JSON.stringify(m.content)}`));
    svg.append(g);
  });
  return svg;
}
