// The order board: its config and an access token from its own server,
// then the bridge straight from the browser (another origin: CORS).

const $ = (id) => document.getElementById(id);
const seg = encodeURIComponent;

function report(id, text, state) {
  const el = $(id);
  el.textContent = text;
  el.dataset.state = state;
}

async function bridgeCall(cfg, token, method, path, body) {
  const resp = await fetch(cfg.bridge + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await resp.json().catch(() => null);
  if (!resp.ok) {
    const reason = ((answer && answer.details) || []).map((d) => d.reason).find(Boolean) || "";
    throw new Error(`HTTP ${resp.status} ${reason}`.trim());
  }
  return answer;
}

async function main() {
  const cfg = await (await fetch("config.json")).json();
  const session = await (await fetch("session", { method: "POST" })).json();
  const token = session.token;

  // EventSource cannot send headers: the token goes in the URL, which
  // the bridge accepts on Subscribe only.
  const q = new URLSearchParams({
    access_token: token,
    "config.deliver_policy": "DELIVER_POLICY_NEW",
    "config.ack_policy": "ACK_POLICY_NONE",
    "config.filter_subjects": cfg.subject.split(".")[0] + ".>",
    format: "PAYLOAD_FORMAT_TEXT",
  });
  const es = new EventSource(`${cfg.bridge}/v1/streams/${seg(cfg.stream)}:subscribe?${q}`);
  es.addEventListener("subscribed", () => report("tail-status", "open", "open"));
  es.addEventListener("message", (ev) => {
    const m = JSON.parse(ev.data).message;
    const li = document.createElement("li");
    li.dataset.seq = m.stream_sequence;
    li.textContent = `${m.stream_sequence} ${m.subject} ${m.text}`;
    $("orders").prepend(li);
  });
  es.addEventListener("jetway-error", (ev) => report("tail-status", `failed: ${ev.data}`, "failed"));
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) report("tail-status", "refused", "refused");
    else report("tail-status", "reconnecting", "reconnecting");
  };

  $("order").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await bridgeCall(cfg, token, "POST", `/v1/subjects/${seg(cfg.subject)}:publish`, {
        json: { item: $("item").value },
      });
      report("pub-result", `stored at ${r.sequence}`, "ok");
      $("pub-result").dataset.sequence = r.sequence;
    } catch (err) {
      report("pub-result", String(err.message || err), "failed");
    }
  });

  let ackToken = "";
  $("take").addEventListener("click", async () => {
    try {
      const r = await bridgeCall(cfg, token, "POST", `/v1/streams/${seg(cfg.stream)}/consumers/${seg(cfg.consumer)}:fetch`, {
        batch: 1, wait: "5s", format: "PAYLOAD_FORMAT_TEXT",
      });
      const m = (r.messages || [])[0];
      if (!m) {
        report("work", "nothing to do", "empty");
        return;
      }
      ackToken = m.ack_token;
      report("work", `${m.stream_sequence} ${m.text}`, "taken");
      $("work").dataset.sequence = m.stream_sequence;
      $("ack").disabled = false;
    } catch (err) {
      report("work", String(err.message || err), "failed");
    }
  });
  $("ack").addEventListener("click", async () => {
    try {
      const r = await bridgeCall(cfg, token, "POST", "/v1/acks", {
        operations: [{ token: ackToken, kind: "ACK_KIND_ACK" }],
        sync: true,
      });
      const err = r.results[0].error;
      if (err) report("ack-result", `refused: ${err.reason}`, "failed");
      else report("ack-result", "acked", "ok");
      $("ack").disabled = true;
    } catch (err) {
      report("ack-result", String(err.message || err), "failed");
    }
  });
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  document.body.dataset.ready = "failed";
  report("tail-status", String(err), "failed");
});
