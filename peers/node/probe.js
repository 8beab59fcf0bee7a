'use strict';
// The Node.js tls client (its bundled OpenSSL) as a mail client: SMTP,
// STARTTLS over the same socket (tls.connect({socket})), mutual TLS, one
// message. Prints one JSON line (peers/README.md). Node's standard library only.
//
// Certificate selection: Node has none of its own. With `cert`/`key` given,
// OpenSSL sends that chain whatever CA names the server lists; it sends an
// empty Certificate only when none is given. Whether it sent one is read off
// the bytes the TLS layer writes (TLS 1.2: its Certificate is plaintext).

const fs = require('fs');
const net = require('net');
const tls = require('tls');
const { Duplex } = require('stream');

const result = {
  stack: 'node',
  version: `${process.version} (OpenSSL ${process.versions.openssl})`,
  outcome: 'tls_failed',
  stage: 'connect',
  error: '',
  certificate_sent: null,
};

function emit(code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
}

function usage(why) {
  process.stderr.write('usage: run --host H --port P --cert CHAIN.pem --key KEY.pem --ca CA.pem ' +
    `[--tls 1.2|1.3]: ${why}\n`, () => process.exit(2));
}

/** Passes bytes both ways; watches the client's own TLS records. */
class Watch extends Duplex {
  constructor(sock, plaintext) {
    super();
    this.sock = sock;
    this.plaintext = plaintext;
    this.records = Buffer.alloc(0);
    this.stream = Buffer.alloc(0);
    sock.on('data', (d) => { if (!this.push(d)) sock.pause(); });
    sock.on('end', () => this.push(null));
    sock.on('error', (e) => this.destroy(e));
  }
  _read() { this.sock.resume(); }
  _write(chunk, _enc, cb) { this.observe(chunk); this.sock.write(chunk, cb); }
  _final(cb) { this.sock.end(); cb(); }
  _destroy(err, cb) { this.sock.destroy(); cb(err); }
  observe(chunk) {
    if (!this.plaintext) return;
    this.records = Buffer.concat([this.records, chunk]);
    while (this.records.length >= 5) {
      const n = this.records.readUInt16BE(3);
      if (this.records.length < 5 + n) return;
      const type = this.records[0];
      const payload = this.records.subarray(5, 5 + n);
      this.records = this.records.subarray(5 + n);
      if (type === 20) { this.plaintext = false; return; } // ChangeCipherSpec
      if (type !== 22) continue;
      this.stream = Buffer.concat([this.stream, payload]);
      while (this.stream.length >= 4) {
        const m = this.stream.readUIntBE(1, 3);
        if (this.stream.length < 4 + m) break;
        if (this.stream[0] === 11 && m >= 3) { // Certificate
          result.certificate_sent = this.stream.readUIntBE(4, 3) > 0;
        }
        this.stream = this.stream.subarray(4 + m);
      }
    }
  }
}

/** SMTP replies off a readable, one complete reply at a time. */
class Replies {
  constructor(stream) {
    this.buf = '';
    this.waiting = null;
    this.failure = null;
    this.stream = stream;
    this.onData = (d) => { this.buf += d.toString('latin1'); this.check(); };
    this.onEnd = () => { this.failure = this.failure || new Error('connection closed by the server'); this.check(); };
    this.onError = (e) => { this.failure = this.failure || e; this.check(); };
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
  }
  detach() {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    this.stream.off('error', this.onError);
  }
  check() {
    if (!this.waiting) return;
    let at = 0;
    for (;;) {
      const nl = this.buf.indexOf('\n', at);
      if (nl < 0) break;
      const line = this.buf.slice(at, nl).replace(/\r$/, '');
      at = nl + 1;
      if (line.length < 4 || line[3] !== '-') {
        const first = this.buf.slice(0, this.buf.indexOf('\n')).replace(/\r$/, '');
        this.buf = this.buf.slice(at);
        const { resolve } = this.waiting;
        this.waiting = null;
        resolve(first);
        return;
      }
    }
    if (this.failure) {
      const { reject } = this.waiting;
      this.waiting = null;
      reject(this.failure);
    }
  }
  next() {
    return new Promise((resolve, reject) => { this.waiting = { resolve, reject }; this.check(); });
  }
}

class SmtpReply extends Error {}

async function step(io, replies, stage, line, want) {
  result.stage = stage;
  if (line !== null) io.write(line + '\r\n');
  const reply = await replies.next();
  if (!reply.startsWith(String(want))) throw new SmtpReply(reply);
}

async function main() {
  const args = { '--tls': '1.2' };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (i + 1 >= argv.length || !['--host', '--port', '--cert', '--key', '--ca', '--tls'].includes(argv[i])) {
      return usage(`bad argument ${argv[i]}`);
    }
    args[argv[i]] = argv[i + 1];
  }
  for (const need of ['--host', '--port', '--cert', '--key', '--ca']) {
    if (!(need in args)) return usage(`missing ${need}`);
  }
  const port = Number(args['--port']);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return usage('bad port');
  const version = { '1.2': 'TLSv1.2', '1.3': 'TLSv1.3' }[args['--tls']];
  if (!version) return usage('--tls must be 1.2 or 1.3');
  let cert, key, ca;
  try {
    cert = fs.readFileSync(args['--cert']);
    key = fs.readFileSync(args['--key']);
    ca = fs.readFileSync(args['--ca']);
  } catch (e) {
    return usage(e.message);
  }
  const host = args['--host'];

  const sock = net.connect({ host, port });
  sock.setTimeout(30000, () => sock.destroy(new Error('timed out')));
  try {
    await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    const plain = new Replies(sock);
    await step(sock, plain, 'greeting', null, 220);
    await step(sock, plain, 'ehlo', 'EHLO probe.lab.test', 250);
    await step(sock, plain, 'starttls', 'STARTTLS', 220);
    plain.detach();
    sock.pause();
  } catch (e) {
    result.outcome = 'rejected';
    result.error = e.message;
    return emit(1);
  }
  result.stage = 'handshake';
  const watch = new Watch(sock, version === 'TLSv1.2');
  let secure;
  try {
    secure = tls.connect({
      socket: watch, host, ca, cert, key, minVersion: version, maxVersion: version,
    });
    await new Promise((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('connection closed during the handshake')));
    });
  } catch (e) {
    result.error = e.message;
    return emit(1);
  }
  const replies = new Replies(secure);
  try {
    await step(secure, replies, 'ehlo-tls', 'EHLO probe.lab.test', 250);
    await step(secure, replies, 'mail', 'MAIL FROM:<probe@lab.test>', 250);
    await step(secure, replies, 'rcpt', 'RCPT TO:<hub@lab.test>', 250);
    await step(secure, replies, 'data', 'DATA', 354);
    await step(secure, replies, 'message', 'From: probe@lab.test\r\nTo: hub@lab.test\r\n' +
      'Subject: node probe\r\n\r\nA small message from the node client.\r\n.', 250);
  } catch (e) {
    result.outcome = e instanceof SmtpReply ? 'rejected' : 'tls_failed';
    result.error = e.message;
    return emit(1);
  }
  result.outcome = 'delivered';
  try {
    await step(secure, replies, 'quit', 'QUIT', 221);
    result.stage = 'done';
  } catch (e) {
    // delivered already; the QUIT reply is a courtesy
  }
  secure.destroy();
  return emit(0);
}

main().catch((e) => { result.error = String(e && e.message); emit(1); });
