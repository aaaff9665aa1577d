#!/usr/bin/env node
// A vidinfer subscriber in Node.js, written from docs/wire-format.md alone (no vidinfer code).
//
//   node subscriber.mjs ENDPOINT [--streams N] [--timeout SECONDS]
//
// Connects a SUB socket to ENDPOINT, subscribes to everything and prints one JSON line per
// message: the topic, every header field, the loss-detection verdict and the decoded body
// (detections columns as arrays, 64-bit integers as decimal strings). It stops once the end of
// stream of N different streams has arrived (exit 0), or when no message has arrived for
// SECONDS (exit 0 when N is 0, else 3). tests/test_js_subscriber.py compares its output with
// what vidinfer's Python subscriber decodes from the same run.
//
// Packages (tests/js/package.json): zeromq 6, @msgpack/msgpack 3.

import { endianness } from "node:os";
import { Decoder } from "@msgpack/msgpack";
import { Subscriber } from "zeromq";

// --- command line ---
const args = process.argv.slice(2);
let endpoint = null;
let streams = 0;
let timeoutS = 10;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--streams") streams = Number(args[++i]);
  else if (args[i] === "--timeout") timeoutS = Number(args[++i]);
  else if (endpoint === null) endpoint = args[i];
  else usage(`unexpected argument ${args[i]}`);
}
if (endpoint === null || !Number.isInteger(streams) || streams < 0 || !(timeoutS > 0)) usage("");

function usage(why) {
  if (why) process.stderr.write(`subscriber.mjs: ${why}\n`);
  process.stderr.write("usage: node subscriber.mjs ENDPOINT [--streams N] [--timeout SECONDS]\n");
  process.exit(2);
}

// --- integers (docs/wire-format.md, "Integers: 64-bit fields") ---
// 64-bit integers arrive as bigint when msgpack encoded them in 64 bits, as number otherwise.
const decoder = new Decoder({ useBigInt64: true });
const SIXTY_FOUR = new Set(["epoch", "seq", "emit_ns", "pts_ns", "capture_ns", "time_ns"]);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function int64String(v) {  // a 64-bit field, exact, as a decimal string (JSON has no bigint)
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v).toString();
  throw new Error(`expected an integer, got ${typeof v} ${v}`);
}

function float(v) {  // JSON cannot carry these exactly: name them
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "-Infinity";
  if (Object.is(v, -0)) return "-0";
  return v;
}

// Any other value, for JSON: bigint as a number when it is exact, else as a string; the named
// 64-bit fields always as strings; binary as hex.
function plain(v, key) {
  if (typeof v === "bigint") {
    if (SIXTY_FOUR.has(key)) return v.toString();
    return v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : v.toString();
  }
  if (typeof v === "number") {
    if (SIXTY_FOUR.has(key) && Number.isInteger(v)) return int64String(v);
    return float(v);
  }
  if (v instanceof Uint8Array) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") };
  if (Array.isArray(v)) return v.map((x) => plain(x, key));
  if (v !== null && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x, k);
    return out;
  }
  return v;  // string, boolean, null
}

// --- binary columns (docs/wire-format.md, "Reading the binary columns") ---
// msgpack bin values are views into the frame at arbitrary offsets: read them with a DataView,
// or copy first and view the copy (little-endian hosts only). Both are used here.
const LITTLE_ENDIAN_HOST = endianness() === "LE";
const columns = { total: 0, unaligned: 0 };

function bytes(buf, n, size, what) {
  if (!(buf instanceof Uint8Array)) throw new Error(`${what}: expected bin, got ${typeof buf}`);
  if (buf.byteLength !== n * size) throw new Error(`${what}: ${buf.byteLength} bytes for ${n} values of ${size}`);
  columns.total += 1;
  if (buf.byteOffset % size !== 0) columns.unaligned += 1;  // where new Float32Array(buf.buffer, buf.byteOffset) throws
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function float32s(buf, n, what) {  // DataView
  const dv = bytes(buf, n, 4, what);
  const out = new Array(n);
  for (let k = 0; k < n; k++) out[k] = float(dv.getFloat32(4 * k, true));
  return out;
}

function int32s(buf, n, what) {  // copy, then view (DataView on a big-endian host)
  const dv = bytes(buf, n, 4, what);
  if (LITTLE_ENDIAN_HOST) return Array.from(new Int32Array(new Uint8Array(buf).buffer));
  return Array.from({ length: n }, (_, k) => dv.getInt32(4 * k, true));
}

function int64s(buf, n, what) {  // bigint values, as strings
  const dv = bytes(buf, n, 8, what);
  return Array.from({ length: n }, (_, k) => dv.getBigInt64(8 * k, true).toString());
}

const COLUMN_KEYS = new Set(["count", "xyxy", "score", "class_id", "track_id", "attributes"]);

function layer(cols, where) {  // one layer's columns: the body's own, or one under `layers`
  const n = Number(cols.count);
  const flat = float32s(cols.xyxy, 4 * n, `${where} xyxy`);
  const attributes = {};
  for (const [name, pair] of Object.entries(cols.attributes ?? {})) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new Error(`${where} attribute ${name}: not [label_id, score]`);
    attributes[name] = { label_id: int32s(pair[0], n, `${where} ${name} label_id`),
                         score: float32s(pair[1], n, `${where} ${name} score`) };
  }
  return {
    count: n,
    xyxy: Array.from({ length: n }, (_, k) => flat.slice(4 * k, 4 * k + 4)),
    score: float32s(cols.score, n, `${where} score`),
    class_id: int32s(cols.class_id, n, `${where} class_id`),
    track_id: cols.track_id == null ? null : int64s(cols.track_id, n, `${where} track_id`),
    attributes,
  };
}

function detections(body, where) {
  const out = layer(body, where);
  for (const [k, v] of Object.entries(body)) {
    if (COLUMN_KEYS.has(k)) continue;
    if (k === "layers") {
      out.layers = {};
      for (const [name, cols] of Object.entries(v)) out.layers[name] = layer(cols, `${where} layer ${name}`);
    } else {
      out[k] = plain(v, k);  // stream_id, frame_no, pts_ns, capture_ns, width, height, discontinuity, ...
    }
  }
  return out;
}

// --- loss detection (docs/wire-format.md, "Loss detection") ---
const topics = new Map();  // publisher_id + topic -> { epoch, next } (bigints)

function track(publisher, topic, epoch, seq, replay) {
  const key = JSON.stringify([publisher, topic]);
  const last = topics.get(key);
  const same = last !== undefined && last.epoch === epoch;
  if (same && replay && seq < last.next) return { gap: 0, duplicate: true };
  const gap = same && seq > last.next ? Number(seq - last.next) : 0;
  if (!same || seq >= last.next) topics.set(key, { epoch, next: seq + 1n });
  return { gap, duplicate: false };
}

// --- the socket ---
const sock = new Subscriber({ receiveHighWaterMark: 1000000, linger: 0, receiveTimeout: Math.round(timeoutS * 1000) });
sock.connect(endpoint);
sock.subscribe();  // everything
process.stderr.write(`subscriber.mjs: subscribed to everything at ${endpoint}\n`);

const ended = new Set();
const counts = { messages: 0, skipped: 0, incompatible: 0, duplicates: 0, gaps: 0 };
let code = 0;
try {
  while (streams === 0 || ended.size < streams) {
    let frames;
    try {
      frames = await sock.receive();
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      if (streams > 0) {
        process.stderr.write(`subscriber.mjs: no message for ${timeoutS} s; ${ended.size} of ${streams} streams ended\n`);
        code = 3;
      }
      break;
    }
    if (frames.length !== 3) {  // not a vidinfer message
      counts.skipped += 1;
      continue;
    }
    const topic = frames[0].toString("ascii");
    const h = decoder.decode(frames[1]);
    if (!Array.isArray(h) || h.length < 7) {
      counts.skipped += 1;
      continue;
    }
    const major = Number(h[0]);
    if (major !== 1) {  // a major version this subscriber does not know
      counts.incompatible += 1;
      continue;
    }
    const flags = h.length > 7 ? Number(h[7]) : 0;
    const header = {
      major, minor: Number(h[1]), kind: h[2], publisher_id: h[3],
      epoch: int64String(h[4]), seq: int64String(h[5]), emit_ns: int64String(h[6]),
      flags, replay: (flags & 1) !== 0, retained: (flags & 2) !== 0,
    };
    if (h.length > 8) header.extra = plain(h.slice(8), "");
    const { gap, duplicate } = track(header.publisher_id, topic, BigInt(h[4]), BigInt(h[5]), header.replay);
    const raw = decoder.decode(frames[2]);
    const body = header.kind === "detections" ? detections(raw, `${topic} seq ${header.seq}`) : plain(raw, "");
    counts.messages += 1;
    counts.gaps += gap;
    if (duplicate) counts.duplicates += 1;
    process.stdout.write(JSON.stringify({ topic, header, gap, duplicate, body }) + "\n");
    if (header.kind === "end_of_stream" && !duplicate) ended.add(body.stream_id);
  }
} finally {
  sock.close();
}
process.stderr.write(`subscriber.mjs: ${JSON.stringify({ ...counts, ended: [...ended].sort(), columns })}\n`);
process.exitCode = code;
