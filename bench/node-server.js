// The comparison servers: the official Lark Node SDK (@larksuiteoapi/node-sdk 1.74.0) receiving
// the same encrypted, signed deliveries.
//   node node-server.js PORT DB   stores each event durably (SQLite, WAL, synchronous=FULL,
//                                 dedup on event_id) before it answers, as a careful Node bot would
//   node node-server.js PORT      an empty handler: verifies, decrypts, answers, stores nothing
const http = require('http');
const lark = require('@larksuiteoapi/node-sdk');

const [port, dbPath] = process.argv.slice(2);
let store = () => {};
if (dbPath) {
  const Database = require('better-sqlite3');
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, payload TEXT NOT NULL)');
  const insert = db.prepare('INSERT OR IGNORE INTO events (event_id, payload) VALUES (?, ?)');
  store = (data) => insert.run(data.event_id, JSON.stringify(data));
}

const dispatcher = new lark.EventDispatcher({
  encryptKey: 'bench-encrypt-key',
  verificationToken: 'bench-verification-token',
  loggerLevel: lark.LoggerLevel.error,
}).register({
  'im.message.receive_v1': async (data) => {
    store(data);
    return 'ok';
  },
});

http.createServer(lark.adaptDefault('/lark/events', dispatcher, { autoChallenge: true }))
  .listen(Number(port), '127.0.0.1', () => console.log(`node sdk server on 127.0.0.1:${port}`));
