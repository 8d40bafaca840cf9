// The dashboard's replay mode in a real headless Chromium (Debian's, driven by playwright-core).
//
//   node e2e/replay.e2e.mjs --url http://127.0.0.1:8000 --from 2026-01-01T10:00 --to 2026-01-01T10:04
//
// Registers a user, opens the instrument's chart, switches to replay, picks the range (UTC, to
// the minute) and 60x, plays it and checks that the chart advances bar by bar while it plays,
// paced (a range of N minutes takes about N seconds), up to the end; then reloads the link the
// address now names (it plays the replay again) and goes back to live. Exit status 0 when every
// step passed; screenshots go to --out.
import { parseArgs } from "node:util";
import { openSession, register, signIn as signInAs } from "./browser-session.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: process.env.TICKMESH_E2E_URL ?? "http://127.0.0.1:8000" },
    out: { type: "string", default: process.env.TICKMESH_E2E_OUT ?? "test-output/e2e" },
    chromium: { type: "string", default: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium" },
    instrument: { type: "string", default: "binance_usdm:BTCUSDT" },
    from: { type: "string" },
    to: { type: "string" },
  },
});
if (args.from === undefined || args.to === undefined) throw new Error("--from and --to are required");

const { page, log, step, shot, run } = await openSession({
  name: "replay-e2e",
  chromiumPath: args.chromium,
  out: args.out,
});
const rangeSeconds = (Date.parse(`${args.to}Z`) - Date.parse(`${args.from}Z`)) / 1000;

const username = `replay_${Date.now().toString(36)}`;
const password = "e2e-password-1";
const chart = page.getByTestId("price-chart");
const controls = page.getByTestId("replay-controls");
const chartBars = async () => Number(await chart.getAttribute("data-bars"));
const chartLast = async () => Number(await chart.getAttribute("data-last-time"));
const phase = () => controls.getAttribute("data-phase");

const signIn = () => signInAs(page, username, password);

async function waitForPhase(wanted, timeout) {
  await page.waitForFunction(
    (phases) => phases.includes(document.querySelector('[data-testid="replay-controls"]')?.getAttribute("data-phase")),
    wanted,
    { timeout },
  );
}

await run(async () => {
  await step("register and open the instrument's live chart", async () => {
    await page.goto(`${args.url}/?instrument=${args.instrument}&timeframe=1m`, { waitUntil: "domcontentloaded" });
    await register(page, username, password);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="price-chart"]')?.getAttribute("data-bars")) > 0, null, { timeout: 30_000 });
    await shot("replay-01-live");
  });

  let samples = [];
  let playedFor = 0;
  await step(`replay ${args.from} to ${args.to} (UTC) at 60x: the chart advances while it plays`, async () => {
    await page.getByLabel("Replay from (UTC)").fill(args.from);
    await page.getByLabel("Replay to (UTC)").fill(args.to);
    await page.getByLabel("Replay speed").selectOption("60");
    await page.getByRole("group", { name: "Mode" }).getByRole("button", { name: "Replay" }).click();
    await waitForPhase(["playing"], 15_000);
    const playing = Date.now();
    // Sample the chart while it plays: its newest bar must move forward, several times.
    while ((await phase()) === "playing" && Date.now() - playing < rangeSeconds * 1000 + 30_000) {
      samples.push({ at: Date.now() - playing, bars: await chartBars(), last: await chartLast() });
      await page.waitForTimeout(250);
    }
    playedFor = (Date.now() - playing) / 1000;
    // The last bar may land just before the end: one more sample sees it.
    samples.push({ at: Date.now() - playing, bars: await chartBars(), last: await chartLast() });
    await shot("replay-02-played");
    const phaseNow = await phase();
    if (phaseNow !== "ended") throw new Error(`the replay is ${phaseNow}, not ended`);
    const lasts = samples.map((sample) => sample.last).filter((last) => last > 0);
    const advances = lasts.filter((last, index) => index > 0 && last > lasts[index - 1]).length;
    log(`played for ${playedFor.toFixed(1)} s; newest bar moved forward ${advances} times; ${await chartBars()} bars`);
    if (advances < 2) throw new Error(`the chart advanced ${advances} times while playing: ${JSON.stringify(samples)}`);
    // Paced: at 60x bars a minute apart arrive about a second apart ("max" would be at once).
    const moves = samples.filter((sample, index) => index > 0 && sample.last > samples[index - 1].last && samples[index - 1].last > 0);
    if (moves.length >= 2) {
      const first = moves[0];
      const last = moves[moves.length - 1];
      const expected = (last.last - first.last) / 60;
      const took = (last.at - first.at) / 1000;
      log(`bars ${last.last - first.last} s apart arrived ${took.toFixed(1)} s apart (60x: ${expected.toFixed(1)} s)`);
      if (took < expected / 2) throw new Error(`bars ${expected * 60} s apart came in ${took} s: not paced at 60x`);
    }
    const finalLast = await chartLast();
    if (finalLast < Date.parse(`${args.to}Z`) / 1000 - 5 * 60) throw new Error(`the chart ends at ${finalLast}, before the range`);
  });

  await step("the address names the replay; reloading it plays it again", async () => {
    const address = new URL(page.url());
    const params = address.searchParams;
    if (params.get("mode") !== "replay" || params.get("speed") !== "60" || params.get("instrument") !== args.instrument) {
      throw new Error(`address ${page.url()} does not name the replay`);
    }
    await page.reload({ waitUntil: "domcontentloaded" });
    await signIn();
    await waitForPhase(["playing", "ended"], 20_000);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="price-chart"]')?.getAttribute("data-bars")) > 0, null, { timeout: 30_000 });
  });

  await step("pause holds the chart; Live goes back to the present", async () => {
    if ((await phase()) === "playing") {
      await controls.getByRole("button", { name: "Pause" }).click();
      await waitForPhase(["paused", "ended"], 10_000);
      const held = await chartLast();
      await page.waitForTimeout(2500);
      if ((await phase()) === "paused" && (await chartLast()) !== held) throw new Error("the chart moved while paused");
    }
    await page.getByRole("group", { name: "Mode" }).getByRole("button", { name: "Live" }).click();
    await page.waitForFunction(() => !new URL(window.location.href).searchParams.has("mode"), null, { timeout: 10_000 });
    await page.locator('[data-status="live"]').waitFor({ timeout: 30_000 });
    await shot("replay-03-live-again");
  });
}, "replay-failure");
