// End-to-end check of the dashboard in a real headless Chromium (Debian's, driven by
// playwright-core; no browser download).
//
//   node e2e/dashboard.e2e.mjs --url http://127.0.0.1:8000 [--out ../test-output]
//
// The URL serves the built dashboard and the gateway's /api and /ws on one origin (the
// gateway itself, or `vite preview` proxying to it). The script registers a user, checks that
// the picker lists the symbol on Binance spot and on Binance USD-M (two instruments) and that
// the chart draws each, reloads a link naming one, waits for candles and a live update,
// toggles an overlay, opens the RSI pane, creates an alert that fires on the next final bar
// and waits to see it fire, saving a screenshot after each step. Exit status 0 when every
// step passed.
import { parseArgs } from "node:util";
import { openSession, register, signIn as signInAs } from "./browser-session.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: process.env.TICKMESH_E2E_URL ?? "http://127.0.0.1:8000" },
    out: { type: "string", default: process.env.TICKMESH_E2E_OUT ?? "test-output/e2e" },
    chromium: { type: "string", default: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium" },
    symbol: { type: "string", default: process.env.TICKMESH_E2E_SYMBOL ?? "BTCUSDT" },
    "alert-timeout": { type: "string", default: "75" },
    headed: { type: "boolean", default: false },
  },
});

const { context, page, log, step, shot, run } = await openSession({
  name: "e2e",
  chromiumPath: args.chromium,
  out: args.out,
  headed: args.headed,
});
const username = `e2e_${Date.now().toString(36)}`;
const password = "e2e-password-1";
const signIn = () => signInAs(page, username, password);

await run(async () => {
  await step("open the dashboard", async () => {
    await page.goto(args.url, { waitUntil: "domcontentloaded" });
    await page.getByRole("button", { name: "Sign in" }).waitFor({ timeout: 15_000 });
    await shot("01-login");
  });

  await step("register a user (and be signed in)", () => register(page, username, password));

  const symbol = args.symbol;
  // The same symbol on two venues is two instruments: the picker names the venue of each.
  const venues = [
    { instrument: `binance_spot:${symbol}`, label: `${symbol} · Binance spot` },
    { instrument: `binance_usdm:${symbol}`, label: `${symbol} · Binance USD-M` },
  ];
  const picker = page.getByRole("combobox", { name: "Instrument" });
  const option = (instrument) => page.locator(`[role="option"][data-instrument="${instrument}"]`);

  await step(`the picker lists ${symbol} on Binance spot and on Binance USD-M`, async () => {
    const deadline = Date.now() + 45_000;
    for (;;) {
      await picker.click();
      await page.getByRole("option").first().waitFor({ timeout: 20_000 });
      const present = await Promise.all(venues.map((venue) => option(venue.instrument).count()));
      if (present.every((count) => count > 0)) break;
      // Registered after this page read the list: read it again.
      if (Date.now() > deadline) throw new Error(`the picker lacks ${venues.map((v) => v.instrument)}`);
      await page.keyboard.press("Escape");
      await page.waitForTimeout(2000);
      await page.reload({ waitUntil: "domcontentloaded" });
      await signIn();
    }
    for (const venue of venues) {
      const text = (await option(venue.instrument).textContent()) ?? "";
      if (!text.includes(venue.label)) throw new Error(`option ${venue.instrument} reads "${text}"`);
    }
    await shot("01b-picker-venues");
    await page.keyboard.press("Escape");
  });


  const chart = page.getByTestId("price-chart");
  const chartOf = async (instrument) => {
    await page.waitForFunction(
      (wanted) => {
        const element = document.querySelector('[data-testid="price-chart"]');
        return element?.dataset.instrument === wanted && Number(element.dataset.bars ?? 0) > 0;
      },
      instrument,
      { timeout: 45_000 },
    );
    // The chart library drew it: its canvases are sized and painted.
    const painted = await chart.evaluate((element) =>
      [...element.querySelectorAll("canvas")].some((canvas) => canvas.width > 0 && canvas.height > 0),
    );
    if (!painted) throw new Error(`no canvas drawn for ${instrument}`);
  };

  for (const venue of [...venues].reverse()) {
    await step(`pick ${venue.label} and see its chart`, async () => {
      await picker.click();
      await picker.fill(symbol.slice(0, 3));
      await option(venue.instrument).click();
      await page.waitForFunction(
        (wanted) => document.querySelector('[role="combobox"]')?.value === wanted,
        venue.label,
      );
      await page.waitForFunction(
        (wanted) => new URLSearchParams(window.location.search).get("instrument") === wanted,
        venue.instrument,
      );
      await chartOf(venue.instrument);
      log(`${venue.instrument}: ${await chart.getAttribute("data-bars")} bars, last ${await page.getByTestId("last-price").getAttribute("aria-label")}`);
      await shot(`01c-${venue.instrument.replace(":", "-")}`);
    });
  }

  await step("a link naming an instrument opens it after a reload", async () => {
    const [spot, usdm] = venues;
    await page.goto(`${args.url.replace(/\/$/, "")}/?instrument=${spot.instrument}&timeframe=1m`, {
      waitUntil: "domcontentloaded",
    });
    await signIn(); // tokens live in memory only: a reload signs in again, the address stays
    await chartOf(spot.instrument);
    if (!page.url().includes(`instrument=${spot.instrument}`)) throw new Error(`address is ${page.url()}`);
    if ((await picker.inputValue()) !== spot.label) throw new Error(`picker shows ${await picker.inputValue()}`);
    // Back to USD-M for the live steps below.
    await picker.click();
    await picker.fill(symbol.slice(0, 3));
    await option(usdm.instrument).click();
    await chartOf(usdm.instrument);
  });

  await step("see candles", async () => {
    await page.waitForFunction(
      () => Number(document.querySelector('[data-testid="price-chart"]')?.dataset.bars ?? 0) > 0,
      undefined,
      { timeout: 30_000 },
    );
    await page.getByRole("status").filter({ hasText: "Live" }).waitFor({ timeout: 20_000 });
    log(`${await chart.getAttribute("data-bars")} bars`);
    await shot("02-candles");
  });

  await step("see a live update arrive", async () => {
    const price = page.getByTestId("last-price");
    const before = Number(await price.getAttribute("data-live-updates"));
    await page.waitForFunction(
      (count) => Number(document.querySelector('[data-testid="last-price"]')?.dataset.liveUpdates) > count,
      before,
      { timeout: 20_000 },
    );
    log(`last price ${await price.textContent()}`);
  });

  await step("a dropped connection reconnects and re-reads history: no hole, no duplicate", async () => {
    const status = page.locator(".connection");
    await context.setOffline(true);
    await page.waitForFunction(
      () => ["reconnecting", "offline"].includes(document.querySelector(".connection")?.dataset.status ?? ""),
      undefined,
      { timeout: 15_000 },
    );
    log(`while offline: ${await status.getAttribute("data-status")}`);
    await page.waitForTimeout(1500);
    await context.setOffline(false);
    await page.waitForFunction(
      () => document.querySelector(".connection")?.dataset.status === "live",
      undefined,
      { timeout: 30_000 },
    );
    await page.waitForTimeout(1000); // the history re-read lands
    const { bars, first, last } = await chart.evaluate((element) => ({
      bars: Number(element.dataset.bars),
      first: Number(element.dataset.firstTime),
      last: Number(element.dataset.lastTime),
    }));
    // On 1m every minute has a bar once a symbol traded (flat bars fill idle minutes), so a
    // series without holes or duplicates has exactly one bar per minute of its span.
    const expected = (last - first) / 60 + 1;
    if (bars !== expected) throw new Error(`${bars} bars over ${expected} minutes`);
    log(`back to live with ${bars} contiguous bars`);
  });

  await step("toggle an overlay (SMA 20 and Bollinger)", async () => {
    await page.getByRole("checkbox", { name: "SMA 20", exact: true }).check();
    await page.getByRole("checkbox", { name: "Bollinger" }).check();
    if (!(await page.getByRole("checkbox", { name: "SMA 20", exact: true }).isChecked())) throw new Error("SMA 20 is not on");
  });

  await step("open the RSI pane (and MACD)", async () => {
    const height = async () => (await chart.boundingBox())?.height ?? 0;
    const before = await height();
    await page.getByRole("checkbox", { name: "RSI", exact: true }).check();
    await page.getByRole("checkbox", { name: "MACD", exact: true }).check();
    // One chart, stacked panes: Lightweight Charts draws a canvas per pane and axis.
    await page.waitForFunction(
      () => document.querySelectorAll('[data-testid="price-chart"] table tr').length >= 5,
      undefined,
      { timeout: 10_000 },
    );
    log(`chart ${before}px -> ${await height()}px tall with panes`);
    await page.waitForTimeout(500);
    await shot("03-overlays-rsi-macd");
  });

  await step("see the quality badge and the features table", async () => {
    await page.getByTestId("quality-badge").waitFor();
    log(`quality: ${(await page.getByTestId("quality-badge").textContent())?.trim()}`);
    log(`features: ${await page.getByTestId("features").locator("tbody tr").count()} rows`);
  });

  await step("create an alert and see it fire", async () => {
    // Price above 0 holds for every bar: the next final bar fires it.
    const alerts = page.getByTestId("alerts");
    await alerts.getByLabel("Condition").selectOption("price_above");
    await alerts.getByLabel(/Threshold/).fill("0.0001");
    await alerts.getByRole("button", { name: /Add alert/ }).click();
    const item = alerts.locator(".alert-list li").first();
    await item.waitFor({ timeout: 10_000 });
    await shot("04-alert-created");
    await alerts
      .getByTestId("alert-firings")
      .locator(".firing")
      .first()
      .waitFor({ timeout: Number(args["alert-timeout"]) * 1000 });
    log(`fired: ${(await alerts.getByTestId("alert-firings").locator(".firing").first().textContent())?.trim()}`);
    await shot("05-alert-fired");
  });

  await step("phone width stays usable", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(400);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 2) throw new Error(`page is ${overflow}px wider than the phone`);
    await shot("06-phone");
    await page.setViewportSize({ width: 1440, height: 900 });
  });

  await step("sign out", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("button", { name: "Sign in" }).waitFor();
  });
}, "failure");
