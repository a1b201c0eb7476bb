// Shared by the browser checks: opens a URL in Debian's Chromium (playwright-core from
// www/e2e), waits for the page to set `window.result`, and returns it with every page or
// console error seen meanwhile.
import { chromium } from "../../../www/e2e/node_modules/playwright-core/index.mjs";

/** Headless Chromium, as every browser check runs it. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

/** Records `page`'s uncaught errors and console errors into `errors`. */
export function watchErrors(page, errors) {
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console error: ${m.text()}`); });
}

export async function pageResult(url) {
  const browser = await launch();
  const errors = [];
  try {
    const page = await browser.newPage();
    watchErrors(page, errors);
    await page.goto(url);
    await page.waitForFunction(() => window.result !== undefined, null, { timeout: 60_000 });
    return { result: await page.evaluate(() => window.result), errors };
  } finally {
    await browser.close();
  }
}
