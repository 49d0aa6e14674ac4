// The web console (/console/), as a person uses it: sign in with a
// credential, see the streams, open one, start the live tail, publish and
// see the message arrive in the tail, read it back by sequence, and (with
// params.tokens) mint an access token and sign in again with it.
//
// params: base (the bridge's URL), credential, stream, subject, payload,
// screenshot (a path), tokens (bool).
import { emit, main, params } from "./lib.mjs";

const text = async (loc) => (await loc.textContent()).trim();

await main(async (ctx) => {
  const page = ctx.pages()[0] || (await ctx.newPage());
  const resp = await page.goto(`${params.base}/console/`);
  emit("opened", { status: resp.status(), csp: resp.headers()["content-security-policy"] || "" });
  await page.locator("body[data-ready=true]").waitFor();
  await page.locator("#signin-panel").waitFor();

  await page.fill("#credential", params.credential);
  await page.click("#signin button[type=submit]");
  const row = page.locator(`#streams tr[data-stream="${params.stream}"]`);
  await row.waitFor();
  const streams = await page.locator("#streams tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.stream));
  emit("streams", {
    streams,
    who: await text(page.locator("#who")),
    url: page.url(),
    session_has_credential: await page.evaluate((c) => Object.values(sessionStorage).some((v) => v.includes(c)), params.credential),
    local_storage_keys: await page.evaluate(() => localStorage.length),
  });

  await row.locator("button").click();
  await page.locator("#stream-panel:not([hidden])").waitFor();
  await page.locator("#stream-state:not(:empty)").waitFor();
  const consumers = await page.locator("#consumers tbody tr").evaluateAll((trs) =>
    trs.map((tr) => ({
      name: tr.dataset.consumer,
      num_pending: tr.querySelector(".num-pending").textContent,
      num_ack_pending: tr.querySelector(".num-ack-pending").textContent,
      num_redelivered: tr.querySelector(".num-redelivered").textContent,
    })),
  );
  emit("stream", { name: await text(page.locator("#stream-name")), state: await text(page.locator("#stream-state")), consumers });

  await page.click("#tail-start");
  await page.locator("#tail-status[data-state=running]", { hasText: "tailing" }).waitFor();
  emit("tailing", { status: await text(page.locator("#tail-status")) });

  await page.fill("#pub-subject", params.subject);
  await page.fill("#pub-payload", params.payload);
  await page.selectOption("#pub-kind", "json");
  await page.click("#publish button[type=submit]");
  const result = page.locator("#pub-result[data-sequence]");
  await result.waitFor();
  const seq = await result.getAttribute("data-sequence");
  emit("published", { sequence: seq, result: await text(result) });

  const tailed = page.locator(`#tail tr[data-seq="${seq}"]`);
  await tailed.waitFor();
  const cells = await tailed.locator("td").allTextContents();
  emit("tailed", { sequence: cells[0], subject: cells[1], payload: cells[3] });

  await page.fill("#browse-seq", seq);
  await page.click("#browse button[type=submit]");
  await page.locator("#message:not([hidden])").waitFor();
  await page.locator("#msg-seq", { hasText: seq }).waitFor();
  emit("browsed", {
    sequence: await text(page.locator("#msg-seq")),
    subject: await text(page.locator("#msg-subject")),
    payload: await text(page.locator("#msg-payload")),
  });

  if (params.screenshot) {
    await page.screenshot({ path: params.screenshot, fullPage: true });
    emit("screenshot", { path: params.screenshot });
  }

  if (params.tokens) {
    // A read token is narrowed by streams (READ cannot be narrowed by
    // subjects).
    await page.fill("#mint-streams", params.stream);
    await page.fill("#mint-ttl", "120s");
    await page.click("#mint button[type=submit]");
    await page.locator("#minted:not([hidden])").waitFor();
    const token = await page.inputValue("#minted-token");
    emit("minted", {
      token_prefix: token.slice(0, 4),
      identity: await text(page.locator("#minted-identity")),
      expires_at: await text(page.locator("#minted-expires")),
    });
    // Signed in with the token (read only): the streams are still there.
    await page.click("#signout");
    await page.locator("#signin-panel:not([hidden])").waitFor();
    await page.fill("#credential", token);
    await page.click("#signin button[type=submit]");
    await page.locator(`#streams tr[data-stream="${params.stream}"]`).waitFor();
    emit("token_signin", { who: await text(page.locator("#who")) });
    // A read-only token may not publish: the console shows the refusal.
    await page.fill("#pub-subject", params.subject);
    await page.fill("#pub-payload", '"x"');
    await page.click("#publish button[type=submit]");
    await page.locator("#error:not([hidden])").waitFor();
    emit("token_refused", { error: await text(page.locator("#error")) });
    await page.locator("#error").evaluate((e) => { e.hidden = true; });
  }

});
