// The console's page: sign-in, streams, a stream's consumers, live tail
// and message browser, dead letters and their redrive, publishing and
// access-token minting. Everything
// shown is set as text (never as HTML): subjects and payloads are the
// bridge's clients' data.

import * as api from "./api.js";

const $ = (id) => document.getElementById(id);

const state = {
  stream: "",
  tail: null,
  streams: [], // the last listing
  dlq: null, // the dead letters listed: { stream, filter, next, end }
  redrive: null, // the redrive in progress: an AbortController
};

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
  stopRedrive();
  api.forgetAuthorization();
  state.stream = "";
  $("stream-panel").hidden = true;
  $("minted").hidden = true;
  $("minted-token").value = "";
  state.streams = [];
  state.dlq = null;
  $("dlq").tBodies[0].replaceChildren();
  $("redrive").tBodies[0].replaceChildren();
  $("dead-letter").hidden = true;
  $("redrive-summary").hidden = true;
  $("dlq-status").textContent = "";
  $("dlq-more").disabled = true;
  $("dlq-empty").hidden = true;
  $("dlq-form").reset();
  $("redrive-form").reset();
  setRedriveStatus("idle", false);
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
  state.streams = streams;
  $("stream-names").replaceChildren(...streams.map((s) => {
    const o = document.createElement("option");
    o.value = s.config.name;
    return o;
  }));
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
    const dl = cell(tr, "", "dead-letter-subject");
    const subject = (c.config && c.config.dead_letter_subject) || "";
    if (subject) {
      const open = document.createElement("button");
      open.type = "button";
      open.className = "link";
      open.textContent = subject;
      open.title = "list this consumer's dead letters";
      open.addEventListener("click", guarded(() => openDeadLetters(name, c.name, subject)));
      dl.appendChild(open);
    }
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

// dlqStreamFor is the listed stream that captures a dead-letter subject
// ("" when none this credential may see does).
function dlqStreamFor(subject) {
  const s = state.streams.find((st) => (st.config.subjects || []).some((p) => api.subjectMatches(p, subject)));
  return s ? s.config.name : "";
}

// openDeadLetters lists one consumer's dead letters: its DLQ stream is the
// one whose subjects capture its dead-letter subject.
async function openDeadLetters(stream, consumer, subject) {
  const dlq = dlqStreamFor(subject);
  if (!dlq) throw new Error(`no stream you may read captures ${subject}: its dead letters are not stored`);
  $("dlq-stream").value = dlq;
  $("dlq-origin").value = stream;
  $("dlq-consumer").value = consumer;
  $("dlq-reason").value = "";
  $("dlq-subject").value = "";
  await listDeadLetters(false);
  $("dlq-panel").scrollIntoView();
}

function dlqFilter() {
  return {
    stream: $("dlq-origin").value.trim(),
    consumer: $("dlq-consumer").value.trim(),
    reason: $("dlq-reason").value,
    subject: $("dlq-subject").value.trim(),
  };
}

const reasonNames = {
  DEAD_LETTER_REASON_MAX_DELIVERIES: "max deliveries",
  DEAD_LETTER_REASON_TERMINATED: "terminated",
};

function deadLetterPayload(d) {
  if (d.lost) return `(lost: ${d.lost})`;
  return api.decodePayload(d.data).text;
}

function deadLetterRow(d) {
  const tr = document.createElement("tr");
  tr.dataset.seq = d.sequence;
  const seq = cell(tr, "", "num");
  const link = document.createElement("button");
  link.type = "button";
  link.className = "link";
  link.textContent = d.sequence;
  link.title = "show this dead letter";
  link.addEventListener("click", () => showDeadLetter(d));
  seq.appendChild(link);
  cell(tr, `${d.origin_stream} / ${d.origin_consumer} #${d.origin_sequence}`, "origin");
  cell(tr, d.origin_subject, "subject");
  cell(tr, reasonNames[d.reason] || d.reason || "", "reason");
  cell(tr, d.deliveries, "num deliveries");
  cell(tr, d.terminated_by || "", "by");
  cell(tr, d.time, "time");
  const p = deadLetterPayload(d);
  cell(tr, p.length > 200 ? `${p.slice(0, 200)}…` : p, "payload");
  return tr;
}

function showDeadLetter(d) {
  $("dl-seq").textContent = d.sequence;
  $("dl-origin").textContent = `${d.origin_stream} / ${d.origin_consumer}, sequence ${d.origin_sequence}`;
  $("dl-subject").textContent = d.origin_subject;
  $("dl-reason").textContent = reasonNames[d.reason] || d.reason || "";
  $("dl-term-reason").textContent = d.term_reason || "(none)";
  $("dl-by").textContent = d.terminated_by || "(not through the bridge)";
  $("dl-deliveries").textContent = d.deliveries;
  $("dl-time").textContent = d.time;
  $("dl-msgid").textContent = d.msg_id || "(none)";
  const hdrs = Object.entries(d.headers || {}).map(([k, v]) => `${k}: ${(v.values || []).join(", ")}`);
  $("dl-headers").textContent = hdrs.join("\n") || "(none)";
  const p = d.lost ? { text: `(lost: ${d.lost})`, binary: false } : api.decodePayload(d.data);
  $("dl-payload").textContent = p.text;
  $("dl-payload").dataset.binary = String(p.binary);
  $("dead-letter").hidden = false;
}

// listDeadLetters reads the first page of the form's dead letters, or
// (more) the next page of the last listing, appended.
async function listDeadLetters(more) {
  let q = state.dlq;
  if (!more || !q) {
    const stream = $("dlq-stream").value.trim();
    if (!stream) throw new Error("name the stream that holds the dead letters");
    q = { stream, filter: dlqFilter(), next: 0, end: false };
    $("dlq").tBodies[0].replaceChildren();
    $("dead-letter").hidden = true;
  }
  $("dlq-status").textContent = "reading…";
  try {
    const page = await api.listDeadLetters(q.stream, q.filter, q.next, 100);
    q.next = page.next_sequence || q.next;
    q.end = !!page.end;
    state.dlq = q;
    const body = $("dlq").tBodies[0];
    body.append(...(page.dead_letters || []).map(deadLetterRow));
    $("dlq-empty").hidden = body.rows.length > 0;
    $("dlq-more").disabled = q.end;
    $("dlq-status").textContent = `${body.rows.length} dead letters in ${q.stream}${q.end ? "" : " so far (more)"}`;
    $("dlq-status").dataset.state = "listed";
  } catch (err) {
    $("dlq-status").textContent = "";
    throw err;
  }
}

function seqField(id) {
  const v = $(id).value.trim();
  if (!v) return 0;
  const n = parseInt(v, 10);
  if (!Number.isSafeInteger(n) || n < 1 || String(n) !== v) throw new Error("a sequence is a whole number from 1");
  return n;
}

function setRedriveStatus(text, running) {
  $("redrive-status").textContent = text;
  $("redrive-status").dataset.state = running ? "running" : "idle";
  $("redrive-start").disabled = running;
  $("redrive-stop").disabled = !running;
}

function showRedriveSummary(s) {
  for (const k of ["matched", "redriven", "duplicates", "not_permitted", "failed", "deleted"]) {
    $(`rs-${k.replace("_", "-")}`).textContent = s[k] || "0";
  }
  $("redrive-summary").hidden = false;
}

const outcomeNames = {
  REDRIVE_OUTCOME_REDRIVEN: "redriven",
  REDRIVE_OUTCOME_DUPLICATE: "duplicate",
  REDRIVE_OUTCOME_NOT_PERMITTED: "not permitted",
  REDRIVE_OUTCOME_FAILED: "failed",
};

const maxRedriveRows = 500;

function redriveRow(p, dryRun) {
  const tr = document.createElement("tr");
  tr.dataset.seq = p.sequence;
  cell(tr, p.sequence, "num");
  cell(tr, p.subject, "subject");
  const outcome = outcomeNames[p.outcome] || p.outcome || "";
  cell(tr, dryRun && outcome === "redriven" ? "would be redriven" : outcome, "outcome");
  cell(tr, p.stored_stream ? `${p.stored_stream} #${p.stored_sequence}` : "", "stored");
  cell(tr, p.deleted ? "yes" : "", "deleted");
  cell(tr, p.error || "", "redrive-error");
  return tr;
}

// startRedrive redrives what the dead-letter form selects (after the
// user confirms, unless it is a dry run), showing each outcome as it
// comes and the summary at the end; the list is read again after.
async function startRedrive() {
  const stream = $("dlq-stream").value.trim();
  if (!stream) throw new Error("name the stream that holds the dead letters");
  const rate = parseInt($("redrive-rate").value, 10);
  if (!Number.isSafeInteger(rate) || rate < 1 || rate > 10000) throw new Error("the rate is 1 to 10000 a second");
  const req = {
    filter: dlqFilter(),
    start_sequence: seqField("redrive-from"),
    end_sequence: seqField("redrive-to"),
    rate,
    delete: $("redrive-delete").checked,
    dry_run: $("redrive-dry").checked,
  };
  if (!req.filter.reason) delete req.filter.reason;
  if (!req.dry_run) {
    const what = Object.entries(req.filter).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(", ") || "all";
    const ok = window.confirm(
      `Publish the dead letters of ${stream} (${what}) back to their subjects` +
        `${req.delete ? " and delete them from " + stream : ""}?`,
    );
    if (!ok) return;
  }
  stopRedrive();
  const ctl = new AbortController();
  state.redrive = ctl;
  $("redrive").tBodies[0].replaceChildren();
  $("redrive-summary").hidden = true;
  let seen = 0;
  setRedriveStatus(req.dry_run ? "dry run…" : "redriving…", true);
  try {
    await api.redrive(stream, req, (name, ev) => {
      if (name === "progress" && ev.progress) {
        seen++;
        const body = $("redrive").tBodies[0];
        body.prepend(redriveRow(ev.progress, req.dry_run));
        while (body.rows.length > maxRedriveRows) body.deleteRow(body.rows.length - 1);
        $("redrive-status").textContent = `${req.dry_run ? "dry run" : "redriving"}: ${seen} considered…`;
      } else if (name === "summary" && ev.summary) {
        showRedriveSummary(ev.summary);
      }
    }, ctl.signal);
    if (state.redrive !== ctl) return;
    setRedriveStatus(`${req.dry_run ? "dry run done" : "done"}: ${seen} considered`, false);
    $("redrive-status").dataset.state = "done";
  } catch (err) {
    if (state.redrive !== ctl || err.name === "AbortError") return;
    setRedriveStatus(`failed after ${seen}`, false);
    throw err;
  } finally {
    if (state.redrive === ctl) state.redrive = null;
  }
  if (req.dry_run) return;
  // What it changed: the streams' counts, the stream open, the list.
  await loadStreams();
  if (state.stream) await openStream(state.stream);
  if (state.dlq && state.dlq.stream === stream) await listDeadLetters(false);
}

function stopRedrive() {
  if (state.redrive) {
    const ctl = state.redrive;
    state.redrive = null;
    ctl.abort();
    setRedriveStatus("stopped", false);
  }
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
  $("dlq-form").addEventListener("submit", guarded(() => listDeadLetters(false)));
  $("dlq-more").addEventListener("click", guarded(() => listDeadLetters(true)));
  $("redrive-form").addEventListener("submit", guarded(startRedrive));
  $("redrive-stop").addEventListener("click", stopRedrive);
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
