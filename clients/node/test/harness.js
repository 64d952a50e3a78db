'use strict';
// Real processes on loopback: the statehold binary and the apps, each on
// port 0 and read back; killed when the test ends.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO = path.resolve(__dirname, '..', '..', '..');
const READY_WITHIN = 20000;

function stateholdBin() {
  const bin = process.env.STATEHOLD_BIN || path.join(REPO, 'target', 'debug', 'statehold');
  if (!fs.existsSync(bin)) throw new Error(`${bin} missing: run cargo build first`);
  return bin;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every process a test file started is killed when its tests are done,
// also those a failed test left behind (else the file's process waits for
// them and the run never ends).
const started = [];
require('node:test').after(() => {
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL');
});

/** An app from test/apps (`script`), or any script by absolute path, which
 * prints `listening on PORT`; `--port` is passed, and `PORT` in its env. */
async function startApp(script, { port = 0, bodyMode = false, env: extraEnv = {} } = {}) {
  const file = path.isAbsolute(script) ? script : path.join(__dirname, 'apps', script);
  const args = [file, '--port', String(port)];
  if (bodyMode) args.push('--body-mode');
  const env = { ...process.env, PORT: String(port), ...extraEnv };
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env });
  started.push(child);
  const line = await new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${script} exited (${code}) before listening`)));
  });
  const m = /listening on (\d+)/.exec(line);
  if (!m) throw new Error(`${script}: ${line}`);
  return {
    child, port: Number(m[1]), script, bodyMode,
    async kill9() { if (child.exitCode === null) { child.kill('SIGKILL'); await new Promise((r) => child.once('exit', r)); } },
    async crashAndRestart() { await this.kill9(); return startApp(script, { port: this.port, bodyMode, env: extraEnv }); },
  };
}

async function startStatehold(upstreamPort, { mode = 'header', routes, adminPort = 0 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'statehold-node-'));
  routes = routes || '[[route]]\npath = "/telegram"\nnamespace = "tg"\nkey = "json:/message/chat/id"\ndedupe = "json:/update_id"\n';
  const config = path.join(dir, 'statehold.toml');
  fs.writeFileSync(config, `[server]\nlisten = "127.0.0.1:0"\n[upstream]\nurl = "http://127.0.0.1:${upstreamPort}"\n`
    + `[store]\npath = "${path.join(dir, 'statehold.db')}"\n[contract]\nmode = "${mode}"\n${routes}`
    + `[admin]\nlisten = "127.0.0.1:${adminPort}"\n`);
  const log = path.join(dir, 'statehold.log');
  const child = spawn(stateholdBin(), ['serve', '--config', config], { stdio: ['ignore', 'ignore', fs.openSync(log, 'a')] });
  started.push(child);
  const deadline = Date.now() + READY_WITHIN;
  while (Date.now() < deadline) {
    const m = /statehold serving listen=(\S+) admin=(\S+)/.exec(fs.readFileSync(log, 'utf8'));
    if (m) {
      const s = { child, url: `http://${m[1]}`, admin: `http://${m[2]}`, dir,
        async kill9() { if (child.exitCode === null) { child.kill('SIGKILL'); await new Promise((r) => child.once('exit', r)); } fs.rmSync(dir, { recursive: true, force: true }); },
        async metric(series) {
          const text = await (await fetch(`${s.admin}/metrics`)).text();
          const line = text.split('\n').find((l) => l.startsWith(`${series} `));
          return line ? Number(line.split(' ').pop()) : 0;
        } };
      while (Date.now() < deadline) {
        try { if ((await fetch(`${s.admin}/healthz`)).ok) return s; } catch (e) { /* not yet */ }
        await sleep(20);
      }
    }
    if (child.exitCode !== null) break;
    await sleep(20);
  }
  throw new Error(`statehold did not start:\n${fs.readFileSync(log, 'utf8')}`);
}

/** A port nothing listens on now (an address an app must know before
 * statehold starts: its admin listener, where late reports go). Taken
 * below the kernel's ephemeral range (32768 and up), so that no outgoing
 * connection can hold it by the time statehold binds it; each test file's
 * process starts at its own offset (its pid) and walks on. */
let nextPort = 10000 + (process.pid % 97) * 123;
async function freePort() {
  const net = require('node:net');
  const bindable = (port) => new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
  for (let i = 0; i < 12000; i++) {
    const port = 10000 + ((nextPort++ - 10000) % 12000);
    if (await bindable(port)) return port;
  }
  throw new Error('no free port below the ephemeral range');
}

const tgUpdate = (id, chat, text) => ({ update_id: id, message: { message_id: id, chat: { id: chat, type: 'private' }, from: { id: chat }, text } });

async function postJson(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = text; }
  return { status: r.status, headers: Object.fromEntries(r.headers), body: json };
}

module.exports = { freePort, sleep, startApp, startStatehold, postJson, tgUpdate };
