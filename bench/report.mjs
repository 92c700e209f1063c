// Prints bench/run's side-by-side table from the per-server JSON results, with Concord's ratio to
// each alternative, then the operation-log numbers. Exits 1 when Concord failed a check, so a
// broken server cannot pass as a fast one.
//
// Usage: node report.mjs --mode full|quick --loadavg "a b c" --results DIR name...
import { readFileSync, existsSync } from 'node:fs'
import { cpus } from 'node:os'

const argv = process.argv.slice(2)
const opt = {}
const names = []
for (let i = 0; i < argv.length; i++) {
  if (argv[i].startsWith('--')) opt[argv[i].slice(2)] = argv[++i]
  else names.push(argv[i])
}

const read = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : { error: 'no result' })
const results = Object.fromEntries(names.map((n) => [n, read(`${opt.results}/${n}.json`)]))

const num = (digits) => (v) => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits))
const yesNo = (v) => (v === undefined ? '-' : v ? 'yes' : 'NO')
// label, value, which way is better (for the ratio), format
const rows = [
  ['fan-out: all clients converged', (r) => r.fanout?.ok, null, yesNo],
  ['fan-out: updates delivered/s', (r) => r.fanout?.deliveries_per_s, 'higher', num(0)],
  ['fan-out: latency p50 (ms)', (r) => r.fanout?.p50_ms, 'lower', num(1)],
  ['fan-out: latency p99 (ms)', (r) => r.fanout?.p99_ms, 'lower', num(1)],
  ['fan-out: latency max (ms)', (r) => r.fanout?.max_ms, 'lower', num(1)],
  ['fan-out: connect all clients (ms)', (r) => r.fanout?.connect_ms, 'lower', num(0)],
  ['fan-out: server CPU user+sys (s)', (r) => r.fanout?.server_cpu_s, 'lower', num(2)],
  ['fan-out: server CPU sys (s)', (r) => r.fanout?.server_cpu_system_s, 'lower', num(2)],
  ['memory: RSS idle at start (MB)', (r) => r.baseline_memory?.rss_mb, 'lower', num(1)],
  ['memory: RSS per connection (KB)', (r) => r.fanout?.kb_per_connection, 'lower', num(1)],
  ['memory: RSS end of fan-out (MB)', (r) => r.fanout?.memory?.rss_mb, 'lower', num(1)],
  ['memory: peak RSS, VmHWM (MB)', (r) => r.fanout?.memory?.hwm_mb, 'lower', num(1)],
  ['late joiner: content matched', (r) => r.late?.ok, null, yesNo],
  ['late joiner: N updates relayed (ms)', (r) => r.late?.ingest_ms, 'lower', num(0)],
  ['late joiner: join p50 (ms)', (r) => r.late?.join_p50_ms, 'lower', num(1)],
  ['late joiner: join max (ms)', (r) => r.late?.join_max_ms, 'lower', num(1)]
]

function ratio (ours, theirs, better) {
  if (!better || typeof ours !== 'number' || typeof theirs !== 'number' || theirs === 0) return '-'
  const r = ours / theirs
  const verdict = Math.abs(r - 1) < 0.05 ? 'same' : (r < 1) === (better === 'lower') ? 'better' : 'worse'
  return `${r.toFixed(2)} ${verdict}`
}

// Short column names keep the table within a terminal's width.
const SHORT = { 'y-websocket': 'y-ws', 'y-websocket-leveldb': 'y-ws+ldb', 'pycrdt-websocket': 'pycrdt', 'concord-tmpfs': 'c-tmpfs' }
const short = (n) => SHORT[n] ?? n
const alternatives = names.filter((n) => n !== 'concord')
const hasConcord = names.includes('concord')
const header = ['', ...names.map(short), ...(hasConcord ? alternatives.map((n) => `vs ${short(n)}`) : [])]
const table = [header]
for (const [label, get, better, fmt] of rows) {
  const values = names.map((n) => (results[n].error ? undefined : get(results[n])))
  const line = [label, ...values.map((v, i) => (results[names[i]].error ? 'failed' : fmt(v)))]
  if (hasConcord) {
    const ours = values[names.indexOf('concord')]
    for (const alt of alternatives) line.push(ratio(ours, values[names.indexOf(alt)], better))
  }
  table.push(line)
}

const widths = header.map((_, c) => Math.max(...table.map((row) => String(row[c]).length)))
const print = (row) => console.log(row.map((cell, c) => (c === 0 ? String(cell).padEnd(widths[c]) : String(cell).padStart(widths[c]))).join('  '))

const config = Object.values(results).find((r) => r.config)?.config
console.log('')
console.log(`Concord benchmark (${opt.mode}) on ${cpus()[0]?.model?.trim() ?? 'unknown CPU'}, ${cpus().length} cores, load average at start ${opt.loadavg}`)
if (config) {
  console.log(`Yjs: ${config.rooms} rooms x ${config.clients} clients, one writer per room at ${config.rate} edits/s for ${config.seconds} s; ` +
    `late joiner: doc of ${config.late_updates} updates, ${config.late_joins} joins. Load generator and server share the machine.`)
}
console.log("Columns: y-ws = @y/websocket-server 0.1.1 (in memory), y-ws+ldb = the same with YPERSISTENCE (LevelDB, no fsync),")
console.log('pycrdt = pycrdt-websocket 0.16 on uvicorn (in memory), c-tmpfs = Concord with its database on tmpfs.')
console.log("'vs X' = Concord's value / X's value; 'better'/'worse' reads the metric's direction.")
console.log('')
print(table[0])
print(widths.map((w) => '-'.repeat(w)))
table.slice(1).forEach(print)
for (const n of names) if (results[n].error) console.log(`${n}: ${results[n].error} (its log is printed above if the run kept it)`)
console.log('Not compared: Hocuspocus (@hocuspocus/server 4.x needs Node >= 22; this machine has Node ' +
  `${process.versions.node}); y-sweet (not on npm/PyPI/crates.io here).`)

if (names.includes('concord-tmpfs')) {
  console.log("c-tmpfs: fsync is free on tmpfs, so 'vs c-tmpfs' is what durable writes (fsync before relaying) cost; not a setting to deploy.")
}

let failed = hasConcord && (results.concord.error || !results.concord.fanout?.ok || !results.concord.late?.ok)
for (const name of names.filter((n) => n.startsWith('concord'))) {
  const op = read(`${opt.results}/oplog-${name}.json`)
  console.log('')
  console.log(`${name} operation log (no alternative reachable here): ` +
    (op.error
      ? op.error
      : `${op.devices} devices pushing 100 ops per request: ${op.ops_committed} ops committed, ` +
        `${op.push_ops_per_s.toFixed(0)} ops/s, push p50 ${op.push_p50_ms.toFixed(1)} ms, p99 ${op.push_p99_ms.toFixed(1)} ms; ` +
        `pull of the whole log in pages of 100: ${op.pull_ops_per_s.toFixed(0)} ops/s; ` +
        `${op.ok ? 'every op pulled once, sequences gap-free' : 'PULL MISMATCH'}`))
  if (name === 'concord') failed ||= !op.ok
}
if (failed) {
  console.log('\nConcord failed a correctness check: its numbers above do not count.')
  process.exit(1)
}
