// A real y-websocket provider driven line by line by the Rust tests.
//
// Usage: node client.mjs <ws://host/sync> <document name> <token>
// Commands on stdin, one JSON object per line:
//   {"op":"insert","text":"..."}        append to the Y.Text "body" (the Diaryx body)
//   {"op":"set","key":"k","value":any}  set a key of the Y.Map "m"
//   {"op":"awareness","state":{...}}    set this client's awareness state
//   {"op":"dump"}                       print the current state
//   {"op":"quit"}                       disconnect and exit
// Output on stdout, one JSON object per line: {"event":"synced"}, {"event":"closed","code":N},
// and for "dump": {"event":"dump","synced":bool,"text":"...","map":{...},"peers":[states of others]}.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [serverUrl, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(serverUrl, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: { token },
  disableBc: true
})

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

provider.on('sync', (synced) => { if (synced) emit({ event: 'synced' }) })
provider.on('connection-close', (event) => emit({ event: 'closed', code: event ? event.code : null }))

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = JSON.parse(line)
  switch (cmd.op) {
    case 'insert': {
      const text = doc.getText('body')
      text.insert(text.length, cmd.text)
      break
    }
    case 'set':
      doc.getMap('m').set(cmd.key, cmd.value)
      break
    case 'awareness':
      provider.awareness.setLocalState(cmd.state)
      break
    case 'dump': {
      const peers = []
      provider.awareness.getStates().forEach((state, id) => {
        if (id !== doc.clientID) peers.push(state)
      })
      emit({
        event: 'dump',
        synced: provider.synced,
        text: doc.getText('body').toString(),
        map: doc.getMap('m').toJSON(),
        peers
      })
      break
    }
    case 'quit':
      provider.destroy()
      process.exit(0)
  }
})
rl.on('close', () => { provider.destroy(); process.exit(0) })
