#!/usr/bin/env node
/*
 * Real-browser test of the ahdapa admin UI (/ui/) on a three-node cluster.
 *
 *   node tests/browser/ui.mjs --ca CA.pem --out DIR URL1 URL2 URL3
 *
 * (or env UI_CA, UI_OUT, UI_NODES="URL1 URL2 URL3"; CHROMIUM overrides
 * /usr/bin/chromium). The nodes must already share a cluster key and gossip
 * with each other, with alice/alice123 in group admins (the `cluster` fixture
 * of tests/integration/test_ahdapa_cluster.py); run via
 * tests/integration/test_ahdapa_ui.py.
 *
 * Headless chromium (playwright-core), one tab per node in one context (the
 * session cookie is per host, so it is shared by the three ports):
 *   headers of /ui/ (exact CSP, nosniff, ...), /ui -> 308, /ui/nope.js -> 404,
 *     no inline code or absolute URL in the HTML;
 *   node1: sign in (focus moves to the panel); labels, unique ids, table
 *     captions and landmarks; a bad form shows the server's error in the
 *     alert region;
 *     create a confidential client (its secret shows once, works at /token,
 *     and is gone from the page once dismissed) and a public client;
 *   node2: the node1 client appears by auto-refresh; node3: delete it with
 *     the in-page confirmation; node1: it disappears;
 *   a scope made on node2 appears on node3, is deleted there, leaves node2;
 *   node1 Cluster: both peers listed, reachable, with a recent last contact;
 *   Session; Log out -> the sign-in form, also after a reload.
 * Every console error or warning, page error, failed request, HTTP error
 * response or request to another origin fails the run, except the one 400
 * the bad form provokes on purpose. Screenshots (PNG) go to the output dir.
 * Exit 0 on success; else 1 naming the failed step (2: bad usage).
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { chromium } from 'playwright-core';

const OVERALL_MS = 120_000;
const CONVERGE_MS = 20_000; // a change reaches the other nodes (gossip interval 2 s)
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
  + "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const UI_HEADERS = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

function usage(msg) {
  console.error(`ui.mjs: ${msg}\nusage: node ui.mjs --ca CA.pem --out DIR URL1 URL2 URL3`);
  process.exit(2);
}

const opts = { ca: process.env.UI_CA, out: process.env.UI_OUT, urls: [] };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--ca' || a === '--out') opts[a.slice(2)] = process.argv[++i];
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else opts.urls.push(a.replace(/\/+$/, ''));
}
if (!opts.urls.length && process.env.UI_NODES) opts.urls = process.env.UI_NODES.split(/\s+/).filter(Boolean);
if (opts.urls.length !== 3) usage('need exactly three node URLs');
if (!opts.ca || !fs.existsSync(opts.ca)) usage('--ca: the CA certificate file of the nodes');
if (!opts.out) usage('--out: the screenshot directory');
fs.mkdirSync(opts.out, { recursive: true });
const CA = fs.readFileSync(opts.ca);
const [N1, N2, N3] = opts.urls;
const origins = new Set(opts.urls.map((u) => new URL(u).origin));
const idOf = (u) => new URL(u).host; // node_id is host:port
const tag = Math.random().toString(36).slice(2, 8);

/* ---- plain HTTPS (verified against the test CA) ---- */

function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca: CA, timeout: 10_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/* ---- steps and problems ---- */

let current = '(start)';
const problems = [];
const expected = []; // errors provoked on purpose: {console, status, path, what, seenConsole, seenHttp}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  check(!problems.length, `browser problems:\n  ${problems.join('\n  ')}`);
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

/* Runs fn, which must provoke exactly one HTTP error response (status, for
 * a URL path) and the console error Chromium logs for it (matching re). */
async function expectHttpError(status, urlPath, re, what, fn) {
  const e = { console: re, status, path: urlPath, what, seenConsole: false, seenHttp: false };
  expected.push(e);
  await fn();
  const end = Date.now() + 5000;
  while (!(e.seenConsole && e.seenHttp) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  expected.splice(expected.indexOf(e), 1);
  check(e.seenHttp, `expected HTTP ${status} for ${urlPath} (${what}), saw none`);
  check(e.seenConsole, `expected a console error for ${what} (${re}), saw none`);
}

function watch(page, name) {
  const st = { closing: false };
  const report = (msg) => { if (!st.closing) problems.push(`[${name}] ${msg}`); };
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const e = expected.find((x) => !x.seenConsole && x.console.test(m.text()));
    if (e && m.type() === 'error') { e.seenConsole = true; return; }
    const loc = m.location();
    report(`console.${m.type()}: ${m.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
  });
  page.on('pageerror', (e) => report(`page error: ${e.stack || e}`));
  page.on('requestfailed', (r) => report(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (!origins.has(u.origin)) report(`request to another origin: ${r.url()}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const e = expected.find((x) => !x.seenHttp && x.status === r.status() && new URL(r.url()).pathname === x.path);
    if (e) e.seenHttp = true;
    else report(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  return st;
}

/* ---- page helpers ---- */

const shots = [];
async function shot(page, file) {
  const p = path.join(opts.out, file);
  await page.screenshot({ path: p, fullPage: true });
  shots.push(p);
}

const clientRow = (page, id) => page.locator(`[data-testid=client-row][data-client-id="${id}"]`);
const scopeRow = (page, name) => page.locator(`[data-testid=scope-row][data-scope="${name}"]`);
const focusedId = (page) => page.evaluate(() => document.activeElement && document.activeElement.id);
const text = async (loc) => (await loc.textContent()).trim();

async function openPanel(page, url) {
  await page.goto(`${url}/ui/`);
  await page.locator('#h-clients').waitFor({ state: 'visible', timeout: 10_000 });
  check(await text(page.getByTestId('header-user')) === 'alice', `${url}: header does not show alice`);
  await page.waitForFunction((id) => document.getElementById('who-node').textContent === id,
    idOf(url), { timeout: 10_000 });
}

async function nav(page, view) {
  await page.getByTestId(`nav-${view}`).click();
  await page.locator(`#h-${view}`).waitFor({ state: 'visible' });
  check(await page.getByTestId(`nav-${view}`).getAttribute('aria-current') === 'page', `nav ${view} not current`);
}

async function deleteRow(page, row, what) {
  await row.getByTestId('delete').click();
  const confirm = row.getByTestId('confirm-delete');
  await confirm.waitFor({ state: 'visible' });
  check(/Delete/.test(await text(row.locator('.confirm-q'))), `${what}: no confirmation question`);
  check(await page.evaluate(() => document.activeElement.dataset.action) === 'cancel',
    `${what}: focus is not on Cancel in the confirmation`);
  return confirm;
}

/* ---- the run ---- */

async function run(browser) {
  await step('headers of /ui/, /ui, /ui/nope.js', async () => {
    for (const f of ['', 'app.js', 'app.css', 'favicon.svg', 'nope.js']) {
      const r = await request(`${N1}/ui/${f}`);
      check(r.status === (f === 'nope.js' ? 404 : 200), `/ui/${f}: HTTP ${r.status}`);
      for (const [h, v] of Object.entries(UI_HEADERS)) {
        check(r.headers[h] === v, `/ui/${f}: ${h} is ${JSON.stringify(r.headers[h])}, want ${JSON.stringify(v)}`);
      }
      if (r.status === 200) check(r.headers.etag, `/ui/${f}: no ETag`);
      if (f === '') {
        const m = r.body.match(/<style|<script(?![^>]*\ssrc=)[^>]*>|\sstyle=|\son[a-z]+=|https?:\/\//i);
        check(!m, `/ui/: inline code, style or absolute URL in the HTML: ${m && m[0]}`);
      }
    }
    const r = await request(`${N1}/ui`);
    check(r.status === 308 && r.headers.location === '/ui/', `/ui: HTTP ${r.status} -> ${r.headers.location}`);
  });

  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(N1).origin });
  ctx.setDefaultTimeout(10_000);
  const p1 = await ctx.newPage();
  const w1 = watch(p1, 'node1');

  await step('node1: sign-in page', async () => {
    await p1.goto(`${N1}/ui/`);
    await p1.getByTestId('login-form').waitFor({ state: 'visible' });
    check(await p1.title() === 'ahdapa admin', 'page title');
    check(await p1.locator('html').getAttribute('lang') === 'en', 'html lang');
    check(await p1.locator('#nav').isHidden(), 'navigation visible before sign-in');
    check(await focusedId(p1) === 'login-username', 'focus is not on the user name');
    await shot(p1, '01-login.png');
  });

  await step('node1: sign in as alice', async () => {
    await p1.getByLabel('User name').fill('alice');
    await p1.getByLabel('Password').fill('alice123');
    await p1.getByRole('button', { name: 'Sign in' }).click();
    await p1.locator('#h-clients').waitFor({ state: 'visible' });
    check(await focusedId(p1) === 'h-clients', 'focus did not move to the Clients heading');
    check(await p1.getByLabel('Password').inputValue() === '', 'password left in the form');
    check(await text(p1.getByTestId('header-user')) === 'alice', 'header user');
    await p1.waitForFunction((id) => document.getElementById('who-node').textContent === id, idOf(N1));
    await shot(p1, '02-panel.png');
  });

  await step('node1: markup basics (labels, ids, tables, landmarks)', async () => {
    const bad = await p1.evaluate(() => {
      const out = [];
      const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
      for (const id of new Set(ids)) if (ids.filter((x) => x === id).length > 1) out.push(`duplicate id ${id}`);
      for (const c of document.querySelectorAll('input, select, textarea')) {
        if (!c.labels || !c.labels.length) out.push(`unlabelled ${c.tagName} ${c.id || c.name}`);
      }
      for (const t of document.querySelectorAll('table')) {
        if (!t.caption || !t.caption.textContent.trim()) out.push(`table without caption ${t.dataset.testid}`);
        for (const th of t.querySelectorAll('thead th')) if (th.getAttribute('scope') !== 'col') out.push('th without scope');
      }
      for (const b of document.querySelectorAll('button')) {
        if (!(b.getAttribute('aria-label') || b.textContent).trim()) out.push('button without a name');
      }
      for (const sel of ['header', 'nav[aria-label]', 'main', '[role=status][aria-live=polite]', '[role=alert]']) {
        if (!document.querySelector(sel)) out.push(`no ${sel}`);
      }
      // (style="" attributes appear on inputs from chromium's autofill; the
      // served HTML is checked for them in the first step.)
      for (const e of document.querySelectorAll('style, script:not([src])')) out.push(`inline code: ${e.outerHTML.slice(0, 120)}`);
      return out;
    });
    check(!bad.length, bad.join('; '));
  });

  await step('node1: a refused form shows the error in the alert region', async () => {
    await p1.getByTestId('client-form').getByLabel('Name', { exact: true }).fill(`ui-bad-${tag}`);
    await p1.getByTestId('client-type-public').check();
    await expectHttpError(400, '/api/admin/clients', /status of 400/, 'a public client without redirect URI',
      () => p1.getByTestId('client-create').click());
    await p1.waitForFunction(() => /redirect_uris/.test(document.getElementById('alert').textContent));
    check(await p1.getByRole('alert').isVisible(), 'alert not visible');
    await shot(p1, '03-form-error.png');
  });

  let confId;
  let secret;
  const confName = `ui-conf-${tag}`;
  await step('node1: create a confidential client, its secret shows once', async () => {
    await p1.getByTestId('client-type-confidential').check();
    await p1.getByTestId('client-form').getByLabel('Name', { exact: true }).fill(confName);
    await p1.getByLabel('Token endpoint auth method').selectOption('client_secret_post');
    await p1.getByLabel('Redirect URIs').fill('https://app.example/cb');
    await p1.getByTestId('client-form').getByLabel('Scope', { exact: true }).fill('read write');
    await p1.getByTestId('client-create').click();
    const panel = p1.getByTestId('secret-panel');
    await panel.waitFor({ state: 'visible' });
    check(/will not be shown again/.test(await text(panel)), 'no "will not be shown again" note');
    check(await text(p1.getByTestId('alert')) === '', 'alert not cleared after success');
    secret = await p1.getByTestId('secret-value').inputValue();
    confId = await text(p1.getByTestId('secret-client-id'));
    check(/^[A-Za-z0-9_-]{43}$/.test(secret), `secret looks wrong: ${secret}`);
    check(await p1.getByTestId('secret-value').getAttribute('readonly') !== null, 'secret field not read-only');
    check(await focusedId(p1) === 'secret-value', 'focus is not on the secret');
    await p1.getByRole('button', { name: 'Copy' }).click();
    await p1.waitForFunction(() => /copied/.test(document.getElementById('status').textContent));
    check(await p1.evaluate(() => navigator.clipboard.readText()) === secret, 'Copy did not copy the secret');
    const row = clientRow(p1, confId);
    await row.waitFor();
    check(/confidential/.test(await text(row)) && /client_secret_post/.test(await text(row)), 'row content');
    await shot(p1, '04-client-secret.png');
    // The secret shown is the real one: node1 issues a token with it.
    const t = await request(`${N1}/token`, {
      method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: confId, client_secret: secret }).toString(),
    });
    check(t.status === 200 && JSON.parse(t.body).access_token, `token with the shown secret: ${t.status} ${t.body}`);
  });

  await step('node1: dismiss the secret, it is gone', async () => {
    await p1.getByTestId('secret-dismiss').click();
    await p1.getByTestId('secret-panel').waitFor({ state: 'hidden' });
    check(await p1.getByTestId('secret-value').inputValue() === '', 'secret still in the field');
    check(!(await p1.content()).includes(secret), 'secret still in the page');
    check(!(await p1.evaluate(() => document.body.innerText)).includes(secret), 'secret still in the text');
  });

  let pubId;
  const pubName = `ui-public-${tag}`;
  await step('node1: create a public client', async () => {
    await p1.getByTestId('client-type-public').check();
    check(await p1.getByLabel('Token endpoint auth method').inputValue() === 'none', 'public: auth method not none');
    await p1.getByTestId('client-form').getByLabel('Name', { exact: true }).fill(pubName);
    await p1.getByLabel('Redirect URIs').fill('https://spa.example/cb\nhttp://localhost:8080/cb');
    await p1.getByTestId('client-form').getByLabel('Scope', { exact: true }).fill('openid profile');
    await p1.getByTestId('client-create').click();
    const row = p1.getByTestId('client-row').filter({ hasText: pubName });
    await row.waitFor();
    pubId = await row.getAttribute('data-client-id');
    check(/public/.test(await text(row)) && /spa\.example/.test(await text(row)), 'public row content');
    check(await p1.getByTestId('secret-panel').isHidden(), 'a public client shows a secret panel');
    check((await text(p1.getByTestId('status'))).includes(pubName), 'no status message');
  });

  const p2 = await ctx.newPage();
  const w2 = watch(p2, 'node2');
  await step('node2: the node1 client appears (auto-refresh)', async () => {
    await p2.bringToFront();
    await openPanel(p2, N2);
    await clientRow(p2, confId).waitFor({ timeout: CONVERGE_MS });
    await clientRow(p2, pubId).waitFor({ timeout: CONVERGE_MS });
    await shot(p2, '05-node2-replicated.png');
  });

  const p3 = await ctx.newPage();
  const w3 = watch(p3, 'node3');
  await step('node3: delete the client with the in-page confirmation', async () => {
    await p3.bringToFront();
    await openPanel(p3, N3);
    const row = clientRow(p3, confId);
    await row.waitFor({ timeout: CONVERGE_MS });
    const confirm = await deleteRow(p3, row, 'client');
    await p3.waitForTimeout(2500); // an auto-refresh keeps the confirmation open
    check(await confirm.isVisible(), 'auto-refresh closed the confirmation');
    await shot(p3, '06-node3-confirm.png');
    await confirm.click();
    await row.waitFor({ state: 'detached' });
    check((await text(p3.getByTestId('status'))).includes('deleted'), 'no deletion status');
    check(await focusedId(p3) === 'h-clients', 'focus not on the heading after delete');
    await shot(p3, '07-node3-deleted.png');
  });

  await step('node1: the deleted client disappears', async () => {
    await p1.bringToFront();
    await clientRow(p1, confId).waitFor({ state: 'detached', timeout: CONVERGE_MS });
    check(await clientRow(p1, pubId).isVisible(), 'the public client vanished too');
    await shot(p1, '08-node1-gone.png');
  });

  const scope = `ui-team-${tag}`;
  await step('scopes: made on node2, seen and deleted on node3, gone from node2', async () => {
    await p2.bringToFront();
    await nav(p2, 'scopes');
    await p2.getByTestId('scope-form').getByLabel('Name', { exact: true }).fill(scope);
    await p2.getByLabel('Description').fill('the caller\'s team <b>not bold</b>');
    await p2.getByLabel('Claims').fill('team, floor');
    await p2.getByTestId('scope-create').click();
    await scopeRow(p2, scope).waitFor();
    check((await text(scopeRow(p2, scope))).includes('<b>not bold</b>'), 'description not shown as text');
    await p3.bringToFront();
    await nav(p3, 'scopes');
    const row = scopeRow(p3, scope);
    await row.waitFor({ timeout: CONVERGE_MS });
    const t = await text(row);
    check(t.includes('team') && t.includes('floor'), `scope row on node3: ${t}`);
    await shot(p3, '09-node3-scope.png');
    await (await deleteRow(p3, row, 'scope')).click();
    await row.waitFor({ state: 'detached' });
    await p2.bringToFront();
    await scopeRow(p2, scope).waitFor({ state: 'detached', timeout: CONVERGE_MS });
  });

  await step('node1: cluster status lists both peers with a last contact', async () => {
    await p1.bringToFront();
    await nav(p1, 'cluster');
    const peers = [N2, N3].map(idOf);
    await p1.waitForFunction((ids) => {
      const rows = [...document.querySelectorAll('[data-testid=node-row]')];
      return rows.length === 3 && ids.every((id) => {
        const r = rows.find((x) => x.dataset.nodeId === id);
        return r && /reachable/.test(r.textContent)
          && /just now|\d+ s ago/.test(r.querySelector('[data-testid=last-contact]').textContent);
      });
    }, peers, { timeout: CONVERGE_MS });
    const self = p1.locator(`[data-testid=node-row][data-node-id="${idOf(N1)}"]`);
    check(/this node/.test(await text(self)), 'this node not marked');
    const sum = await text(p1.getByTestId('cluster-summary'));
    check(/Pushes/.test(sum) && /Skips/.test(sum) && /Bytes out/.test(sum), `summary: ${sum}`);
    await p1.getByTestId('refresh-cluster').click();
    await p1.waitForFunction(() => /refreshed/.test(document.getElementById('status').textContent));
    await shot(p1, '10-cluster.png');
  });

  await step('node1: session', async () => {
    await nav(p1, 'session');
    check(await text(p1.getByTestId('session-user')) === 'alice', 'session user');
    check((await text(p1.getByTestId('session-groups'))).includes('admins'), 'session groups');
    check(/\(in \d+ (h|min)/.test(await text(p1.getByTestId('session-expires'))), 'session expiry');
    await shot(p1, '11-session.png');
  });

  await step('node1: log out', async () => {
    // The other tabs would see the (cluster-wide) logout as 401s: close them first.
    w2.closing = true;
    w3.closing = true;
    await p2.close();
    await p3.close();
    await p1.getByTestId('logout').click();
    await p1.getByTestId('login-form').waitFor({ state: 'visible' });
    check(await p1.locator('#nav').isHidden(), 'navigation still visible');
    check(await focusedId(p1) === 'login-username', 'focus not on the user name after logout');
    check((await text(p1.getByTestId('status'))).includes('Signed out'), 'no sign-out status');
    await shot(p1, '12-logged-out.png');
    await p1.reload();
    await p1.getByTestId('login-form').waitFor({ state: 'visible' });
    await p1.waitForTimeout(500);
    check(await p1.locator('#nav').isHidden(), 'signed in again after reload');
    const cookies = await ctx.cookies(N1);
    check(!cookies.some((c) => c.name === 'ahdapa_session' && c.value), 'session cookie still set');
  });
  w1.closing = true;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--no-first-run', '--disable-extensions', '--disable-sync', '--metrics-recording-only', '--mute-audio'],
});
let code = 0;
let timer;
try {
  await Promise.race([
    run(browser),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`overall timeout of ${OVERALL_MS / 1000} s`)), OVERALL_MS);
    }),
  ]);
  console.log(`PASS: ${shots.length} screenshots in ${opts.out}`);
} catch (e) {
  code = 1;
  console.error(`FAIL in step "${current}": ${e.message}`);
  if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
} finally {
  clearTimeout(timer);
  const force = setTimeout(() => { console.error('browser.close() hung'); process.exit(code || 1); }, 15_000);
  await browser.close().catch(() => {});
  clearTimeout(force);
}
process.exit(code);
