// Operation-log load generator for bench/run (Concord only: no alternative server speaks the
// Verstak protocol on this machine).
//
// Usage: node oplog-load.mjs --http http://127.0.0.1:PORT [--devices D] [--pushes P] [--seconds S]
// One account is registered and confirmed (dev mode hands back the confirm link), then D devices
// are paired into one vault. Each device pushes batches of 100 ops, one request at a time, all
// devices concurrently, until it made P pushes or S seconds passed. Then one device pulls the whole
// log from sequence 0 in pages of 100. The pull must return every acknowledged op exactly once with
// sequences 1..N, so a server that drops or duplicates ops cannot look fast.
// Prints one JSON object on stdout; progress goes to stderr.
import { performance } from 'node:perf_hooks'

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
if (!args.http) throw new Error('--http is required')
const BASE = args.http
const DEVICES = Number.parseInt(args.devices ?? '4', 10)
const PUSHES = Number.parseInt(args.pushes ?? '100', 10)
const SECONDS = Number(args.seconds ?? 15)
const OPS_PER_PUSH = 100
const REQUEST_TIMEOUT_MS = 30_000

const log = (msg) => process.stderr.write(`  [oplog] ${msg}\n`)

async function call (path, body, token) {
  const headers = { 'content-type': 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(`${BASE}${path}`, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`)
  return JSON.parse(text)
}

async function devices () {
  const username = `bench${process.pid}`
  const password = 'bench-password-123'
  const registered = await call('/api/v1/auth/register', { username, email: `${username}@example.com`, password })
  const token = new URL(registered.dev_link).searchParams.get('token')
  await call('/api/v1/auth/confirm', { token })
  const out = []
  for (let d = 0; d < DEVICES; d++) {
    const paired = await call('/api/client/pair', {
      login: username, password, device_name: `bench-${d}`, client_version: 'bench', vault_id: 'bench-vault'
    })
    out.push({ id: paired.device_id, token: paired.device_token })
  }
  return out
}

function batch (device, d, n) {
  const ops = []
  for (let i = 0; i < OPS_PER_PUSH; i++) {
    const k = n * OPS_PER_PUSH + i
    ops.push({
      op_id: `d${d}-op${k}`,
      entity_type: 'file',
      entity_id: `notes/d${d}/n${k % 500}.md`,
      op_type: 'update',
      payload_json: JSON.stringify({ path: `notes/d${d}/n${k % 500}.md`, content: `note ${k} of device ${d}`, mtime: k }),
      client_sequence: k,
      last_seen_server_seq: 0,
      created_at: '2026-07-10T00:00:00Z'
    })
  }
  return { device_id: device.id, ops }
}

function percentile (sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : null
}

async function main () {
  const devs = await devices()
  log(`${devs.length} devices paired`)
  const latencies = []
  let accepted = 0
  const start = performance.now()
  const deadline = start + SECONDS * 1000
  await Promise.all(devs.map(async (device, d) => {
    for (let n = 0; n < PUSHES && performance.now() < deadline; n++) {
      const t0 = performance.now()
      const res = await call('/api/v1/sync/push', batch(device, d, n), device.token)
      latencies.push(performance.now() - t0)
      if (res.count !== OPS_PER_PUSH) throw new Error(`push accepted ${res.count} of ${OPS_PER_PUSH}`)
      accepted += res.count
    }
  }))
  const pushSeconds = (performance.now() - start) / 1000
  latencies.sort((a, b) => a - b)
  log(`${accepted} ops committed in ${pushSeconds.toFixed(1)} s`)

  const pullStart = performance.now()
  let since = 0
  let pulled = 0
  let pages = 0
  let gapFree = true
  const seen = new Set()
  for (let more = true; more && pages < 100_000;) {
    const page = await call('/api/v1/sync/pull', { since_sequence: since, page_limit: 100 }, devs[0].token)
    for (const op of page.ops) {
      gapFree &&= op.server_sequence === since + 1
      since = op.server_sequence
      seen.add(op.op_id)
      pulled++
    }
    more = page.has_more && page.ops.length > 0
    pages++
  }
  const pullSeconds = (performance.now() - pullStart) / 1000
  const ok = gapFree && pulled === accepted && seen.size === accepted
  log(`pulled ${pulled} ops in ${pages} pages, ${pullSeconds.toFixed(2)} s, ${ok ? 'complete and gap-free' : 'MISMATCH'}`)
  process.stdout.write(JSON.stringify({
    ok,
    devices: devs.length,
    ops_committed: accepted,
    push_ops_per_s: accepted / pushSeconds,
    push_p50_ms: percentile(latencies, 50),
    push_p99_ms: percentile(latencies, 99),
    ops_pulled: pulled,
    pull_ops_per_s: pulled / pullSeconds
  }) + '\n')
}

const hardStop = setTimeout(() => { log('hard time limit reached'); process.exit(2) }, (SECONDS + 120) * 1000)
hardStop.unref()
main().then(() => process.exit(0), (err) => { log(`failed: ${err.stack ?? err}`); process.exit(1) })
