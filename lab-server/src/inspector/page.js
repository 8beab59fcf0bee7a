"use strict";
// The inspector's page. Every string from a peer or a certificate goes in as
// text (textContent, dataset), never as markup: a DN may hold <script>. The
// page is served with a CSP that allows no inline script at all.
//
// Stable hooks for tests and scripts: #conn-ID and #msg-ID rows, #cut-summary,
// #last-kept and #first-dropped (the names either side of the cut),
// #event-36885, #client-chain, #client-certificate-message (data-kind: none,
// empty, sent, encrypted), #client-chain-note, #faults-fired (the faults
// lab-server injected in the connection), #player (the voicemail's audio).
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.appendChild(c);
    else td.textContent = c === null || c === undefined ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}
function table(head, rows, id) {
  const t = el("table");
  if (id) t.id = id;
  t.appendChild(row(head.map((h) => el("b", h))));
  for (const r of rows) t.appendChild(r);
  return t;
}
// "2026-11-30T10:42:55.38Z" shows as "10:42:55"; the whole time is the title.
function when(t) {
  const m = /^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)/.exec(t || "");
  const s = el("span", m ? m[1] : t); s.title = t || ""; return s;
}
function yesNo(b) { return el("span", b ? "yes" : "no", b ? "yes" : "no"); }
async function get(path) { const r = await fetch(path); if (!r.ok) throw new Error(path + ": " + r.status); return r.json(); }
let view = "connections", setup = null, selected = null;

async function showPolicy() {
  setup = await get("/api/policy");
  const r = setup.report;
  $("policy").textContent = `policy ${r.settings.policy}, ${r.kept} of ${r.roots} names sent (${r.list_bytes} bytes)` + (r.truncated ? ", event 36885" : "");
}

async function listConnections() {
  const data = await get("/api/connections");
  const rows = data.connections.map((c) => {
    const outcome = el("span", null, c.outcome === "ok" ? "ok" : "failed");
    outcome.append(el("div", c.outcome));
    if (c.alert) outcome.append(el("div", c.alert, "wrap"));
    const started = el("span"); started.append(when(c.started), el("div", c.peer, "minor"));
    const cn = /(?:^|, )CN=([^,]*)/.exec(c.client || "");
    const client = el("span", cn ? cn[1] : c.client, "wrap"); client.title = c.client || "";
    const tr = row([c.id, started, c.tls_version, outcome, c.ca_names, client, c.stored], "row" + (c.id === selected ? " selected" : ""));
    tr.id = "conn-" + c.id; tr.dataset.id = c.id; tr.dataset.outcome = c.outcome;
    tr.onclick = () => showConnection(c.id);
    return tr;
  });
  const list = $("list");
  list.replaceChildren(table(["#", "time, peer", "TLS", "outcome", "names", "client", "stored"], rows, "connections"));
  if (data.missed) list.appendChild(el("p", `${data.missed} connection(s) missed: the inspector fell behind`));
}

// What the client's Certificate message was, in words: a withheld
// certificate (empty) is not a refused one (sent, then the handshake failed).
const CERT_MESSAGE = {
  none: "No Certificate message from the client (none was requested, or the handshake ended before the client's second flight).",
  empty: "The client sent an empty Certificate: it withheld its certificate (Schannel and Java do when no issuer of theirs is listed).",
  sent: "The client sent its certificate chain.",
  encrypted: "TLS 1.3: the client's Certificate is encrypted and the handshake failed, so it cannot be read here.",
};
function certMessage(ev) {
  const kind = ev.client_certificate_message;
  if (!kind) return null;
  const p = el("p", CERT_MESSAGE[kind] || kind); p.id = "client-certificate-message"; p.dataset.kind = kind;
  return p;
}

function chainTable(chain) {
  const rows = chain.map((c, i) => {
    const tr = c.error
      ? row([i, el("i", c.error), "", "", ""])
      : row([i, c.subject, c.issuer, yesNo(c.issuer_listed), c.listed ? "yes" : "no"]);
    tr.dataset.issuerListed = c.issuer_listed; tr.dataset.listed = c.listed;
    return tr;
  });
  return table(["#", "subject", "issuer", "issuer listed", "itself listed"], rows, "client-chain");
}

async function showConnection(id) {
  const d = await get("/api/connections/" + id);
  selected = id;
  for (const tr of document.querySelectorAll("#connections tr.row")) tr.classList.toggle("selected", tr.dataset.id === String(id));
  const ev = d.event, det = $("detail");
  det.replaceChildren(el("h2", `Connection ${ev.id} from ${ev.peer} at ${ev.started}`));
  det.dataset.connection = ev.id;
  const hs = ev.handshake;
  det.appendChild(el("p", `persona ${ev.persona}; TLS ${ev.tls_version || "-"} ${ev.cipher_suite || ""}; handshake ${hs ? hs.outcome : "none"}` + (hs && hs.alert ? `, alert ${hs.alert}` : "") + (hs && hs.error ? ` (${hs.error})` : "")));
  if (ev.faults && ev.faults.length) {
    const f = el("p", "Faults injected: " + ev.faults.join("; "), "failed"); f.id = "faults-fired";
    det.appendChild(f);
  }
  const r = d.request;
  if (r) {
    const last = r.names.length ? r.names[r.names.length - 1] : null;
    const p = el("p", null, r.first_dropped ? "failed" : "ok"); p.id = "cut-summary";
    if (r.first_dropped) {
      p.append(`List cut after ${r.names.length} name(s), ${r.list_bytes} bytes. Last kept: `);
      p.appendChild(el("q", last ? last.subject : "(none)"));
      p.append(`; first dropped (store #${r.first_dropped.index}): `);
      p.appendChild(el("q", r.first_dropped.subject));
      p.append(`; ${r.dropped} name(s) dropped.`);
    } else p.textContent = `Whole list sent: ${r.names.length} name(s), ${r.list_bytes} bytes.`;
    det.appendChild(p);
  }
  d.events.forEach((e, i) => {
    const pre = el("pre", e, "event");
    if (/Event ID:\s+36885/.test(e) && !$("event-36885")) pre.id = "event-36885";
    else pre.id = "event-" + i;
    det.appendChild(pre);
  });
  det.appendChild(el("h3", "Client certificate chain (as sent, leaf first; listed = name in the CA list this connection got)"));
  const said = certMessage(ev);
  if (said) det.appendChild(said);
  if (ev.client_chain_note) { const n = el("p", ev.client_chain_note, "minor"); n.id = "client-chain-note"; det.appendChild(n); }
  det.appendChild(ev.client_chain && ev.client_chain.length ? chainTable(ev.client_chain) : el("p", "none presented"));
  if (r) {
    det.appendChild(el("h3", `CertificateRequest: ${r.names.length} names, ${r.list_bytes} bytes of names, message ${r.message_bytes} bytes in ${r.records} record(s)`));
    const rows = []; const marks = [16384, 32768, 65535];
    r.names.forEach((n, i) => {
      while (marks.length && n.total > marks[0]) { rows.push(row([`--- ${marks[0]} bytes ---`, "", "", ""], "mark")); marks.shift(); }
      const isLast = i === r.names.length - 1 && r.first_dropped;
      const name = el("span", n.subject);
      if (isLast) name.id = "last-kept";
      const tr = row([n.index, name, n.der_len, n.total], isLast ? "kept-last" : "");
      tr.dataset.index = n.index;
      rows.push(tr);
    });
    if (r.first_dropped) {
      const cut = el("span"); cut.append(`${r.dropped} name(s) dropped from here: `);
      const first = el("span", r.first_dropped.subject); first.id = "first-dropped"; cut.appendChild(first);
      cut.append(` (store index ${r.first_dropped.index})`);
      const tr = row(["cut", cut, r.first_dropped.der_len, ""], "cut"); tr.id = "cut";
      rows.push(tr);
    }
    det.appendChild(table(["store #", "CA name", "DER bytes", "running total"], rows, "ca-names"));
  } else det.appendChild(el("p", "No CertificateRequest (no TLS, or the client left first)."));
  det.appendChild(el("h3", `SMTP dialogue (${ev.smtp_total} exchanges)`));
  det.appendChild(table(["command", "reply"], ev.smtp.map((x) => row([x.command, `${x.code} ${x.reply}`]))));
}

async function listMessages() {
  const msgs = await get("/api/messages");
  const rows = msgs.map((m) => {
    const tr = row([m.id, when(m.received), m.stored.from, m.stored.to.join(", "), m.stored.bytes, el("span", m.stored.voicemail.call_id, "wrap")], "row");
    tr.id = "msg-" + m.id; tr.dataset.id = m.id;
    tr.onclick = () => showMessage(m.id);
    return tr;
  });
  $("list").replaceChildren(table(["#", "received", "from", "to", "bytes", "call ID"], rows, "messages"));
}

async function showMessage(id) {
  const m = await get("/api/messages/" + id), det = $("detail");
  for (const tr of document.querySelectorAll("#messages tr.row")) tr.classList.toggle("selected", tr.dataset.id === String(id));
  det.replaceChildren(el("h2", `Message ${m.id} (connection ${m.connection})`));
  det.dataset.message = m.id;
  det.appendChild(table(["header", "value"], Object.entries(m.headers).map(([k, v]) => row([k, v])), "headers"));
  const vm = m.stored.voicemail;
  det.appendChild(el("p", `voicemail: ${vm.well_formed_voicemail ? "well formed" : "NOT well formed"}; audio ${vm.audio ? (vm.audio.format || "") + " " + (vm.audio.duration_ms || 0) + " ms" + (vm.audio.problem ? " (" + vm.audio.problem + ")" : "") : "none"}`));
  const audio = el("audio"); audio.controls = true; audio.preload = "auto"; audio.id = "player"; audio.src = `/api/messages/${m.id}/audio`; det.appendChild(audio);
  const a = el("a", "download the raw message"); a.href = `/api/messages/${m.id}/raw`; det.appendChild(el("p")).appendChild(a);
  const del = el("button", "delete"); del.onclick = async () => { await fetch(`/api/messages/${m.id}`, { method: "DELETE" }); det.replaceChildren(); listMessages(); }; det.appendChild(del);
}

function listStore() {
  const rows = setup.roots.map((r) => {
    const tr = row([r.index, r.subject, r.der_len, r.sent_at === null ? "dropped" : "sent #" + r.sent_at], r.sent_at === null ? "dropped" : "");
    tr.id = "root-" + r.index;
    return tr;
  });
  $("list").replaceChildren(table(["#", "subject", "DER bytes", "fate"], rows, "store"));
  $("detail").replaceChildren(el("pre", setup.startup_log.join("\n") || "no start-up events"));
}

function show(v) {
  view = v; $("detail").replaceChildren();
  document.body.dataset.view = v;
  if (v === "connections") return listConnections();
  if (v === "messages") return listMessages();
  return listStore();
}
$("tab-connections").onclick = () => show("connections");
$("tab-messages").onclick = () => show("messages");
$("tab-store").onclick = () => show("store");
const live = new EventSource("/api/stream");
live.addEventListener("connection", () => { if (view === "connections") listConnections(); else if (view === "messages") listMessages(); });
// The stream is open before the first list is drawn: no connection falls
// between the two. `data-ready` tells a script the page is live.
live.addEventListener("open", () => { document.body.dataset.live = "1"; });
showPolicy().then(() => show("connections")).then(() => { document.body.dataset.ready = "1"; });
