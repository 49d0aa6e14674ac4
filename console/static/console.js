// The console's page: sign-in, streams, a stream's consumers, live tail
// and message browser, publishing and access-token minting. Everything
// shown is set as text (never as HTML): subjects and payloads are the
// bridge's clients' data.

import * as api from "./api.js";

const $ = (id) => document.getElementById(id);

const state = { stream: "", tail: null };

function showError(err) {
  const box = $("error");
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = err.message || String(err);
  box.hidden = false;
  if (err instanceof api.APIError && err.status === 401) signOut();
}

// guarded runs an async UI action, showing its error.
function guarded(fn) {
  return async (ev) => {
    if (ev && ev.preventDefault) ev.preventDefault();
    try {
      showError(null);
      await fn(ev);
    } catch (err) {
      showError(err);
    }
  };
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fillTable(table, rows, empty) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (empty) empty.hidden = rows.length > 0;
}

function signedIn() {
  return api.savedAuthorization() !== null;
}

function render() {
  const on = signedIn();
  $("signin-panel").hidden = on;
  $("app").hidden = !on;
  $("signout").hidden = !on;
  if (!on) $("who").textContent = "";
}

function signOut() {
  stopTail();
  api.forgetAuthorization();
  state.stream = "";
  $("stream-panel").hidden = true;
  $("minted").hidden = true;
  $("minted-token").value = "";
  render();
}

async function signIn() {
  const scheme = $("scheme").value;
  const credential = $("credential").value;
  if (scheme !== "none" && !credential.trim()) throw new Error("enter an API key or a token");
  const authz = api.authorization(credential, scheme);
  $("credential").value = "";
  api.saveAuthorization(authz);
  $("who").textContent = authz ? `signed in (${authz.split(" ")[0]})` : "authentication off";
  render();
  await loadStreams();
}

async function loadStreams() {
  const streams = await api.listStreams();
  streams.sort((a, b) => a.config.name.localeCompare(b.config.name));
  const rows = streams.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.stream = s.config.name;
    const name = cell(tr, "");
    const link = document.createElement("button");
    link.type = "button";
    link.className = "link";
    link.textContent = s.config.name;
    link.addEventListener("click", guarded(() => openStream(s.config.name)));
    name.appendChild(link);
    const st = s.state || {};
    cell(tr, (s.config.subjects || []).join(" "));
    cell(tr, st.messages, "num");
    cell(tr, st.bytes, "num");
    cell(tr, st.first_sequence, "num");
    cell(tr, st.last_sequence, "num");
    cell(tr, st.consumer_count, "num");
    return tr;
  });
  fillTable($("streams"), rows, $("streams-empty"));
}

async function openStream(name) {
  if (state.stream !== name) {
    stopTail();
    $("tail").tBodies[0].replaceChildren();
    $("message").hidden = true;
  }
  state.stream = name;
  $("stream-name").textContent = name;
  $("stream-panel").hidden = false;
  const [info, consumers] = await Promise.all([api.getStream(name), api.listConsumers(name)]);
  const st = (info.stream && info.stream.state) || {};
  $("stream-state").textContent =
    `${st.messages} messages, ${st.bytes} bytes, sequences ${st.first_sequence}–${st.last_sequence}, ` +
    `${st.consumer_count} consumers`;
  const seq = $("browse-seq");
  if (!seq.value && st.last_sequence && st.last_sequence !== "0") seq.value = st.last_sequence;
  consumers.sort((a, b) => a.name.localeCompare(b.name));
  const rows = consumers.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.consumer = c.name;
    cell(tr, c.name);
    cell(tr, c.num_pending, "num num-pending");
    cell(tr, c.num_ack_pending, "num num-ack-pending");
    cell(tr, c.num_redelivered, "num num-redelivered");
    cell(tr, c.num_waiting, "num");
    cell(tr, c.delivered ? c.delivered.stream_sequence : "", "num");
    cell(tr, c.ack_floor ? c.ack_floor.stream_sequence : "", "num");
    return tr;
  });
  fillTable($("consumers"), rows, $("consumers-empty"));
}

function payloadOf(m) {
  if (m.json !== undefined) return JSON.stringify(m.json);
  if (m.text !== undefined) return m.text;
  return api.decodePayload(m.data).text;
}

function tailRow(m) {
  const tr = document.createElement("tr");
  tr.dataset.seq = m.stream_sequence;
  cell(tr, m.stream_sequence, "num");
  cell(tr, m.subject);
  cell(tr, m.timestamp);
  cell(tr, payloadOf(m), "payload");
  return tr;
}

const maxTailRows = 500;

function addToTail(messages) {
  const body = $("tail").tBodies[0];
  for (const m of messages) body.prepend(tailRow(m));
  while (body.rows.length > maxTailRows) body.deleteRow(body.rows.length - 1);
}

function setTailStatus(text, running) {
  $("tail-status").textContent = text;
  $("tail-status").dataset.state = running ? "running" : "stopped";
  $("tail-start").disabled = running;
  $("tail-stop").disabled = !running;
}

function startTail() {
  stopTail();
  const ctl = new AbortController();
  state.tail = ctl;
  const stream = state.stream;
  setTailStatus("connecting…", true);
  const opts = { deliverPolicy: $("tail-deliver").value, filter: $("tail-filter").value.trim() };
  api
    .subscribe(stream, opts, (name, ev) => {
      if (name === "subscribed") setTailStatus(`tailing ${stream} (consumer ${ev.subscribed.consumer})`, true);
      else if (name === "message") addToTail([ev.message]);
      else if (name === "batch") addToTail(ev.batch.messages || []);
    }, ctl.signal)
    .then(
      () => {
        if (state.tail === ctl) setTailStatus("ended by the bridge", false);
      },
      (err) => {
        if (state.tail !== ctl) return;
        if (err.name === "AbortError") return;
        setTailStatus("failed", false);
        showError(err);
      },
    )
    .finally(() => {
      if (state.tail === ctl) state.tail = null;
    });
}

function stopTail() {
  if (state.tail) {
    const ctl = state.tail;
    state.tail = null;
    ctl.abort();
    setTailStatus("stopped", false);
  }
}

async function browse(delta) {
  const input = $("browse-seq");
  let seq = parseInt(input.value, 10);
  if (!Number.isSafeInteger(seq) || seq < 1) throw new Error("a sequence is a whole number from 1");
  seq += delta;
  if (seq < 1) seq = 1;
  input.value = String(seq);
  const { message: m } = await api.getMessage(state.stream, seq);
  $("msg-seq").textContent = m.sequence;
  $("msg-subject").textContent = m.subject;
  $("msg-time").textContent = m.time;
  const hdrs = Object.entries(m.headers || {}).map(([k, v]) => `${k}: ${(v.values || []).join(", ")}`);
  $("msg-headers").textContent = hdrs.join("\n") || "(none)";
  const p = api.decodePayload(m.data);
  $("msg-payload").textContent = p.text;
  $("msg-payload").dataset.binary = String(p.binary);
  $("message").hidden = false;
}

async function publish() {
  const subject = $("pub-subject").value.trim();
  const raw = $("pub-payload").value;
  let payload;
  if ($("pub-kind").value === "json") {
    try {
      payload = { json: JSON.parse(raw) };
    } catch (err) {
      throw new Error(`the payload is not JSON: ${err.message}`);
    }
  } else {
    payload = { text: raw };
  }
  $("pub-result").textContent = "publishing…";
  try {
    const r = await api.publish(subject, payload, $("pub-msgid").value.trim());
    $("pub-result").textContent = `stored in ${r.stream} at sequence ${r.sequence}${r.duplicate ? " (duplicate)" : ""}`;
    $("pub-result").dataset.sequence = r.sequence;
  } catch (err) {
    $("pub-result").textContent = "";
    throw err;
  }
}

function list(id) {
  return $(id).value.split(",").map((s) => s.trim()).filter(Boolean);
}

async function mint() {
  const req = {
    operations: Array.from(document.querySelectorAll('#mint input[name="op"]:checked'), (c) => c.value),
    streams: list("mint-streams"),
    subjects: list("mint-subjects"),
  };
  const ttl = $("mint-ttl").value.trim();
  if (ttl) req.ttl = ttl;
  const r = await api.mintToken(req);
  $("minted-token").value = r.token;
  $("minted-id").textContent = r.id;
  $("minted-identity").textContent = r.identity;
  $("minted-expires").textContent = r.expires_at;
  $("minted").hidden = false;
}

function init() {
  $("signin").addEventListener("submit", guarded(signIn));
  $("signout").addEventListener("click", () => {
    showError(null);
    signOut();
  });
  $("refresh").addEventListener("click", guarded(async () => {
    await loadStreams();
    if (state.stream) await openStream(state.stream);
  }));
  $("tail-form").addEventListener("submit", guarded(startTail));
  $("tail-stop").addEventListener("click", stopTail);
  $("browse").addEventListener("submit", guarded(() => browse(0)));
  $("browse-prev").addEventListener("click", guarded(() => browse(-1)));
  $("browse-next").addEventListener("click", guarded(() => browse(1)));
  $("publish").addEventListener("submit", guarded(publish));
  $("mint").addEventListener("submit", guarded(mint));
  render();
  if (signedIn()) {
    const authz = api.savedAuthorization();
    $("who").textContent = authz ? `signed in (${authz.split(" ")[0]})` : "authentication off";
    guarded(loadStreams)();
  }
  document.body.dataset.ready = "true";
}

init();
