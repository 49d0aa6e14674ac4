// Review 20: the console's dead letters against hostile and huge dead
// letters published natively into the DLQ stream, and Stop mid-redrive.
// Signed in with "none" (authentication off): list every page (more),
// inspect each hostile one, then redrive consumer "work"'s at 2 a second,
// Stop after two outcomes, and stay on the page for params.linger ms (the
// test counts natively what was published).
//
// params: base, dlq, hostile (how many hostile dead letters), linger.
import { emit, main, params } from "./lib.mjs";

const injected = (page) =>
  page.evaluate(() => ({
    pwned: document.body.dataset.pwned || "",
    nodes: document.querySelectorAll("#app img, #app script, #app iframe, #app svg, #app b, #app a").length,
  }));

await main(async (ctx) => {
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on("dialog", (d) => d.accept());
  await page.goto(`${params.base}/console/`);
  await page.locator("body[data-ready=true]").waitFor();
  await page.selectOption("#scheme", "none");
  await page.click("#signin button[type=submit]");
  await page.locator("#app:not([hidden])").waitFor();

  await page.fill("#dlq-stream", params.dlq);
  const listed = async (action) => {
    await page.locator("#dlq-status").evaluate((e) => { delete e.dataset.state; });
    await action();
    await page.locator("#dlq-status[data-state=listed]").waitFor({ timeout: 30000 });
  };
  await listed(() => page.click("#dlq-list"));
  let pages = 1;
  while (!(await page.locator("#dlq-more").isDisabled()) && pages < 50) {
    await listed(() => page.click("#dlq-more"));
    pages++;
  }
  emit("listed", {
    pages,
    rows: await page.locator("#dlq tbody tr").count(),
    status: (await page.locator("#dlq-status").textContent()).trim(),
    error: (await page.locator("#error").isVisible()) ? await page.locator("#error").textContent() : "",
    ...(await injected(page)),
  });

  for (let i = 0; i < params.hostile; i++) {
    await page.locator("#dlq tbody tr").nth(i).locator("button").click();
    await page.locator("#dead-letter:not([hidden])").waitFor();
    emit("inspected", {
      seq: await page.locator("#dl-seq").textContent(),
      origin: await page.locator("#dl-origin").textContent(),
      subject: await page.locator("#dl-subject").textContent(),
      term_reason: await page.locator("#dl-term-reason").textContent(),
      by: await page.locator("#dl-by").textContent(),
      msgid: await page.locator("#dl-msgid").textContent(),
      headers: await page.locator("#dl-headers").textContent(),
      payload_length: (await page.locator("#dl-payload").textContent()).length,
      binary: await page.locator("#dl-payload").getAttribute("data-binary"),
      ...(await injected(page)),
    });
  }

  await page.fill("#dlq-consumer", "work");
  await page.fill("#redrive-rate", "2");
  await page.click("#redrive-start");
  await page.locator("#redrive tbody tr:nth-child(2)").waitFor({ timeout: 30000 });
  await page.click("#redrive-stop");
  const at = await page.locator("#redrive tbody tr").count();
  emit("stopped", { rows: at, status: (await page.locator("#redrive-status").textContent()).trim() });
  await page.waitForTimeout(params.linger);
  emit("lingered", {
    rows: await page.locator("#redrive tbody tr").count(),
    status: (await page.locator("#redrive-status").textContent()).trim(),
    error: (await page.locator("#error").isVisible()) ? await page.locator("#error").textContent() : "",
  });
});
