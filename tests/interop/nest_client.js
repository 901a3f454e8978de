#!/usr/bin/env node
// nest_client.js - interop check: talk to the service through an UNCHANGED NestJS v12
// MQTT client (ClientProxyFactory + Transport.MQTT), exactly as a NestJS app would.
//
//   node nest_client.js --url mqtt://127.0.0.1:1883 [--pattern getConnectors] [--data '{"a":1}']
//                       [--timeout-ms 10000] [--emit] [--verbose]
//
// Prints ONE JSON line on stdout and exits 0:
//   {"ok":true,"response":<last value>}           reply with a value (for a stream: the last one)
//   {"ok":true,"response":null,"empty":true}      reply {"isDisposed":true} without a value
//   {"ok":false,"error":<err as received>}         reply carrying "err"
//   {"ok":true,"emitted":true}                     --emit: event published (no reply expected)
// Exit 2 (message on stderr) on timeout or connection failure, exit 1 on bad arguments.
// A --pattern starting with "{" is parsed as a JSON object pattern ({cmd:'x'} style).
// Nest's own log lines go to stderr (only with --verbose, except errors) so stdout stays one line.
'use strict';
require('reflect-metadata');
const { parseArgs } = require('node:util');
const { Logger } = require('@nestjs/common');
const { ClientProxyFactory, Transport } = require('@nestjs/microservices');
const { lastValueFrom } = require('rxjs');

function fail(code, message) {
  process.stderr.write(`nest_client: ${message}\n`);
  process.exit(code);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      pattern: { type: 'string', default: 'getConnectors' },
      data: { type: 'string', default: '{}' },
      'timeout-ms': { type: 'string', default: '10000' },
      emit: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
    },
  }));
} catch (e) {
  fail(1, e.message);
}

let data, pattern;
try {
  data = JSON.parse(args.data);
  pattern = args.pattern.startsWith('{') ? JSON.parse(args.pattern) : args.pattern;
} catch (e) {
  fail(1, `--data/--pattern is not valid JSON: ${e.message}`);
}
const timeoutMs = Number(args['timeout-ms']);
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) fail(1, '--timeout-ms must be a positive number');

// Route Nest's logger to stderr: its ConsoleLogger writes log/warn to stdout otherwise.
const toStderr = (level) => (msg, ...rest) => {
  if (args.verbose || level === 'error' || level === 'fatal') {
    process.stderr.write(`[nest ${level}] ${msg instanceof Error ? msg.stack : msg} ${rest.join(' ')}\n`);
  }
};
Logger.overrideLogger(Object.fromEntries(
  ['log', 'error', 'warn', 'debug', 'verbose', 'fatal'].map((l) => [l, toStderr(l)])));

const client = ClientProxyFactory.create({ transport: Transport.MQTT, options: { url: args.url } });

const timer = setTimeout(
  () => fail(2, `timeout after ${timeoutMs} ms (${args.emit ? 'emit' : 'send'} ${JSON.stringify(pattern)} on ${args.url})`),
  timeoutMs);

async function done(obj) {
  clearTimeout(timer);
  // Disconnect cleanly (UNSUBSCRIBE + DISCONNECT), but never wait long for it.
  await Promise.race([client.close().catch(() => {}), new Promise((r) => setTimeout(r, 500))]);
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(0));
}

async function main() {
  try {
    await client.connect();
  } catch (e) {
    fail(2, `cannot connect to ${args.url}: ${e && (e.message || e.code) || e}`);
  }

  if (args.emit) {
    try {
      await lastValueFrom(client.emit(pattern, data), { defaultValue: undefined });
    } catch (e) {
      fail(2, `emit failed: ${e && e.message || e}`);
    }
    return done({ ok: true, emitted: true });
  }

  const NONE = Symbol('none');
  let response;
  try {
    response = await lastValueFrom(client.send(pattern, data), { defaultValue: NONE });
  } catch (err) {
    // Replies are parsed JSON, so an Error instance can only be a local failure
    // (connection closed, subscribe refused, ...): report it as such.
    if (err instanceof Error) fail(2, `request failed locally: ${err.message}`);
    return done({ ok: false, error: err });
  }
  if (response === NONE) return done({ ok: true, response: null, empty: true });
  done({ ok: true, response });
}

main().catch((e) => fail(2, `unexpected: ${e && e.stack || e}`));
