// The bridge's public REST API, as the console uses it: every call sends
// the signed-in credential in the Authorization header and nothing else
// that identifies the caller. JSON follows the proto field names
// (snake_case); 64-bit integers arrive as strings.

const storageKey = "jetway.console.authorization";

// APIError is a refused call: the HTTP status, the gRPC code name, the
// ErrorInfo reason and the message from the bridge's error body.
export class APIError extends Error {
  constructor(status, body) {
    const info = (body && Array.isArray(body.details) ? body.details : [])
      .find((d) => d && typeof d.reason === "string");
    const reason = info ? info.reason : "";
    const message = (body && body.message) || `HTTP ${status}`;
    super(reason ? `${reason}: ${message}` : message);
    this.status = status;
    this.reason = reason;
  }
}

// authorization builds the Authorization value for a credential: "auto"
// takes a jwy_ access token or a JWT (three dot-separated parts) for a
// bearer token and anything else for an API key.
export function authorization(credential, scheme) {
  credential = credential.trim();
  if (scheme === "none") return "";
  if (scheme === "auto") {
    scheme = credential.startsWith("jwy_") || credential.split(".").length === 3 ? "Bearer" : "ApiKey";
  }
  return `${scheme} ${credential}`;
}

export function saveAuthorization(value) {
  sessionStorage.setItem(storageKey, value);
}

// savedAuthorization is the tab's credential, null when signed out ("" is
// signed in with authentication off).
export function savedAuthorization() {
  return sessionStorage.getItem(storageKey);
}

export function forgetAuthorization() {
  sessionStorage.removeItem(storageKey);
}

function headers(extra) {
  const h = new Headers(extra);
  const authz = savedAuthorization();
  if (authz) h.set("Authorization", authz);
  return h;
}

// call sends one REST request (body: a value sent as JSON, or undefined)
// and returns the decoded JSON answer, or throws an APIError.
export async function call(method, path, body, extraHeaders) {
  const init = { method, headers: headers(extraHeaders), credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    init.headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let decoded = null;
  try {
    decoded = text ? JSON.parse(text) : null;
  } catch {
    decoded = null;
  }
  if (!resp.ok) throw new APIError(resp.status, decoded);
  return decoded;
}

export const seg = encodeURIComponent;

// listStreams returns every stream, following next_page_token (at most
// maxPages pages).
export async function listStreams(maxPages = 50) {
  const streams = [];
  let token = "";
  for (let i = 0; i < maxPages; i++) {
    const q = token ? `?page_token=${seg(token)}` : "";
    const page = await call("GET", `/v1/streams${q}`);
    streams.push(...(page.streams || []));
    token = page.next_page_token || "";
    if (!token) break;
  }
  return streams;
}

export async function listConsumers(stream, maxPages = 50) {
  const consumers = [];
  let token = "";
  for (let i = 0; i < maxPages; i++) {
    const q = token ? `?page_token=${seg(token)}` : "";
    const page = await call("GET", `/v1/streams/${seg(stream)}/consumers${q}`);
    consumers.push(...(page.consumers || []));
    token = page.next_page_token || "";
    if (!token) break;
  }
  return consumers;
}

export function getStream(name) {
  return call("GET", `/v1/streams/${seg(name)}`);
}

export function getMessage(stream, seq) {
  return call("GET", `/v1/streams/${seg(stream)}/messages/${seg(String(seq))}`);
}

export function publish(subject, payload, msgID) {
  const body = { ...payload };
  if (msgID) body.msg_id = msgID;
  return call("POST", `/v1/subjects/${seg(subject)}:publish`, body);
}

export function mintToken(req) {
  return call("POST", "/v1/access-tokens", req);
}

// errorOf is the APIError of a refused streaming request.
async function errorOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  return new APIError(resp.status, body);
}

// readEvents reads a Server-Sent Events response to its end, calling
// onEvent(name, data) for each event; an in-band error event throws its
// APIError.
async function readEvents(resp, onEvent) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const raw = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of raw.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length === 0) continue;
      let parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch {
        continue;
      }
      if (name === "jetway-error" || name === "error") throw new APIError(0, parsed);
      onEvent(name, parsed);
    }
  }
}

// subscribe tails a stream through an ephemeral consumer that acks
// nothing, as Server-Sent Events read with fetch (EventSource cannot send
// the Authorization header). onEvent gets (name, data) for each event;
// the promise ends when the stream does, with an APIError for a refusal,
// or when signal aborts it.
export async function subscribe(stream, opts, onEvent, signal) {
  const q = new URLSearchParams({
    "config.deliver_policy": opts.deliverPolicy || "DELIVER_POLICY_NEW",
    "config.ack_policy": "ACK_POLICY_NONE",
    format: "PAYLOAD_FORMAT_BYTES",
  });
  if (opts.filter) q.set("config.filter_subjects", opts.filter);
  const resp = await fetch(`/v1/streams/${seg(stream)}:subscribe?${q}`, {
    headers: headers({ Accept: "text/event-stream" }),
    credentials: "omit",
    cache: "no-store",
    signal,
  });
  if (!resp.ok) throw await errorOf(resp);
  await readEvents(resp, onEvent);
}

// filterQuery sets a DeadLetterFilter's non-empty fields on q.
function filterQuery(q, filter) {
  for (const k of ["stream", "consumer", "reason", "subject"]) {
    if (filter && filter[k]) q.set(`filter.${k}`, filter[k]);
  }
}

// listDeadLetters reads one page of a DLQ stream's dead letters
// (ListDeadLetters) from start, at most max, matching filter.
export function listDeadLetters(stream, filter, start, max) {
  const q = new URLSearchParams();
  filterQuery(q, filter);
  if (start) q.set("start_sequence", String(start));
  if (max) q.set("max_messages", String(max));
  return call("GET", `/v1/dead-letters/${seg(stream)}?${q}`);
}

// redrive runs RedriveDeadLetters (req: its JSON body, stream aside) as
// Server-Sent Events: onEvent gets ("progress", {progress}) for each dead
// letter and ("summary", {summary}) at the end. Aborting signal stops the
// redrive where it is (the bridge publishes nothing more).
export async function redrive(stream, req, onEvent, signal) {
  const resp = await fetch(`/v1/dead-letters/${seg(stream)}:redrive`, {
    method: "POST",
    headers: headers({ Accept: "text/event-stream", "Content-Type": "application/json" }),
    body: JSON.stringify(req),
    credentials: "omit",
    cache: "no-store",
    signal,
  });
  if (!resp.ok) throw await errorOf(resp);
  await readEvents(resp, onEvent);
}

// subjectMatches reports whether subject (no wildcards) matches a NATS
// subject pattern (* one token, > one or more at the end).
export function subjectMatches(pattern, subject) {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

// decodePayload turns a base64 payload into text when it is UTF-8, else
// into hex.
export function decodePayload(b64) {
  if (!b64) return { text: "", binary: false };
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), binary: false };
  } catch {
    return { text: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" "), binary: true };
  }
}
