// lsnode dashboard: reads /dashboard/api/state every 5 s and draws a lookup
// from /dashboard/api/lookup. Everything the overlay hands us (AORs,
// contacts, domains, errors) goes into the page as text, never as markup.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function short(id) { return id ? "…" + id.slice(-6) : ""; }

// Names and domains members announce (services "name:…", "domain:…"):
// their own claims, shown as such, never trusted.
const announced = new Map();
function learnNames(members) {
  for (const m of members) {
    const a = {};
    for (const s of m.services || []) {
      if (s.startsWith("name:")) a.name = s.slice(5);
      else if (s.startsWith("domain:")) a.domain = s.slice(7);
    }
    if (a.name || a.domain) announced.set(m.id, a); else announced.delete(m.id);
  }
}
// label is a peer's announced name (and domain), else its short ID.
function label(id) {
  const a = announced.get(id);
  if (!a) return short(id);
  return (a.name || short(id)) + (a.domain ? " · " + a.domain : "");
}
const CLAIM = "name and domain as the member announces them (its own claim, not verified)";
function ms(ns) { return (ns / 1e6).toFixed(ns < 1e7 ? 2 : 1) + " ms"; }
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function table(id, head, rows) {
  const t = document.getElementById(id);
  t.replaceChildren();
  if (!rows.length) { t.append(el("tr", {}, el("td", { class: "note", text: "none" }))); return t; }
  t.append(el("tr", {}, ...head.map(h => el("th", { text: h }))));
  for (const r of rows) {
    t.append(el("tr", {}, ...r.map(c => c instanceof Node ? el("td", {}, c) : el("td", { text: String(c) }))));
  }
  return t;
}

// --- node state ---

function card(k, v) { return el("div", { class: "card" }, el("div", { class: "v", text: String(v) }), el("div", { class: "k", text: k })); }

function renderState(s) {
  document.getElementById("node-name").textContent = s.node;
  document.getElementById("node-meta").textContent =
    `${s.id} · overlay “${s.overlay}”` + (s.domain ? ` · domain ${s.domain}` : "") +
    ` · ${s.reachability}${s.client ? " client" : ""} · up ${Math.round(s.uptime_s)} s`;
  const cards = [
    card("overlay size (estimate)", s.size_estimate),
    card("members in view", s.members_total),
    card("connections", s.connections),
    card("routing table", s.routing_table),
    card("stored AORs", s.store.records),
    card("stored entries", s.store.entries),
    card("store bytes", bytes(s.store.bytes)),
  ];
  if (s.relay) {
    cards.push(card("TURN allocations", s.relay.allocations));
    cards.push(card("media sessions", s.relay.media_sessions));
  }
  // Certificates: days left, flagged under 14 (the domain one signs every
  // write; the member one admits the node to a federation overlay).
  for (const c of s.certificates || []) {
    const days = Math.floor((new Date(c.not_after) - Date.now()) / 86400e3);
    const k = card(`${c.role} certificate: days left`, days);
    k.title = `${c.subject}, valid until ${c.not_after}`;
    if (days < 14) k.classList.add("warn");
    k.dataset.cert = c.role;
    cards.push(k);
  }
  document.getElementById("cards").replaceChildren(...cards);
  renderBuckets(s.buckets || []);
  table("domains", ["domain", "AORs", "bindings"], (s.domains || []).map(d => [d.domain, d.aors, d.bindings]));
  const sip = [];
  for (const c of s.registrar || []) sip.push(["registrar", c.method, c.code, c.count]);
  for (const c of s.proxy_responses || []) sip.push(["proxy", c.method, c.code, c.count]);
  table("sip", ["", "method", "status", "count"], sip);
  const relay = [];
  if (s.relay) {
    if (s.relay.turn) relay.push(["TURN allocations", s.relay.allocations], ["TURN denied", s.relay.denied]);
    relay.push(["media sessions", s.relay.media_sessions], ["media packets forwarded", s.relay.media_forwarded],
      ["media packets dropped", s.relay.media_dropped]);
  }
  if (s.proxy) relay.push(["calls anchored", s.proxy.Anchored], ["offers already at an overlay relay", s.proxy.Relayed],
    ["NAT flows used", s.proxy.Flowed], ["NAT flows kept alive", s.proxy.Flows]);
  table("relay", ["", ""], relay);
  learnNames(s.members);
  document.getElementById("members-note").textContent =
    `${s.members.length} of ${s.members_total}, nearest to this node first (bits of ID shared)`;
  table("members", ["peer", "announced as", "shared bits", "connected", "latency", "services"], s.members.map(m => [
    el("span", { class: "mono", title: m.id, text: m.self ? m.id + " (this node)" : m.id }),
    el("span", { class: "announced", title: CLAIM, text: announced.has(m.id) ? label(m.id) : "" }),
    m.self ? "" : m.common_prefix, m.self ? "" : (m.connected ? "yes" : "no"),
    m.latency_ms ? m.latency_ms.toFixed(2) + " ms" : "",
    (m.services || []).filter(x => !x.startsWith("name:") && !x.startsWith("domain:")).join(" "),
  ]));
}

function renderBuckets(b) {
  const box = document.getElementById("buckets");
  const W = 320, H = 120, TOPPAD = 14, max = Math.max(1, ...b);
  const svg = sv("svg", { width: W, height: H + 20 + TOPPAD, viewBox: `0 ${-TOPPAD} ${W} ${H + 20 + TOPPAD}`, id: "buckets-svg", "data-buckets": b.length });
  const bw = Math.max(4, Math.min(24, Math.floor((W - 20) / Math.max(1, b.length))));
  b.forEach((n, i) => {
    const h = Math.round((n / max) * H);
    const r = sv("rect", { x: 10 + i * bw, y: H - h, width: bw - 2, height: h, fill: "#0969da" });
    r.append(sv("title", {}, `bucket ${i}: ${n} peers`));
    svg.append(r);
    if (n > 0) svg.append(sv("text", { x: 10 + i * bw + (bw - 2) / 2, y: H - h - 2, "text-anchor": "middle", class: "count" }, n));
    if (b.length <= 16 || i % 4 === 0) svg.append(sv("text", { x: 10 + i * bw, y: H + 14 }, i));
  });
  box.replaceChildren(svg);
}

async function refresh() {
  const st = document.getElementById("status");
  try {
    const r = await fetch("api/state", { cache: "no-store" });
    if (!r.ok) throw new Error(`state: HTTP ${r.status}`);
    renderState(await r.json());
    st.textContent = "updated " + new Date().toLocaleTimeString();
    st.className = "";
    document.body.dataset.state = "ok";
  } catch (e) {
    st.textContent = "cannot read the node's state: " + e.message;
    st.className = "error";
  }
}

// --- a lookup, as a picture ---

const COLORS = { self: "#0969da", live: "#1a7f37", empty: "#8c959f", failed: "#cf222e", late: "#bf8700", route: "#8250df" };

function verdict(a) {
  if (a.status === "failed") return "failed";
  if (a.status !== "answered") return "late";
  return (a.live || []).length ? "live" : "empty";
}

function detail(a) {
  switch (verdict(a)) {
  case "failed": return "failed";
  case "late": return "not awaited";
  }
  const parts = [];
  const live = (a.live || []).length;
  parts.push(live ? `${live} live` : "nothing");
  if (a.removed) parts.push(`${a.removed} removed`);
  if (a.missing) parts.push(`${a.missing} missing`);
  if (a.stale) parts.push(`${a.stale} stale`);
  if (a.repaired) parts.push("repaired");
  return parts.join(" · ");
}

function drawLookup(tr) {
  const BW = 170, BH = 46, COLW = 215, ROWH = 62, TOP = 34;
  const route = tr.route || [];
  const hops = Math.max(0, ...route.map(q => q.hop));

  const replicaCol = hops + 1, keyCol = hops + 2;
  const cols = [];
  for (let c = 0; c <= keyCol; c++) cols.push([]);
  const pos = new Map(); // key → {x, y}
  const place = (col, key) => {
    const p = { x: 20 + col * COLW, y: TOP + cols[col].length * ROWH };
    cols[col].push(key);
    pos.set(key, p);
    return p;
  };
  place(0, "self");
  // A peer asked again (kad-dht's follow-up round) is drawn once.
  const drawn = route.filter(q => !q.again);
  for (const q of drawn) place(q.hop, "route:" + q.peer);
  const asked = [...tr.asked].sort((a, b) => b.common_prefix - a.common_prefix);
  for (const a of asked) place(replicaCol, "ask:" + a.peer);
  const rows = Math.max(...cols.map(c => c.length));
  // Centre each column vertically.
  cols.forEach(c => {
    const off = ((rows - c.length) * ROWH) / 2;
    for (const k of c) pos.get(k).y += off;
  });
  // The key sits further out: the replicas' links to it carry labels.
  const keyPos = { x: 20 + keyCol * COLW + 60, y: TOP + ((rows - 1) * ROWH) / 2 };
  const W = keyPos.x + 150, H = TOP + rows * ROWH + 10;
  const svg = sv("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "path-svg",
    "data-asked": tr.asked.length, "data-route": route.length, role: "img",
    "aria-label": `lookup of ${tr.aor}: ${tr.asked.length} replicas asked` });
  // Labels go last, over the boxes, with a halo: a short link's label
  // (this node answering as its own replica) would hide behind a box.
  const edges = sv("g", { class: "edges" }), nodes = sv("g", { class: "nodes" }), labels = sv("g", { class: "labels" });
  svg.append(edges, nodes, labels);

  // Column titles.
  const title = (col, text) => svg.append(sv("text", { x: 20 + col * COLW, y: 14, class: "label" }, text));
  title(0, "this node");
  for (let h = 1; h <= hops; h++) title(h, `route hop ${h}`);
  title(replicaCol, tr.iterative ? "replicas found" : "replicas (one hop)");
  svg.append(sv("text", { x: keyPos.x, y: 14, class: "label" }, "AOR key"));

  // A link's label sits just before the box it points at, where links
  // from one node (this node's to every replica) have fanned out.
  const link = (from, to, cls, color, label) => {
    const x1 = from.x + BW, y1 = from.y + BH / 2, x2 = to.x, y2 = to.y + BH / 2;
    const mx = (x1 + x2) / 2;
    const path = sv("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge " + cls });
    if (color) path.setAttribute("stroke", color);
    edges.append(path);
    if (label) labels.append(sv("text", { x: x2 - 8, y: y2 - 5, class: "label halo", "text-anchor": "end" }, label));
  };
  const box = (p, color, line1, line2, attrs, tip) => {
    const g = sv("g", attrs);
    g.append(sv("rect", { x: p.x, y: p.y, width: BW, height: BH, rx: 6, class: "box", stroke: color }));
    g.append(sv("rect", { x: p.x, y: p.y, width: 8, height: BH, rx: 3, class: "dot", fill: color }));
    g.append(sv("text", { x: p.x + 14, y: p.y + 18, class: "mono" }, line1));
    g.append(sv("text", { x: p.x + 14, y: p.y + 35 }, line2));
    if (tip) g.append(sv("title", {}, tip));
    nodes.append(g);
  };

  const self = pos.get("self");
  box(self, COLORS.self, short(tr.self), "this node", { class: "peer self", "data-peer": tr.self }, tr.self);
  for (const q of drawn) {
    const p = pos.get("route:" + q.peer);
    const from = q.from && pos.has("route:" + q.from) ? pos.get("route:" + q.from) : self;
    link(from, p, "route", null, "");
    box(p, q.error ? COLORS.failed : COLORS.route, label(q.peer),
      q.error ? "query failed" : `${q.closer} closer · ${ms(q.took_ns)}`,
      { class: "peer route", "data-peer": q.peer, "data-hop": q.hop }, q.peer + (q.error ? "\n" + q.error : ""));
  }
  for (const a of asked) {
    const p = pos.get("ask:" + a.peer), v = verdict(a);
    const from = route.length && pos.has("route:" + a.peer) ? pos.get("route:" + a.peer) : self;
    const lbl = (a.hops > 1 ? `${a.hops} hops · ` : "") + (a.status === "not awaited" ? "—" : ms(a.took_ns));
    link(self, p, "fetch", COLORS[v], lbl);
    if (from !== self) link(from, p, "route", null, "");
    link(p, keyPos, "keyline", null, "");
    const bits = sv("text", { x: p.x + BW + 6, y: p.y + BH / 2 - 4, class: "label" },
      `${a.common_prefix} bit${a.common_prefix === 1 ? "" : "s"} shared`);
    bits.append(sv("title", {}, "leading bits this replica's ID shares with the AOR's key: the R replicas are the members sharing the most"));
    labels.append(bits);
    box(p, COLORS[v], label(a.peer) + (a.peer === tr.self ? " (self)" : ""), detail(a),
      { class: "peer replica", "data-peer": a.peer, "data-status": a.status, "data-hops": a.hops, "data-verdict": v },
      a.peer + (announced.has(a.peer) ? "\n" + CLAIM : "") + "\n" + (a.error || (a.live || []).join("\n")));
  }
  const kp = keyPos;
  nodes.append(sv("polygon", { points: `${kp.x},${kp.y + BH / 2} ${kp.x + 14},${kp.y + BH / 2 - 14} ${kp.x + 28},${kp.y + BH / 2} ${kp.x + 14},${kp.y + BH / 2 + 14}`, fill: "#1f2328" }));
  nodes.append(sv("text", { x: kp.x + 34, y: kp.y + BH / 2 + 4, class: "mono" }, tr.key.slice(0, 10) + "…"));
  return svg;
}

function legend(route) {
  const l = el("p", { class: "legend" });
  const items = [["self", "this node"], ["live", "returned live bindings"], ["empty", "returned nothing live"],
    ["failed", "failed"], ["late", "not awaited"]];
  if (route) items.push(["route", "Kademlia route"]);
  for (const [k, t] of items) {
    l.append(el("span", {}, el("i", { class: "lg-" + k }), t));
  }
  return l;
}

async function lookup(aor, iterative) {
  const sum = document.getElementById("lookup-summary");
  const pic = document.getElementById("lookup-picture");
  sum.textContent = "looking up " + aor + " …";
  sum.className = "";
  delete document.body.dataset.lookup;
  try {
    const q = new URLSearchParams({ aor });
    if (iterative) q.set("iterative", "1");
    const r = await fetch("api/lookup?" + q, { cache: "no-store" });
    const tr = await r.json();
    if (!r.ok) throw new Error(tr.error || `HTTP ${r.status}`);
    const answered = tr.asked.filter(a => a.status === "answered").length;
    sum.textContent = `${tr.aor}: ${tr.bindings.length} binding(s) in ${ms(tr.took_ns)}; ` +
      `${tr.asked.length} replica(s) asked, ${answered} answered (R=${tr.replicas}, waits for ${tr.need})` +
      (tr.route && tr.route.length ? `; Kademlia route: ${tr.route.length} queries` : "") +
      (tr.error ? "; failed: " + tr.error : "");
    sum.title = `R: the replicas an AOR's record is kept on (lsp.replicas). A read asks them and waits for ${tr.need} ` +
      "answers before it merges them; a write returns once W of them (lsp.write_quorum) hold it.";
    if (tr.error) sum.className = "error";
    pic.replaceChildren(drawLookup(tr), legend(tr.route && tr.route.length));
    document.getElementById("asked-title").hidden = false;
    table("lookup-asked", ["peer", "round", "hops", "shared bits", "sent", "latency", "status", "returned", "error"],
      tr.asked.map(a => [el("span", { class: "mono", title: a.peer, text: label(a.peer) }), a.round, a.hops,
        a.common_prefix, ms(a.sent_ns), a.status === "answered" || a.status === "failed" ? ms(a.took_ns) : "",
        a.status, el("span", { class: "lines", text: [detail(a), ...(a.live || [])].join("\n") }), a.error || a.forged || ""]));
    const routed = !!(tr.route && tr.route.length);
    document.getElementById("route-title").hidden = !routed;
    document.getElementById("lookup-route").hidden = !routed;
    table("lookup-route", ["peer", "hop", "named by", "sent", "latency", "closer peers", "error"],
      (tr.route || []).map(q => [el("span", { class: "mono", title: q.peer, text: label(q.peer) }), q.hop,
        (q.from ? short(q.from) : "routing table") + (q.again ? " (asked again)" : ""), ms(q.sent_ns),
        q.took_ns ? ms(q.took_ns) : "", q.closer, q.error || ""]));
    document.getElementById("bindings-title").hidden = false;
    table("lookup-bindings", ["contact", "expires", "q", "signer", "path"], tr.bindings.map(b =>
      [b.contact, new Date(b.expires).toLocaleString(), b.q || "", b.signer || "", (b.path || []).join(", ")]));
    document.body.dataset.lookup = tr.error ? "error" : "done";
  } catch (e) {
    sum.textContent = "lookup failed: " + e.message;
    sum.className = "error";
    pic.replaceChildren();
    document.body.dataset.lookup = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("lookup-form");
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const aor = document.getElementById("aor").value.trim();
    const it = document.getElementById("iterative").checked;
    const q = new URLSearchParams({ aor });
    if (it) q.set("iterative", "1");
    history.replaceState(null, "", "?" + q);
    lookup(aor, it);
  });
  const params = new URLSearchParams(location.search);
  // The state first: it names the members the lookup's picture shows.
  refresh().then(() => {
    if (params.get("aor")) {
      document.getElementById("aor").value = params.get("aor");
      document.getElementById("iterative").checked = params.get("iterative") === "1";
      lookup(params.get("aor"), params.get("iterative") === "1");
    }
  });
  setInterval(refresh, 5000);
});
