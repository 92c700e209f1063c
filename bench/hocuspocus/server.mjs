// @hocuspocus/server 4.7 with @hocuspocus/extension-sqlite, for bench/run: the alternative that
// persists, as Concord does. Default settings, as a user would deploy it: the whole document is
// stored 2 s after a change (`debounce`, at most every 10 s), in SQLite through better-sqlite3.
//
// Usage: HOST=127.0.0.1 PORT=1234 DATABASE=/path/db.sqlite node bench/hocuspocus/server.mjs
import { Server } from '@hocuspocus/server'
import { SQLite } from '@hocuspocus/extension-sqlite'

const server = new Server({
  address: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT),
  quiet: true,
  extensions: [new SQLite({ database: process.env.DATABASE })]
})
await server.listen()
