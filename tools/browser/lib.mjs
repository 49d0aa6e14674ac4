// What the browser scripts share: their parameters, the JSON-lines report
// and chromium launched headless with a fresh profile.
import { chromium } from "playwright-core";

export const params = JSON.parse(process.env.JETWAY_BROWSER_PARAMS || "{}");

// emit reports one step as a JSON line. Access tokens are cut out (a
// browser's error messages quote the URLs they were in): the tests log
// these lines.
export function emit(step, fields = {}) {
  const line = JSON.stringify({ step, ...fields }).replace(/jwy_[A-Za-z0-9._~-]+/g, "jwy_[redacted]");
  process.stdout.write(line + "\n");
}

// launch starts chromium with params.userDataDir as a new persistent
// profile and returns its context; every page's console errors and
// uncaught exceptions are reported as "page_error" steps.
export async function launch() {
  const ctx = await chromium.launchPersistentContext(params.userDataDir, {
    executablePath: params.chromium || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 1000 },
    timeout: 30000,
  });
  ctx.setDefaultTimeout(params.stepTimeoutMs || 15000);
  ctx.on("page", watch);
  for (const p of ctx.pages()) watch(p);
  return ctx;
}

function watch(page) {
  page.on("console", (msg) => {
    if (msg.type() === "error") emit("page_error", { kind: "console", text: msg.text(), url: page.url() });
  });
  page.on("pageerror", (err) => emit("page_error", { kind: "exception", text: String(err), url: page.url() }));
}

// main runs fn(ctx), reports a failure as a "failed" step and exits
// non-zero, and always closes the browser.
export async function main(fn) {
  let ctx;
  let code = 0;
  try {
    ctx = await launch();
    emit("launched", { browser: ctx.browser() ? ctx.browser().version() : "" });
    await fn(ctx);
    emit("done");
  } catch (err) {
    emit("failed", { error: String(err && err.stack ? err.stack : err) });
    code = 1;
  } finally {
    if (ctx) await ctx.close().catch(() => {});
  }
  process.exit(code);
}
