// Prints bench/run's side-by-side table from the per-server JSON results, with Concord's ratio to
// each alternative, then the operation-log numbers. Exits 1 when Concord failed a check, so a
// broken server cannot pass as a fast one.
//
// With the Rust load generator's results (rust-NAME.jsonl), a second table: Y1 idle memory, Y2
// propagation, Y3 throughput.
//
// With the floors (floors.jsonl: fsync cost, the op-log limit program) and, in a full run, issue 13's
// targets, each met or not with its figures.
//
// With the two-node results (rust-concord-pg.jsonl: one node on PostgreSQL; rust-concord-nodes.jsonl:
// two nodes on PostgreSQL and Redis), X2 cross-node propagation and X3 throughput beside SQLite's
// and one PostgreSQL node's figures, with ratios.
//
// Usage: node report.mjs --mode full|quick --loadgen node|rust|both --scenarios Y1,Y2,… --loadavg "a b c"
//          --seconds S --results DIR name...
import { readFileSync, existsSync } from 'node:fs'
import { cpus } from 'node:os'

const argv = process.argv.slice(2)
const opt = {}
const names = []
for (let i = 0; i < argv.length; i++) {
  if (argv[i].startsWith('--')) opt[argv[i].slice(2)] = argv[++i]
  else names.push(argv[i])
}

const scenarios = (opt.scenarios ?? 'Y1,Y2,Y3,Y4,Y5,O1,B1,X2,X3,node').split(',')
const nodeRan = opt.loadgen !== 'rust' && scenarios.includes('node')
// Per-server Rust scenarios, and the two-node ones (Concord only).
const rustRan = opt.loadgen !== 'node' && scenarios.some((s) => /^(Y[1-5]|O1|B1|M1)$/.test(s))
const nodesRan = opt.loadgen !== 'node' && names.includes('concord') && ['X2', 'X3', 'M1'].some((s) => scenarios.includes(s))
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
if (rustRan) failed = rustTable() || failed
if (nodesRan) failed = nodesTable() || failed
console.log(`\nWall time of the whole run: ${(Number(opt.seconds) / 60).toFixed(1)} min.`)
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
  rrows.push(['Y3 best edits/s, p99 < 100 ms, none lost', (n) => (y3(n) ? (y3(n).best_rate ?? 0) : undefined), 'higher', num(0)])
  const y4 = (n) => find(n, (r) => r.scenario === 'y4')
  const y4any = Object.values(runs).flat().find((r) => r.scenario === 'y4')
  const y4label = y4any ? `Y4 ${y4any.clients} join a ${(y4any.doc_bytes / 1e6).toFixed(1)} MB doc` : 'Y4 join storm'
  const mb = (kib) => (typeof kib === 'number' ? kib / 1024 : undefined)
  rrows.push([`${y4label}: all synced (s)`, (n) => y4(n)?.all_synced_s, 'lower', num(2)])
  rrows.push([`${y4label}: join p50 (ms)`, (n) => y4(n)?.join_p50_ms, 'lower', num(0)])
  rrows.push([`${y4label}: server peak RSS (MB)`, (n) => mb(y4(n)?.server_rss_peak_kib), 'lower', num(1)])
  const y5 = (n) => find(n, (r) => r.scenario === 'y5')
  const y5any = Object.values(runs).flat().find((r) => r.scenario === 'y5-build')
  const y5label = `Y5 doc of ${y5any?.updates ?? 'N'} updates`
  rrows.push([`${y5label}: build (s)`, (n) => find(n, (r) => r.scenario === 'y5-build')?.build_s, 'lower', num(1)])
  rrows.push([`${y5label}: cold connect-to-synced (ms)`, (n) => y5(n)?.cold_ms, 'lower', num(0)])
  rrows.push([`${y5label}: warm connect-to-synced (ms)`, (n) => y5(n)?.warm_ms, 'lower', num(0)])
  const o1 = (n) => find(n, (r) => r.scenario === 'o1')
  const o1any = Object.values(runs).flat().find((r) => r.scenario === 'o1')
  const o1label = `O1 ${o1any?.devices ?? 'D'} devices x ${o1any?.batch ?? 100} ops`
  rrows.push([`${o1label}: push ops/s`, (n) => o1(n)?.push_ops_per_s, 'higher', num(0)])
  rrows.push([`${o1label}: push p99 (ms)`, (n) => o1(n)?.push_p99_ms, 'lower', num(1)])
  rrows.push([`O1 pull, pages of 100: ops/s`, (n) => o1(n)?.pull_ops_per_s, 'higher', num(0)])
  const b1 = (n) => find(n, (r) => r.scenario === 'b1')
  const b1any = Object.values(runs).flat().find((r) => r.scenario === 'b1')
  const b1label = `B1 ${b1any?.mib ?? 'N'} MiB blob`
  rrows.push([`${b1label}: upload MiB/s`, (n) => b1(n)?.upload_mib_per_s, 'higher', num(0)])
  rrows.push([`${b1label}: download MiB/s`, (n) => b1(n)?.download_mib_per_s, 'higher', num(0)])
  rrows.push([`${b1label}: server RSS growth (MB)`, (n) => (b1(n) ? mb(b1(n).server_rss_peak_kib - b1(n).server_rss_before_kib) : undefined), 'lower', num(1)])
  const converged = (n) => runs[n].length > 0 && runs[n].every((r) => !r.error && r.converged !== false)
  rrows.push(['every run converged, no run failed', converged, null, yesNo])

  const rtable = [header]
  for (const [label, get, better, fmt] of rrows) {
    const values = names.map(get)
    // A scenario no server ran (Y1 at 50k for the alternatives, O1 in a quick run without Concord).
    if (values.every((v) => v === undefined)) continue
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

  const floors = existsSync(`${opt.results}/floors.jsonl`)
    ? readFileSync(`${opt.results}/floors.jsonl`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    : []
  const fsync = floors.find((r) => r.scenario === 'fsync')
  const limit = floors.find((r) => r.scenario === 'o1-limit')
  for (const r of floors) if (r.error) console.log(`floors: ${r.error}`)
  console.log('')
  console.log('Floors, on the disk the servers\' data is on:')
  if (fsync) console.log(`  one 4 KiB write + fdatasync: p50 ${(fsync.p50_us / 1000).toFixed(2)} ms, p99 ${(fsync.p99_us / 1000).toFixed(2)} ms`)
  if (limit) {
    console.log(`  O1 limit (the same rows straight into SQLite, WAL, synchronous=FULL, one transaction per ${limit.batch}): ` +
      `push ${limit.push_rows_per_s.toFixed(0)} rows/s, pull in pages of ${limit.page} ${limit.pull_rows_per_s.toFixed(0)} rows/s`)
  }
  const cb = hasConcord ? b1('concord') : undefined
  if (cb) console.log(`  plain copy of the B1 file with fsync: ${cb.copy_mib_per_s.toFixed(0)} MiB/s`)

  if (hasConcord && opt.mode === 'full') targets({ y2get: (n, o) => find(n, (r) => r.scenario === 'y2' && r.observers === o)?.run, y1: find, y3, y4, y5, o1, limit, cb })
  return hasConcord && !converged('concord')
}

/** Issue 13's targets, each met or not with the measured figures (full runs only). */
function targets ({ y2get, y1, y3, y4, y5, o1, limit, cb }) {
  const present = (n) => names.includes(n)
  const alts = ['y-websocket', 'y-websocket-leveldb', 'hocuspocus', 'pycrdt-websocket'].filter(present)
  const out = []
  const mark = (label, ok, detail) => out.push(`  ${ok === undefined ? 'n/a    ' : ok ? 'met    ' : 'NOT MET'}  ${label}: ${detail}`)
  const f = (v, d = 1) => (typeof v === 'number' ? v.toFixed(d) : '-')
  const c3 = y3('concord')?.best_rate
  const h3 = present('hocuspocus') ? y3('hocuspocus')?.best_rate : undefined
  const w3 = present('y-websocket') ? y3('y-websocket')?.best_rate : undefined
  mark('Y3 >= 3x hocus and >= 2x y-ws', typeof h3 === 'number' && typeof w3 === 'number' ? c3 >= 3 * h3 && c3 >= 2 * w3 : undefined, `concord ${c3}, hocus ${h3 ?? '-'}, y-ws ${w3 ?? '-'} edits/s`)
  for (const o of [100, 1000]) {
    const ours = y2get('concord', o)?.p99_ms
    const best = Math.min(...alts.map((n) => y2get(n, o)?.p99_ms).filter((v) => typeof v === 'number'))
    mark(`Y2 p99 at ${o} observers <= the better alternative`, Number.isFinite(best) && ours !== undefined ? ours <= best : undefined, `concord ${f(ours, 2)} ms, best alternative ${f(best, 2)} ms`)
  }
  const c1 = y2get('concord', 1)?.p99_ms
  const t1 = present('concord-tmpfs') ? y2get('concord-tmpfs', 1)?.p99_ms : undefined
  mark('Y2 p99 at 1 observer within 1 ms of the fsync floor (c-tmpfs)', t1 !== undefined ? c1 - t1 <= 1 : undefined, `concord ${f(c1, 2)} ms, c-tmpfs ${f(t1, 2)} ms`)
  const kib = [1000, 5000].map((c) => y1('concord', (r) => r.scenario === 'y1' && r.conns === c && !r.one_doc)?.kib_per_conn)
  mark('Y1 <= 4 KiB per idle connection', kib.every((v) => typeof v === 'number') ? kib.every((v) => v <= 4) : undefined, `1k: ${f(kib[0])} KiB, 5k: ${f(kib[1])} KiB`)
  const big = y1('concord', (r) => r.scenario === 'y1' && r.conns >= 50000)
  if (big) out.push(`  (info)   Y1 at ${big.conns}: ${f(big.kib_per_conn)} KiB per connection, ${f(big.connect_per_s, 0)} connects/s, live edit p99 ${f(big.live_p99_ms, 2)} ms`)
  const bestOf = (get) => Math.min(...alts.map(get).filter((v) => typeof v === 'number'))
  const t4 = bestOf((n) => y4(n)?.all_synced_s)
  const m4 = bestOf((n) => y4(n)?.server_rss_peak_kib)
  const c4 = y4('concord')
  mark('Y4 time <= 1/3 of the better alternative', c4 && Number.isFinite(t4) ? c4.all_synced_s <= t4 / 3 : undefined, `concord ${f(c4?.all_synced_s, 2)} s, best alternative ${f(t4, 2)} s`)
  mark('Y4 peak memory <= 1/3 of the better alternative', c4 && Number.isFinite(m4) ? c4.server_rss_peak_kib <= m4 / 3 : undefined, `concord ${f(c4?.server_rss_peak_kib / 1024)} MB, best alternative ${f(m4 / 1024)} MB`)
  const c5 = y5('concord')?.cold_ms
  mark('Y5 cold load < 1 s', c5 !== undefined ? c5 < 1000 : undefined, `${f(c5, 0)} ms`)
  const co = o1('concord')
  mark('O1 push >= the limit program', co && limit ? co.push_ops_per_s >= limit.push_rows_per_s : undefined, `concord ${f(co?.push_ops_per_s, 0)} ops/s, limit ${f(limit?.push_rows_per_s, 0)} rows/s`)
  mark('O1 pull >= 100k ops/s', co ? co.pull_ops_per_s >= 100000 : undefined, `${f(co?.pull_ops_per_s, 0)} ops/s (limit ${f(limit?.pull_rows_per_s, 0)} rows/s)`)
  if (cb) {
    // Flat: the server's resident memory grows by less than 32 MiB while a file of any size passes.
    const growth = (cb.server_rss_peak_kib - cb.server_rss_before_kib) / 1024
    mark('B1 >= 60% of the plain copy both ways', cb.upload_mib_per_s >= 0.6 * cb.copy_mib_per_s && cb.download_mib_per_s >= 0.6 * cb.copy_mib_per_s,
      `upload ${f(cb.upload_mib_per_s, 0)}, download ${f(cb.download_mib_per_s, 0)}, copy ${f(cb.copy_mib_per_s, 0)} MiB/s`)
    mark('B1 flat server memory (growth < 32 MiB)', growth < 32, `${f(growth)} MiB`)
  }
  const o = Math.max(...[1, 50, 100, 1000].filter((n) => y2get('concord', n)))
  const cc = y2get('concord', o)?.server_cpu_us_per_delivery
  const wc = present('y-websocket') ? y2get('y-websocket', o)?.server_cpu_us_per_delivery : undefined
  mark(`server CPU per delivered update <= y-ws's (Y2, ${o} observers)`, wc !== undefined && cc !== undefined ? cc <= wc : undefined, `concord ${f(cc, 1)} us, y-ws ${f(wc, 1)} us`)
  console.log('')
  console.log('Targets of issue 13:')
  out.forEach((l) => console.log(l))
}


/** Reads one result file of the Rust load generator: a JSON object per line. */
function jsonl (file) {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []
}

/**
 * X2 and X3: Concord on SQLite (its Y2/Y3 rows, when they ran), one node on PostgreSQL, and two
 * nodes on PostgreSQL and Redis (writers on A, observers on B); returns whether a PostgreSQL or
 * two-node run failed or did not converge.
 */
function nodesTable () {
  const sqlite = jsonl(`${opt.results}/rust-concord.jsonl`)
  const pg = jsonl(`${opt.results}/rust-concord-pg.jsonl`)
  const two = jsonl(`${opt.results}/rust-concord-nodes.jsonl`)
  console.log('')
  const skipped = [...pg, ...two].find((r) => r.skipped)
  if (skipped) {
    console.log(`Two nodes: not run (${skipped.skipped}); not a Concord failure.`)
    return false
  }
  const ok = (r) => !r.error
  const converged = (runs) => runs.length > 0 && runs.every((r) => ok(r) && r.converged !== false)
  for (const [where, runs] of [['one node, SQLite', sqlite], ['two nodes, PostgreSQL + Redis', two]]) {
    for (const m of runs.filter((r) => ok(r) && r.scenario === 'm1')) {
      console.log(`M1 mixed run, ${where}: ${m.devices} devices (${m.connections} connections), ${m.updates_per_s_offered} edits/s, ` +
        `${m.pushes_per_s_offered.toFixed(1)} pushes/s: server ${m.server_cores.toFixed(2)} cores, ${(m.rss_connected_kib / 1024).toFixed(0)} MiB ` +
        `(${m.kib_per_connection.toFixed(1)} KiB per connection), Yjs p99 ${num(1)(m.yjs.p99_ms)} ms, event p99 ${num(1)(m.event_p99_ms)} ms, ` +
        `event streams reopened ${m.stream_reconnects}, converged ${yesNo(m.converged)}`)
    }
  }
  if (![...pg, ...two].some((r) => r.scenario === 'y2' || r.scenario === 'y3' || r.error)) return two.length > 0 && !converged(two)
  const y2 = (runs, o) => runs.find((r) => ok(r) && r.scenario === 'y2' && r.observers === o)?.run
  const y3 = (runs) => runs.find((r) => ok(r) && r.scenario === 'y3')
  const observers = [...new Set([...pg, ...two].filter((r) => r.scenario === 'y2').map((r) => r.observers))]
  const rows = []
  for (const o of observers) {
    for (const [what, key, digits] of [['p50 (ms)', 'p50_ms', 2], ['p99 (ms)', 'p99_ms', 2], ['server CPU per delivery (us)', 'server_cpu_us_per_delivery', 0]]) {
      rows.push([`X2 1 -> ${o}: ${what}`, (runs) => y2(runs, o)?.[key], 'lower', num(digits)])
    }
  }
  if ([...pg, ...two].some((r) => r.scenario === 'y3')) {
    rows.push(['X3 best edits/s, p99 < 100 ms, none lost', (runs) => { const run = y3(runs); return run ? (run.best_rate ?? 0) : undefined }, 'higher', num(0)])
  }
  const header = ['', 'sqlite', 'pg 1 node', 'pg+redis A->B', 'A->B vs pg', 'pg vs sqlite']
  const table = [header]
  for (const [label, get, better, fmt] of rows) {
    const [s, p, t] = [sqlite, pg, two].map(get)
    table.push([label, fmt(s), fmt(p), fmt(t), ratio(t, p, better), ratio(p, s, better)])
  }
  table.push(['every run converged (on both nodes), none failed', '', yesNo(converged(pg)), yesNo(converged(two)), '', ''])
  const w = header.map((_, c) => Math.max(...table.map((row) => String(row[c]).length)))
  const p = (row) => console.log(row.map((cell, c) => (c === 0 ? String(cell).padEnd(w[c]) : String(cell).padStart(w[c]))).join('  '))
  console.log('Two nodes (X2, X3): sqlite = concord\'s Y2/Y3 above; pg 1 node = one node on PostgreSQL, no bus; pg+redis A->B = two')
  console.log('nodes on that PostgreSQL and one Redis, the writer on A and every observer on B (X3: writers on both, each')
  console.log('document\'s observer on the other node, every document then checked on both). CPU: both nodes together.')
  p(table[0])
  p(w.map((x) => '-'.repeat(x)))
  table.slice(1).forEach(p)
  for (const [n, runs] of [['concord-pg', pg], ['concord-nodes', two]]) for (const r of runs) if (r.error) console.log(`${n}: ${r.error} (${r.args})`)
  // A part that did not run (M1 alone runs no concord-pg) is no failure; one that ran must converge.
  return (pg.length > 0 && !converged(pg)) || !converged(two)
}
