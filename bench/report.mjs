// Prints bench/run's side-by-side table from the per-server JSON results, with Concord's ratio to
// each alternative, then the operation-log numbers. Exits 1 when Concord failed a check, so a
// broken server cannot pass as a fast one.
//
// With the Rust load generator's results (rust-NAME.jsonl), a second table: Y1 idle memory, Y2
// propagation, Y3 throughput.
//
// Usage: node report.mjs --mode full|quick --loadgen node|rust|both --loadavg "a b c" --results DIR name...
import { readFileSync, existsSync } from 'node:fs'
import { cpus } from 'node:os'

const argv = process.argv.slice(2)
const opt = {}
const names = []
for (let i = 0; i < argv.length; i++) {
  if (argv[i].startsWith('--')) opt[argv[i].slice(2)] = argv[++i]
  else names.push(argv[i])
}

const nodeRan = opt.loadgen !== 'rust'
const rustRan = opt.loadgen === 'rust' || opt.loadgen === 'both'
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
const SHORT = { 'y-websocket': 'y-ws', 'y-websocket-leveldb': 'y-ws+ldb', 'pycrdt-websocket': 'pycrdt', 'concord-tmpfs': 'c-tmpfs', hocuspocus: 'hocus', 'concord-hocuspocus': 'c-hocus' }
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
if (nodeRan) {
  console.log('')
  print(table[0])
  print(widths.map((w) => '-'.repeat(w)))
  table.slice(1).forEach(print)
  for (const n of names) if (results[n].error) console.log(`${n}: ${results[n].error} (its log is printed above if the run kept it)`)
}
console.log('hocus = @hocuspocus/server 4.7 + extension-sqlite (stores the whole document 2 s after a change), ' +
  `on Node ${process.versions.node} (it declares >= 22); Rust load generator only. Not compared: y-sweet (not on npm/PyPI/crates.io here).`)

if (names.includes('concord-tmpfs')) {
  console.log("c-tmpfs: fsync is free on tmpfs, so 'vs c-tmpfs' is what durable writes (fsync before relaying) cost; not a setting to deploy.")
}

let failed = nodeRan && hasConcord && (results.concord.error || !results.concord.fanout?.ok || !results.concord.late?.ok)
for (const name of names.filter((n) => nodeRan && n.startsWith('concord'))) {
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
if (rustRan) failed = rustTable() || failed
if (failed) {
  console.log('\nConcord failed a correctness check: its numbers above do not count.')
  process.exit(1)
}

/** The Rust load generator's table; returns whether Concord failed a convergence check there. */
function rustTable () {
  const runs = Object.fromEntries(names.map((n) => {
    const file = `${opt.results}/rust-${n}.jsonl`
    const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []
    return [n, lines]
  }))
  const find = (n, pred) => runs[n].find((r) => !r.error && pred(r))
  const y1 = [...new Set(Object.values(runs).flat().filter((r) => r.scenario === 'y1').map((r) => r.conns))]
  const y2 = [...new Set(Object.values(runs).flat().filter((r) => r.scenario === 'y2').map((r) => r.observers))]
  const rrows = []
  for (const c of y1) {
    for (const one of [false, true]) {
      const get = (n) => find(n, (r) => r.scenario === 'y1' && r.conns === c && r.one_doc === one)
      const where = one ? 'one doc' : 'own docs'
      rrows.push([`Y1 ${c} idle, ${where}: KiB per conn`, (n) => get(n)?.kib_per_conn, 'lower', num(1)])
      rrows.push([`Y1 ${c} idle, ${where}: connects/s`, (n) => get(n)?.connect_per_s, 'higher', num(0)])
      rrows.push([`Y1 ${c} idle, ${where}: live edit p99 (ms)`, (n) => get(n)?.live_p99_ms, 'lower', num(1)])
    }
  }
  for (const o of y2) {
    const get = (n) => find(n, (r) => r.scenario === 'y2' && r.observers === o)?.run
    rrows.push([`Y2 1 -> ${o}: p50 (ms)`, (n) => get(n)?.p50_ms, 'lower', num(2)])
    rrows.push([`Y2 1 -> ${o}: p99 (ms)`, (n) => get(n)?.p99_ms, 'lower', num(2)])
    rrows.push([`Y2 1 -> ${o}: server CPU per delivery (us)`, (n) => get(n)?.server_cpu_us_per_delivery, 'lower', num(0)])
  }
  const y3 = (n) => find(n, (r) => r.scenario === 'y3')
  rrows.push(['Y3 best edits/s, p99 < 100 ms, none lost', (n) => y3(n)?.best_rate ?? 0, 'higher', num(0)])
  const converged = (n) => runs[n].length > 0 && runs[n].every((r) => !r.error && r.converged !== false)
  rrows.push(['every run converged, no run failed', converged, null, yesNo])

  const rtable = [header]
  for (const [label, get, better, fmt] of rrows) {
    const values = names.map(get)
    const line = [label, ...values.map(fmt)]
    if (hasConcord) {
      const ours = values[names.indexOf('concord')]
      for (const alt of alternatives) line.push(ratio(ours, values[names.indexOf(alt)], better))
    }
    rtable.push(line)
  }
  const w = header.map((_, c) => Math.max(...rtable.map((row) => String(row[c]).length)))
  const p = (row) => console.log(row.map((cell, c) => (c === 0 ? String(cell).padEnd(w[c]) : String(cell).padStart(w[c]))).join('  '))
  console.log('')
  console.log('Rust load generator (bench/loadgen): open-loop writers, latency from each edit\'s due time, connection setup untimed.')
  p(rtable[0])
  p(w.map((x) => '-'.repeat(x)))
  rtable.slice(1).forEach(p)
  for (const n of names) for (const r of runs[n]) if (r.error) console.log(`${n}: ${r.error} (${r.args})`)
  return hasConcord && !converged('concord')
}
