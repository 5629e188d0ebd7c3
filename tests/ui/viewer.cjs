// Drives the gateway's built-in viewer (/ui) in a real browser: Debian's Chromium, through
// playwright-core (installed by tests/scripts/install-deps.sh into target/npm). Run by
// tests/python/test_ui.py, which sends the traffic and checks what this script saw.
//
// Usage: node tests/ui/viewer.cjs '<json>' with {admin, filterRoute, detailId, screenshots,
// chromium}. Prints "READY <row count>" once the list shows the first requests, then waits for
// one more row to arrive live (the test sends a request on READY), walks the filter, the
// detail view and the overview, and prints one JSON line with everything it observed.
// Every request the page makes to anything but the admin port is blocked and reported.
"use strict";

const { chromium } = require("playwright-core");

const opts = JSON.parse(process.argv[2]);
const origin = new URL(opts.admin).origin;

async function rows(page) {
  return page.$$eval("#requests tbody tr", (trs) =>
    trs.map((tr) => ({
      id: Number(tr.dataset.id),
      cells: [...tr.cells].map((c) => c.textContent),
    })));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: opts.chromium || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  const external = [];
  const consoleErrors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    // The network is cut for everything but the admin port: the page must need nothing else.
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(origin + "/") || url.startsWith("data:")) return route.continue();
      external.push(url);
      return route.abort("blockedbyclient");
    });

    await page.goto(opts.admin + "/ui", { waitUntil: "load" });
    await page.waitForSelector("#requests tbody tr", { timeout: 15000 });
    const initial = await rows(page);
    await page.screenshot({ path: opts.screenshots + "/ui-requests.png", fullPage: true });

    // Live: the test sends one more request now; it must appear without a reload.
    process.stdout.write("READY " + initial.length + "\n");
    await page.waitForFunction((n) => document.querySelectorAll("#requests tbody tr").length > n,
      initial.length, { timeout: 15000 });
    const live = await rows(page);

    // Filter by route: only that route's rows remain.
    await page.selectOption("#f-route", opts.filterRoute);
    await page.waitForFunction((r) => {
      const cells = [...document.querySelectorAll("#requests tbody tr td.route")];
      return cells.length > 0 && cells.every((c) => c.textContent === r);
    }, opts.filterRoute, { timeout: 10000 });
    const filtered = await rows(page);
    await page.screenshot({ path: opts.screenshots + "/ui-filtered.png", fullPage: true });

    // Detail: click the row, read the summary, the waterfall and each span's attributes.
    await page.click(`#requests tbody tr[data-id="${opts.detailId}"]`);
    await page.waitForSelector("#waterfall .wf-row", { timeout: 10000 });
    const summary = await page.$$eval("#d-summary dd", (dds) =>
      Object.fromEntries(dds.map((dd) => [dd.dataset.field, dd.textContent])));
    const spanRows = await page.$$("#waterfall .wf-row");
    const spans = [];
    for (const row of spanRows) {
      await row.click();
      spans.push(await row.evaluate((r) => {
        const bar = r.querySelector(".wf-bar");
        const attrs = Object.fromEntries([...document.querySelectorAll("#span-attrs tr")].map(
          (tr) => [tr.dataset.attr, tr.cells[1].textContent]));
        return {
          kind: r.dataset.kind, name: r.querySelector(".wf-name").textContent,
          left: parseFloat(bar.style.left), width: parseFloat(bar.style.width),
          selected: r.classList.contains("selected"), attrs,
        };
      }));
    }
    const prompt = await page.$eval("#d-prompt", (e) => e.textContent).catch(() => null);
    const completion = await page.$eval("#d-completion", (e) => e.textContent).catch(() => null);
    await page.screenshot({ path: opts.screenshots + "/ui-detail.png", fullPage: true });

    // Overview.
    await page.click("#nav-overview");
    await page.waitForSelector("#o-traffic tbody tr", { timeout: 10000 });
    const table = (id) => page.$$eval(`#${id} tbody tr`, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    const overview = {
      cards: await page.$$eval("#o-cards .card", (cs) => cs.map((c) => c.textContent)),
      traffic: await table("o-traffic"),
      mcp: await table("o-mcp"),
      tools: await table("o-tools"),
      routes: await table("o-routes"),
    };
    await page.screenshot({ path: opts.screenshots + "/ui-overview.png", fullPage: true });
    const html = await page.content();

    process.stdout.write(JSON.stringify({
      initial, live, filtered, summary, spans, prompt, completion, overview, external, consoleErrors, html,
    }) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
