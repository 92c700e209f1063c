// Real @hocuspocus/provider documents on one shared socket, driven line by line by the Rust tests.
//
// Usage: node hocus-client.mjs <ws://host[/path]>
// Commands on stdin, one JSON object per line; every one but "quit" names a document "doc":
//   {"op":"open","doc":"d","token":"T"}       attach a provider for "d" to the shared socket
//   {"op":"insert","doc":"d","text":"..."}    append to the Y.Text "body"
//   {"op":"set","doc":"d","key":"k","value":any}  set a key of the Y.Map "m"
//   {"op":"awareness","doc":"d","state":{...}}    set this provider's awareness state
//   {"op":"stateless","doc":"d","payload":"..."}  send a stateless message
//   {"op":"write","doc":"d","count":N}        insert "h<n>;" N times, in bursts of five, each
//                                             burst once the previous one is acknowledged
//   {"op":"close","doc":"d"}                  detach and destroy the provider (sends Close)
//   {"op":"dump","doc":"d"}                   print the document's state
//   {"op":"quit"}                             disconnect and exit
// Output on stdout, one JSON object per line: {"event":"authenticated","doc","scope"},
// {"event":"denied","doc","reason"}, {"event":"stateless","doc","payload"},
// {"event":"acked","doc","upto":n} (unsyncedChanges reached 0 after "h<n>;" was inserted),
// {"event":"socket-closed","code"}, and for "dump": {"event":"dump","doc","synced","authenticated",
// "unsynced","text","map","peers":[states of others]}.
import * as Y from 'yjs'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url] = process.argv.slice(2)
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const socket = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
socket.on('close', ({ event }) => emit({ event: 'socket-closed', code: event ? event.code : null }))
const docs = new Map()

function open (name, token) {
  const doc = new Y.Doc()
  const entry = { doc, written: -1 }
  entry.provider = new HocuspocusProvider({
    websocketProvider: socket,
    name,
    document: doc,
    token,
    onAuthenticated: ({ scope }) => emit({ event: 'authenticated', doc: name, scope }),
    onAuthenticationFailed: ({ reason }) => emit({ event: 'denied', doc: name, reason }),
    onStateless: ({ payload }) => emit({ event: 'stateless', doc: name, payload }),
    onUnsyncedChanges: ({ number }) => {
      if (number === 0 && entry.written >= 0) {
        emit({ event: 'acked', doc: name, upto: entry.written })
        if (entry.burst) setImmediate(entry.burst)
      }
    }
  })
  // A shared socket is not attached automatically.
  entry.provider.attach()
  docs.set(name, entry)
}

function insert (entry, text) {
  const body = entry.doc.getText('body')
  body.insert(body.length, text)
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = JSON.parse(line)
  if (cmd.op === 'quit') {
    for (const { provider } of docs.values()) provider.destroy()
    socket.destroy()
    process.exit(0)
  }
  if (cmd.op === 'open') return open(cmd.doc, cmd.token)
  const entry = docs.get(cmd.doc)
  switch (cmd.op) {
    case 'insert':
      insert(entry, cmd.text)
      break
    case 'set':
      entry.doc.getMap('m').set(cmd.key, cmd.value)
      break
    case 'awareness':
      entry.provider.awareness.setLocalState(cmd.state)
      break
    case 'stateless':
      entry.provider.sendStateless(cmd.payload)
      break
    case 'write': {
      // Bursts of five inserts; the next burst starts as soon as the last is acknowledged, so
      // there are always edits in flight and unsyncedChanges keeps reaching 0.
      let n = 0
      entry.burst = () => {
        for (let i = 0; i < 5 && n < cmd.count; i++, n++) {
          insert(entry, `h${n};`)
          entry.written = n
        }
      }
      entry.burst()
      break
    }
    case 'close':
      entry.provider.destroy()
      docs.delete(cmd.doc)
      break
    case 'dump': {
      const { provider, doc } = entry
      const peers = []
      provider.awareness.getStates().forEach((state, id) => {
        if (id !== doc.clientID) peers.push(state)
      })
      emit({
        event: 'dump',
        doc: cmd.doc,
        synced: provider.isSynced,
        authenticated: provider.isAuthenticated,
        unsynced: provider.unsyncedChanges,
        text: doc.getText('body').toString(),
        map: doc.getMap('m').toJSON(),
        peers
      })
      break
    }
  }
})
rl.on('close', () => process.exit(0))
