// Drives headless Chromium through the desktop's terminal page against a real daemon.
//
//   node run.mjs <ws-port> <session-id> <allowed-http-port> <foreign-http-port> <needle>
//
// Serves terminal.html (with xterm.js from npm) on two loopback ports: the daemon allows the
// first origin and not the second. Prints one JSON line: what each page saw.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const [wsPort, session, allowedPort, foreignPort, needle] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const files = {
  '/terminal.html': [path.join(here, 'terminal.html'), 'text/html'],
  '/xterm.js': [path.join(here, 'node_modules/@xterm/xterm/lib/xterm.js'), 'text/javascript'],
  '/xterm.css': [path.join(here, 'node_modules/@xterm/xterm/css/xterm.css'), 'text/css'],
};
const DEADLINE_MS = 15000;

function serve(port) {
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': file[1] });
    res.end(fs.readFileSync(file[0]));
  });
  return new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(server)));
}

async function waitFor(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: DEADLINE_MS, polling: 50 });
    return true;
  } catch {
    console.error(`timed out waiting for ${what}`);
    return false;
  }
}

const servers = [await serve(allowedPort), await serve(foreignPort)];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pulsar-chromium-'));
const result = {};
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const url = (port) =>
    `http://127.0.0.1:${port}/terminal.html?ws=ws://127.0.0.1:${wsPort}&session=${session}`;

  const page = await context.newPage();
  await page.goto(url(allowedPort));
  result.showsScreen = await waitFor(page, 'the session screen',
    (n) => window.screenText().includes(n), needle);
  await page.click('#terminal');
  await page.keyboard.type("echo typed-in-''browser\n");
  result.typingWorks = await waitFor(page, 'the typed line echoed',
    () => window.screenText().includes('typed-in-browser'));
  result.allowed = await page.evaluate(() => window.pulsar);
  result.allowedScreen = await page.evaluate(() => window.screenText());

  const foreign = await context.newPage();
  await foreign.goto(url(foreignPort));
  await waitFor(foreign, 'the refused socket to close', () => window.pulsar.closed);
  result.foreign = await foreign.evaluate(() => window.pulsar);
  result.foreignScreen = await foreign.evaluate(() => window.screenText());
} catch (err) {
  result.error = String(err && err.stack || err);
} finally {
  if (context) await context.close();
  servers.forEach((s) => s.close());
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
