// The console's dead letters (/console/), as an operator uses them: open a
// stream, follow a consumer's dead-letter subject to its dead letters,
// inspect one, filter by reason, redrive as a dry run and then for real
// (confirming the dialog, deleting what was redriven), and, signed in
// again with a read-only credential, see the list and a refused redrive.
//
// params: base, credential (may redrive), viewer (may only read), stream
// (the origin stream), consumer (the one whose dead letters are listed),
// dlq (the stream holding them), screenshot.
import { emit, main, params } from "./lib.mjs";

const text = async (loc) => (await loc.textContent()).trim();

const rows = (page) =>
  page.locator("#dlq tbody tr").evaluateAll((trs) =>
    trs.map((tr) => ({
      seq: tr.dataset.seq,
      origin: tr.querySelector(".origin").textContent,
      subject: tr.querySelector(".subject").textContent,
      reason: tr.querySelector(".reason").textContent,
      deliveries: tr.querySelector(".deliveries").textContent,
      by: tr.querySelector(".by").textContent,
      payload: tr.querySelector(".payload").textContent,
    })),
  );

const summary = async (page) => {
  await page.locator("#redrive-status[data-state=done]").waitFor();
  const out = {};
  for (const k of ["matched", "redriven", "duplicates", "not-permitted", "failed", "deleted"]) {
    out[k] = await text(page.locator(`#rs-${k}`));
  }
  out.outcomes = await page.locator("#redrive tbody tr .outcome").allTextContents();
  out.status = await text(page.locator("#redrive-status"));
  return out;
};

// listed waits for a listing to finish (the status is set afresh by each).
const listed = async (page, action) => {
  await page.locator("#dlq-status").evaluate((e) => { delete e.dataset.state; });
  await action();
  await page.locator("#dlq-status[data-state=listed]").waitFor();
};

const signIn = async (page, credential) => {
  await page.locator("#signin-panel:not([hidden])").waitFor();
  await page.fill("#credential", credential);
  await page.click("#signin button[type=submit]");
  await page.locator(`#streams tr[data-stream="${params.stream}"]`).waitFor();
};

await main(async (ctx) => {
  const page = ctx.pages()[0] || (await ctx.newPage());
  const dialogs = [];
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    await d.accept();
  });
  await page.goto(`${params.base}/console/`);
  await page.locator("body[data-ready=true]").waitFor();
  await signIn(page, params.credential);

  await page.locator(`#streams tr[data-stream="${params.stream}"] button`).click();
  await page.locator("#stream-panel:not([hidden])").waitFor();
  const consumer = page.locator(`#consumers tr[data-consumer="${params.consumer}"]`);
  await consumer.waitFor();
  const subjects = await page.locator("#consumers tbody tr").evaluateAll((trs) =>
    Object.fromEntries(trs.map((tr) => [tr.dataset.consumer, tr.querySelector(".dead-letter-subject").textContent])),
  );
  emit("consumers", { dead_letter_subjects: subjects });

  // The consumer's dead-letter subject opens its dead letters.
  await listed(page, () => consumer.locator(".dead-letter-subject button").click());
  emit("listed", {
    dlq: await page.inputValue("#dlq-stream"),
    origin: await page.inputValue("#dlq-origin"),
    consumer: await page.inputValue("#dlq-consumer"),
    rows: await rows(page),
    status: await text(page.locator("#dlq-status")),
  });

  // One dead letter in full; its hostile payload and reason stay text.
  const last = page.locator("#dlq tbody tr").last();
  await last.locator("button").click();
  await page.locator("#dead-letter:not([hidden])").waitFor();
  emit("inspected", {
    seq: await text(page.locator("#dl-seq")),
    origin: await text(page.locator("#dl-origin")),
    term_reason: await text(page.locator("#dl-term-reason")),
    by: await text(page.locator("#dl-by")),
    headers: await text(page.locator("#dl-headers")),
    payload: await text(page.locator("#dl-payload")),
    pwned: await page.evaluate(() => document.body.dataset.pwned || ""),
    injected: await page.locator("#app img, #app script").count(),
  });

  // Every consumer's, by reason.
  await page.fill("#dlq-consumer", "");
  await page.selectOption("#dlq-reason", "DEAD_LETTER_REASON_MAX_DELIVERIES");
  await listed(page, () => page.click("#dlq-list"));
  emit("by_reason", { rows: await rows(page) });

  // Back to the consumer's: a dry run, then the redrive, deleting.
  await page.fill("#dlq-consumer", params.consumer);
  await page.selectOption("#dlq-reason", "");
  await listed(page, () => page.click("#dlq-list"));
  await page.check("#redrive-dry");
  await page.click("#redrive-start");
  emit("dry_run", { ...(await summary(page)), dialogs: dialogs.length });

  await page.uncheck("#redrive-dry");
  await page.check("#redrive-delete");
  await page.locator("#redrive-status").evaluate((e) => { e.dataset.state = "idle"; });
  await listed(page, () => page.click("#redrive-start"));
  emit("redriven", { ...(await summary(page)), dialogs });
  emit("after", { rows: await rows(page), empty_shown: await page.locator("#dlq-empty").isVisible() });

  if (params.screenshot) {
    await page.screenshot({ path: params.screenshot, fullPage: true });
    emit("screenshot", { path: params.screenshot });
  }

  // A read-only credential lists, and its redrive is refused.
  await page.click("#signout");
  await signIn(page, params.viewer);
  await page.fill("#dlq-stream", params.dlq);
  await listed(page, () => page.click("#dlq-list"));
  emit("viewer_listed", { rows: await rows(page) });
  await page.uncheck("#redrive-dry");
  await page.click("#redrive-start");
  await page.locator("#error:not([hidden])").waitFor();
  emit("viewer_refused", { error: await text(page.locator("#error")), status: await text(page.locator("#redrive-status")) });
});
