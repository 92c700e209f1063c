// Steady mixed load for bench/soak: every kind of Concord client at once, with churn, for a fixed
// time; then every client leaves and the results are checked.
//
// Usage: node soak-load.mjs --http http://127.0.0.1:PORT [--seconds S]
// Prints one JSON object with counts and checks on stdout; progress goes to stderr.
//
// Clients (rates are per second, modest on purpose: a soak looks for what grows with time, not
// for throughput, and it shares two cores with the server):
// - Yjs: 24 real `y-websocket` providers over a pool of 16 documents, each appending a token about
//   twice a second; every second one provider leaves and a new one joins a random document, so
//   rooms load and unload and sockets open and close all the time.
// - Op log: two devices push 10 ops every 250 ms (one with idempotency keys); a third pulls from
//   its cursor every 500 ms and holds an event stream it reopens every 20 s.
// - Blobs: an upload of 4-64 KiB every 300 ms, each downloaded back and checked by hash.
// - Sign-ins: a magic-link sign-in every 3 s from a rotating loopback address, then a sign-out.
// At the end: the documents converge (every live provider and a fresh one hold the same text),
// the log holds every acknowledged op once with sequences 1..N, and no request failed.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import http from 'node:http'
import { createHash, randomBytes } from 'node:crypto'

process.setMaxListeners(0)

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
if (!args.http) throw new Error('--http is required')
const BASE = args.http
const WS = BASE.replace(/^http/, 'ws') + '/sync'
const SECONDS = Number(args.seconds ?? 600)
const DOCS = 16
const PROVIDERS = 24
const REQUEST_TIMEOUT_MS = 30_000
const SETTLE_DEADLINE_MS = 60_000

const log = (msg) => process.stderr.write(`  [soak-load] ${msg}\n`)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const stats = { yjs_edits: 0, yjs_joins: 0, ops_pushed: 0, ops_pulled: 0, blobs: 0, blob_bytes: 0, sign_ins: 0, streams: 0, errors: [] }
let running = true

function fail (what, err) {
  if (stats.errors.length < 20) stats.errors.push(`${what}: ${err?.message ?? err}`)
  log(`error: ${what}: ${err?.message ?? err}`)
}

async function call (path, { method = 'POST', body, token, raw } = {}) {
  const headers = {}
  if (body !== undefined && !raw) headers['content-type'] = 'application/json'
  if (raw) headers['content-type'] = raw.type
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers,
    body: raw ? raw.body : body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  })
  const bytes = Buffer.from(await res.arrayBuffer())
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${bytes.toString().slice(0, 200)}`)
  return { bytes, json: () => JSON.parse(bytes.toString()) }
}

/** A JSON request from a chosen loopback source address (fetch cannot pick one). */
function callFrom (localAddress, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request(`${BASE}${path}`, {
      method,
      localAddress,
      headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {},
      timeout: REQUEST_TIMEOUT_MS
    }, (res) => {
      let text = ''
      res.on('data', (d) => { text += d }).on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 200)}`))
        else resolve(JSON.parse(text))
      })
    })
    req.on('timeout', () => req.destroy(new Error('timeout'))).on('error', reject)
    req.end(data)
  })
}

async function signIn (email, localAddress = '127.0.0.1') {
  const link = await callFrom(localAddress, 'POST', '/auth/magic-link', { email })
  const token = new URL(link.dev_link).searchParams.get('token')
  return (await callFrom(localAddress, 'GET', `/auth/verify?token=${encodeURIComponent(token)}&device_name=soak`)).token
}

async function devices (n) {
  const username = `soak${process.pid}`
  const password = 'soak-password-123'
  const registered = (await call('/api/v1/auth/register', { body: { username, email: `${username}@example.com`, password } })).json()
  await call('/api/v1/auth/confirm', { body: { token: new URL(registered.dev_link).searchParams.get('token') } })
  const out = []
  for (let d = 0; d < n; d++) {
    const paired = (await call('/api/client/pair', {
      body: { login: username, password, device_name: `soak-${d}`, client_version: 'soak', vault_id: 'soak-vault' }
    })).json()
    out.push({ id: paired.device_id, token: paired.device_token })
  }
  return out
}

// --- Yjs -----------------------------------------------------------------------------------------
const providers = new Set()

function join (session, doc) {
  const ydoc = new Y.Doc()
  const provider = new WebsocketProvider(WS, `soak-${doc}`, ydoc, { WebSocketPolyfill: WebSocket, params: { token: session }, disableBc: true })
  const client = { doc, ydoc, provider, text: ydoc.getText('body'), n: 0, id: stats.yjs_joins++ }
  client.timer = setInterval(() => {
    if (!provider.wsconnected) return
    client.text.insert(client.text.length, `c${client.id}n${client.n++};`)
    stats.yjs_edits++
  }, 400 + Math.floor(Math.random() * 200))
  providers.add(client)
  return client
}

function leave (client) {
  clearInterval(client.timer)
  client.provider.destroy()
  client.ydoc.destroy()
  providers.delete(client)
}

async function yjsLoad (session) {
  for (let i = 0; i < PROVIDERS; i++) join(session, i % DOCS)
  while (running) {
    await sleep(1000)
    const list = [...providers]
    leave(list[Math.floor(Math.random() * list.length)])
    join(session, Math.floor(Math.random() * DOCS))
  }
  for (const client of providers) clearInterval(client.timer)
}

/** Every live provider of a document, and a fresh one, hold the same text. */
async function yjsConverged (session) {
  const deadline = Date.now() + SETTLE_DEADLINE_MS
  for (let doc = 0; doc < DOCS; doc++) {
    const fresh = join(session, doc)
    clearInterval(fresh.timer)
    const same = () => {
      const peers = [...providers].filter((c) => c.doc === doc)
      return fresh.provider.synced && peers.every((c) => c.provider.synced && c.text.toString() === fresh.text.toString())
    }
    while (!same() && Date.now() < deadline) await sleep(50)
    if (!same()) fail(`yjs document ${doc}`, 'did not converge')
  }
  for (const client of [...providers]) leave(client)
}

// --- op log, event stream, blobs -------------------------------------------------------------------
const acked = new Set()

async function pusher (device, d, keyed) {
  let n = 0
  while (running) {
    const ops = []
    for (let i = 0; i < 10; i++) {
      const id = `d${d}-${n}-${i}`
      ops.push({
        op_id: id, entity_type: 'file', entity_id: `notes/${d}/${n % 200}.md`, op_type: 'update',
        payload_json: JSON.stringify({ path: `notes/${d}/${n % 200}.md`, content: `note ${n}` }),
        client_sequence: n, last_seen_server_seq: 0, created_at: '2026-07-10T00:00:00Z'
      })
    }
    const body = { device_id: device.id, ops }
    if (keyed) body.idempotency_key = `d${d}-${n}`
    try {
      const r = (await call('/api/v1/sync/push', { body, token: device.token })).json()
      for (const id of r.accepted) acked.add(id)
      stats.ops_pushed += r.accepted.length
    } catch (err) { fail('push', err) }
    n++
    await sleep(250)
  }
}

async function pullAll (device, cursor) {
  for (;;) {
    const page = (await call('/api/v1/sync/pull', { body: { since_sequence: cursor, page_limit: 0 }, token: device.token })).json()
    for (const op of page.ops) {
      if (op.server_sequence !== cursor + 1) throw new Error(`gap: ${cursor} then ${op.server_sequence}`)
      cursor = op.server_sequence
    }
    stats.ops_pulled += page.ops.length
    if (!page.has_more) return { cursor, ops: page.ops }
  }
}

async function puller (device) {
  let cursor = 0
  while (running) {
    try { cursor = (await pullAll(device, cursor)).cursor } catch (err) { fail('pull', err) }
    await sleep(500)
  }
}

async function eventStream (device) {
  while (running) {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), 20_000)
    try {
      const res = await fetch(`${BASE}/api/v1/sync/events`, { headers: { authorization: `Bearer ${device.token}` }, signal: controller.signal })
      if (!res.ok) throw new Error(`events: ${res.status}`)
      stats.streams++
      for await (const _ of res.body) { if (!running) break }
    } catch (err) { if (err.name !== 'AbortError') fail('events', err) }
    clearTimeout(timer)
    controller.abort()
  }
}

async function uploader (device) {
  const boundary = 'soak-boundary-41b7'
  while (running) {
    const content = randomBytes(4096 + Math.floor(Math.random() * 60 * 1024))
    const sha = createHash('sha256').update(content).digest('hex')
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${sha}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      content,
      Buffer.from(`\r\n--${boundary}--\r\n`)
    ])
    try {
      await call('/api/v1/blobs/', { raw: { type: `multipart/form-data; boundary=${boundary}`, body }, token: device.token })
      const back = (await call(`/api/v1/blobs/${sha}`, { method: 'GET', token: device.token })).bytes
      if (createHash('sha256').update(back).digest('hex') !== sha) throw new Error(`blob ${sha} came back different`)
      stats.blobs++
      stats.blob_bytes += content.length
    } catch (err) { fail('blob', err) }
    await sleep(300)
  }
}

async function signer () {
  let n = 0
  while (running) {
    n++
    // A new address per sign-in keeps the per-address and per-IP limits (not under test) away.
    const source = `127.2.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`
    try {
      const token = await signIn(`soak-${process.pid}-${n}@example.com`, source)
      await call('/auth/logout', { body: {}, token })
      stats.sign_ins++
    } catch (err) { fail('sign-in', err) }
    await sleep(3000)
  }
}

async function main () {
  const session = await signIn(`soak-editor-${process.pid}@example.com`)
  const [a, b, reader] = await devices(3)
  log(`load for ${SECONDS} s`)
  const clients = [yjsLoad(session), pusher(a, 0, true), pusher(b, 1, false), puller(reader), eventStream(reader), uploader(a), signer()]
  const progress = setInterval(() => log(JSON.stringify({ ...stats, errors: stats.errors.length })), 30_000)
  await sleep(SECONDS * 1000)
  running = false
  await Promise.all(clients)
  clearInterval(progress)
  await yjsConverged(session)
  const { cursor } = await pullAll(reader, 0).catch((err) => { fail('final pull', err); return { cursor: -1 } })
  if (cursor !== acked.size) fail('op log', `${acked.size} ops acknowledged, the log holds ${cursor}`)
  const ok = stats.errors.length === 0
  console.log(JSON.stringify({ ok, ...stats, log_head: cursor }))
  // Sockets may linger in the event loop; the run is over.
  process.exit(ok ? 0 : 1)
}

main().catch((err) => { console.error(err); process.exit(1) })
