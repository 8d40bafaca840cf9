// What both browser scripts share: Debian's Chromium on a fresh profile (driven by
// playwright-core; no browser download), named steps with a log line each, screenshots, the
// page's console errors, and the dashboard's register and sign-in forms.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

// One browser run: `run(body)` runs the steps, screenshots a failure, closes the browser and
// exits with 0 when every step passed.
export async function openSession({ name, chromiumPath, out, headed = false }) {
  const outDir = resolve(out);
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  const steps = [];
  const log = (message) => {
    const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
    process.stdout.write(`[${name} ${seconds}s] ${message}\n`);
  };
  const step = async (title, action) => {
    const begun = Date.now();
    try {
      await action();
      steps.push({ title, ok: true, ms: Date.now() - begun });
      log(`ok   ${title}`);
    } catch (error) {
      steps.push({ title, ok: false, ms: Date.now() - begun, error: String(error) });
      log(`FAIL ${title}: ${error instanceof Error ? error.message : error}`);
      throw error;
    }
  };

  const profile = mkdtempSync(join(tmpdir(), `tickmesh-${name}-chromium-`));
  // A fresh profile per run (playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: !headed,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  const shot = (title) => page.screenshot({ path: join(outDir, `${title}.png`) });

  const run = async (body, failureShot) => {
    let exitCode = 0;
    try {
      await body();
    } catch {
      exitCode = 1;
      await shot(failureShot).catch(() => {});
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
    const relevantErrors = consoleErrors.filter((text) => !/WebSocket|Failed to load resource/.test(text));
    if (relevantErrors.length > 0) log(`console errors:\n  ${relevantErrors.join("\n  ")}`);
    log(`${steps.filter((s) => s.ok).length}/${steps.length} steps passed; screenshots in ${outDir}`);
    process.exit(exitCode);
  };

  return { context, page, log, step, shot, run };
}

// Create an account on the login form (which then signs in).
export async function register(page, username, password) {
  await page.getByRole("button", { name: /No account\? Create one/ }).click();
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 15_000 });
}

// Sign in again (tokens live in memory only: a reload shows the login form).
export async function signIn(page, username, password) {
  await page.getByRole("button", { name: "Sign in" }).waitFor({ timeout: 15_000 });
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 15_000 });
}
