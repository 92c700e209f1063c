// Yjs load generator for bench/run: real `yjs` documents and `y-websocket` providers against one
// server, the same code for every server so the numbers compare.
//
// Usage: node yjs-load.mjs --ws ws://127.0.0.1:PORT[/sync] [--concord http://127.0.0.1:PORT]
//          [--pid PID] [--rooms R] [--clients C] [--rate HZ] [--seconds S]
//          [--late-updates N] [--late-joins K] [--prefix NAME]
// Prints one JSON object with the results on stdout; progress goes to stderr.
//
// Scenarios, in order, all on the same connections' event loop:
// 1. fan-out: R rooms x C providers; in each room one writer appends `<seq>@<ms>;` to a Y.Text at
//    HZ edits/s for S seconds; the other C-1 providers record delivery latency from the embedded
//    timestamp (same process, same monotonic clock). Afterwards every provider of a room must hold
//    exactly the writer's text and have seen every edit, within a deadline.
// 2. memory: the server's VmRSS/VmHWM from /proc/PID/status at the end of fan-out, clients still on;
//    RSS growth per connection (before any edit, once all are synced, over the idle baseline);
//    and the server's CPU seconds spent during fan-out (utime+stime from /proc/PID/stat).
// 3. late joiner: a writer makes N separate updates in a fresh room while an observer waits until it
//    has all of them (burst ingest time); then K new providers join one after another and each is
//    timed until its `sync` event, and its text is checked against the expected content.
// Every wait is bounded: a server that never answers ends the run with converged=false, not a hang.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

// Every provider adds a process 'exit' listener; hundreds of them are expected here.
process.setMaxListeners(0)

const args = parseArgs(process.argv.slice(2))
const WS = args.ws
const ROOMS = int(args.rooms, 20)
const CLIENTS = int(args.clients, 10)
const RATE = int(args.rate, 10)
const SECONDS = Number(args.seconds ?? 15)
const LATE_UPDATES = int(args['late-updates'], 2000)
const LATE_JOINS = int(args['late-joins'], 10)
const PREFIX = args.prefix ?? `bench-${process.pid}`
const PID = args.pid ? int(args.pid, 0) : null
const CONNECT_DEADLINE_MS = 60_000
const SETTLE_DEADLINE_MS = 30_000

const log = (msg) => process.stderr.write(`  [load] ${msg}\n`)

function parseArgs (argv) {
  const out = {}
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`)
    out[argv[i].slice(2)] = argv[i + 1]
  }
  if (!out.ws) throw new Error('--ws is required')
  return out
}

function int (value, fallback) {
  if (value === undefined) return fallback
  const n = Number.parseInt(value, 10)
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a count: ${value}`)
  return n
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `done()` every 5 ms until it is true or `ms` have passed; returns whether it became true. */
async function waitFor (done, ms) {
  const deadline = performance.now() + ms
  while (!done()) {
    if (performance.now() > deadline) return false
    await sleep(5)
  }
  return true
}

/** Dev-mode sign-in on Concord: one magic link, verified once; every provider reuses the session. */
async function concordToken (base) {
  const email = `bench-${process.pid}-${Date.now()}@example.com`
  const link = await fetch(`${base}/auth/magic-link`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email })
  })
  if (!link.ok) throw new Error(`magic-link: ${link.status} ${await link.text()}`)
  const devLink = (await link.json()).dev_link
  const token = new URL(devLink).searchParams.get('token')
  const verify = await fetch(`${base}/auth/verify?token=${encodeURIComponent(token)}&device_name=bench`)
  if (!verify.ok) throw new Error(`verify: ${verify.status} ${await verify.text()}`)
  return (await verify.json()).token
}

function connect (room, params) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(WS, room, doc, {
    WebSocketPolyfill: WebSocket,
    params,
    disableBc: true,
    // A dropped connection must show up as a failure, not be papered over by reconnects.
    maxBackoffTime: 60_000
  })
  return { doc, provider, text: doc.getText('body') }
}

function procStatus (pid) {
  if (!pid) return null
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key) => Number((status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm')) ?? [])[1] ?? NaN)
  return { rss_mb: kb('VmRSS') / 1024, hwm_mb: kb('VmHWM') / 1024 }
}

/** The server's user and system CPU time, in seconds (clock ticks are 100 per second on Linux). */
function procCpu (pid) {
  if (!pid) return null
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }
}

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

const EDIT = /(\d+)@([\d.]+);/g

async function fanOut (params) {
  const rooms = []
  for (let r = 0; r < ROOMS; r++) {
    const name = `${PREFIX}-fan-${r}`
    rooms.push({ name, clients: [connect(name, params)], sent: 0, timer: null })
  }
  // Each room's writer first, then the others: pycrdt-websocket 0.16 leaves some providers unsynced
  // (until y-websocket's 30 s reconnect) when several new rooms get concurrent first connections.
  const t0 = performance.now()
  const writersUp = await waitFor(() => rooms.every((room) => room.clients[0].provider.synced), CONNECT_DEADLINE_MS)
  for (const room of rooms) {
    for (let c = 1; c < CLIENTS; c++) room.clients.push(connect(room.name, params))
  }
  const all = rooms.flatMap((room) => room.clients)
  const connected = writersUp && await waitFor(() => all.every((c) => c.provider.synced), CONNECT_DEADLINE_MS)
  const connectMs = performance.now() - t0
  const afterConnect = procStatus(PID)
  log(`fan-out: ${all.length} providers ${connected ? 'synced' : 'NOT all synced'} in ${connectMs.toFixed(0)} ms`)
  if (!connected) return { ok: false, error: 'providers did not sync', connect_ms: connectMs }

  const latencies = []
  let measuring = true
  for (const room of rooms) {
    for (const client of room.clients.slice(1)) {
      client.received = 0
      client.text.observe((event) => {
        const now = performance.now()
        for (const part of event.delta) {
          if (typeof part.insert !== 'string') continue
          for (const m of part.insert.matchAll(EDIT)) {
            client.received++
            if (measuring) latencies.push(now - Number(m[2]))
          }
        }
      })
    }
  }

  const cpu0 = procCpu(PID)
  const ownCpu0 = process.cpuUsage()
  const start = performance.now()
  const interval = 1000 / RATE
  rooms.forEach((room, r) => {
    const writer = room.clients[0]
    // Stagger the rooms' ticks over one interval so the load is even, not a burst every tick.
    setTimeout(() => {
      room.timer = setInterval(() => {
        writer.text.insert(writer.text.length, `${room.sent}@${performance.now().toFixed(3)};`)
        room.sent++
      }, interval)
    }, (interval * r) / ROOMS)
  })
  await sleep(SECONDS * 1000)
  for (const room of rooms) clearInterval(room.timer)
  const elapsed = (performance.now() - start) / 1000
  measuring = false

  const sent = rooms.reduce((sum, room) => sum + room.sent, 0)
  const expected = rooms.reduce((sum, room) => sum + room.sent * (room.clients.length - 1), 0)
  const deliveredInWindow = latencies.length
  const settleStart = performance.now()
  const converged = await waitFor(() => rooms.every((room) => {
    const want = room.clients[0].text.toString()
    return room.clients.slice(1).every((c) => c.received === room.sent && c.text.toString() === want)
  }), SETTLE_DEADLINE_MS)
  const settleMs = performance.now() - settleStart
  const cpu1 = procCpu(PID)
  const ownCpu = process.cpuUsage(ownCpu0)
  const memory = procStatus(PID)
  const delivered = all.reduce((sum, c) => sum + (c.received ?? 0), 0)
  log(`fan-out: sent ${sent}, delivered ${delivered}/${expected}, ${converged ? 'converged' : 'NOT converged'} ${settleMs.toFixed(0)} ms after the writers stopped`)

  latencies.sort((a, b) => a - b)
  for (const c of all) c.provider.destroy()
  return {
    ok: converged,
    connect_ms: connectMs,
    edits_sent: sent,
    deliveries_expected: expected,
    deliveries: delivered,
    deliveries_per_s: deliveredInWindow / elapsed,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    max_ms: latencies.length ? latencies[latencies.length - 1] : null,
    settle_ms: settleMs,
    server_cpu_s: cpu0 === null ? null : cpu1.user + cpu1.system - cpu0.user - cpu0.system,
    server_cpu_user_s: cpu0 === null ? null : cpu1.user - cpu0.user,
    server_cpu_system_s: cpu0 === null ? null : cpu1.system - cpu0.system,
    loadgen_cpu_s: (ownCpu.user + ownCpu.system) / 1e6,
    seconds: elapsed,
    connections: all.length,
    after_connect_memory: afterConnect,
    memory
  }
}

async function lateJoiner (params) {
  const name = `${PREFIX}-late`
  const writer = connect(name, params)
  const observer = connect(name, params)
  const ready = await waitFor(() => writer.provider.synced && observer.provider.synced, CONNECT_DEADLINE_MS)
  if (!ready) return { ok: false, error: 'writer/observer did not sync' }

  // N separate transactions, so the server receives and stores N updates, not one.
  const t0 = performance.now()
  for (let i = 0; i < LATE_UPDATES; i++) writer.text.insert(writer.text.length, `u${i};`)
  const expected = writer.text.toString()
  const ingested = await waitFor(() => observer.text.length === expected.length, SETTLE_DEADLINE_MS)
  const ingestMs = performance.now() - t0
  const observerOk = ingested && observer.text.toString() === expected
  log(`late joiner: ${LATE_UPDATES} updates relayed to an observer in ${ingestMs.toFixed(0)} ms (${observerOk ? 'ok' : 'MISMATCH'})`)

  const joins = []
  let allMatch = observerOk
  for (let k = 0; k < LATE_JOINS && allMatch; k++) {
    const start = performance.now()
    const joiner = connect(name, params)
    const synced = await waitFor(() => joiner.provider.synced, SETTLE_DEADLINE_MS)
    const ms = performance.now() - start
    const match = synced && joiner.text.toString() === expected
    if (!match) log(`late joiner ${k}: synced=${synced}, text length ${joiner.text.length} of ${expected.length}`)
    allMatch = allMatch && match
    joins.push(ms)
    joiner.provider.destroy()
  }
  writer.provider.destroy()
  observer.provider.destroy()
  joins.sort((a, b) => a - b)
  log(`late joiner: ${joins.length} joins, median ${percentile(joins, 50)?.toFixed(1)} ms, ${allMatch ? 'all matched' : 'MISMATCH'}`)
  return {
    ok: allMatch,
    updates: LATE_UPDATES,
    doc_bytes: Y.encodeStateAsUpdate(writer.doc).length,
    ingest_ms: ingestMs,
    join_p50_ms: percentile(joins, 50),
    join_max_ms: joins.length ? joins[joins.length - 1] : null
  }
}

async function main () {
  const params = {}
  if (args.concord) params.token = await concordToken(args.concord)
  const baseline = procStatus(PID)
  const fan = await fanOut(params)
  if (baseline && fan.after_connect_memory) {
    fan.kb_per_connection = ((fan.after_connect_memory.rss_mb - baseline.rss_mb) * 1024) / fan.connections
  }
  const late = await lateJoiner(params)
  process.stdout.write(JSON.stringify({
    config: { rooms: ROOMS, clients: CLIENTS, rate: RATE, seconds: SECONDS, late_updates: LATE_UPDATES, late_joins: LATE_JOINS },
    baseline_memory: baseline,
    fanout: fan,
    late
  }) + '\n')
}

// A hard stop for the whole generator: whatever happens, it ends.
const hardStop = setTimeout(() => {
  log('hard time limit reached')
  process.exit(2)
}, (SECONDS + 180) * 1000)
hardStop.unref()

main().then(() => process.exit(0), (err) => {
  log(`failed: ${err.stack ?? err}`)
  process.exit(1)
})
