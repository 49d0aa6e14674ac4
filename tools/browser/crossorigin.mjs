// examples/browser's order board from two origins: params.allowed (in the
// bridge's --allowed-origins) tails, publishes, takes a message and acks
// it; params.refused (not listed) must get nowhere.
//
// params: allowed, refused (the app's URLs), item.
import { emit, main, params } from "./lib.mjs";

const text = async (loc) => (await loc.textContent()).trim();

async function open(ctx, url) {
  const page = await ctx.newPage();
  await page.goto(url);
  await page.locator("body[data-ready=true]").waitFor();
  return page;
}

await main(async (ctx) => {
  const ok = await open(ctx, params.allowed);
  await ok.locator("#tail-status[data-state=open]").waitFor();
  emit("allowed_tail", { status: await text(ok.locator("#tail-status")) });

  await ok.fill("#item", params.item);
  await ok.click("#order button[type=submit]");
  const pub = ok.locator("#pub-result[data-state]");
  await pub.waitFor();
  const seq = (await pub.getAttribute("data-sequence")) || "";
  emit("allowed_publish", { state: await pub.getAttribute("data-state"), sequence: seq, text: await text(pub) });
  if (seq) {
    const li = ok.locator(`#orders li[data-seq="${seq}"]`);
    await li.waitFor();
    emit("allowed_tailed", { text: await text(li) });
  }

  await ok.click("#take");
  const work = ok.locator("#work[data-state]");
  await work.waitFor();
  emit("allowed_take", { state: await work.getAttribute("data-state"), sequence: (await work.getAttribute("data-sequence")) || "", text: await text(work) });
  if ((await work.getAttribute("data-state")) === "taken") {
    await ok.click("#ack");
    const ack = ok.locator("#ack-result[data-state]");
    await ack.waitFor();
    emit("allowed_ack", { state: await ack.getAttribute("data-state"), text: await text(ack) });
  }
  const allowedURL = ok.url();
  await ok.close();
  emit("allowed_closed", { url: allowedURL });

  const bad = await open(ctx, params.refused);
  const tail = bad.locator("#tail-status[data-state=refused], #tail-status[data-state=failed]");
  await tail.waitFor();
  emit("refused_tail", { state: await tail.getAttribute("data-state") });
  await bad.fill("#item", params.item + "-refused");
  await bad.click("#order button[type=submit]");
  const bpub = bad.locator("#pub-result[data-state]");
  await bpub.waitFor();
  emit("refused_publish", { state: await bpub.getAttribute("data-state"), text: await text(bpub) });
  await bad.click("#take");
  const bwork = bad.locator("#work[data-state]");
  await bwork.waitFor();
  emit("refused_take", { state: await bwork.getAttribute("data-state"), text: await text(bwork) });
  await bad.close();
});
