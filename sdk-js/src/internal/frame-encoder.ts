// A hand-written encoder for ClientFrame, the hot path of publishing: one pass to size the frame,
// one Buffer, no per-field allocation. Publishes (Envelope) are written directly; every other
// message kind is encoded by the generated codec and copied in. Envelope fields a publisher sets
// are written (the bridge sets sender, hop_count, timestamp and deadline); empty strings and
// zeros are left out as proto3 allows. test/unit.test.ts decodes the output with the generated
// codec and compares.
import { pb, type PbClientMessage, type PbEnvelope } from './proto.js';

const varintSize = (v: number): number =>
  v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;

/** UTF-8 byte length; ASCII strings (the usual case) are measured without a native call. */
function utf8Length(s: string): number {
  const n = s.length;
  if (n > 64) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, 'utf8');
  return n;
}

class FrameWriter {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  varint(v: number): void {
    const buf = this.buf;
    while (v > 0x7f) {
      buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[this.pos++] = v;
  }
  string(s: string, byteLength: number): void {
    this.varint(byteLength);
    if (byteLength === s.length) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < byteLength; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else {
      this.pos += this.buf.write(s, this.pos, 'utf8');
    }
  }
  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

// Envelope field tags (field << 3 | wire type).
const T_ID = 0x0a,
  T_TOPIC = 0x12,
  T_THREAD = 0x22,
  T_CORRELATION = 0x2a,
  T_REPLY_TO = 0x32,
  T_TTL = 0x38,
  T_QOS = 0x50,
  T_CONTENT_TYPE = 0x62,
  T_PAYLOAD = 0x6a,
  T_HEADERS = 0x72,
  T_TRACEPARENT = 0x7a;

interface Sized {
  /** Envelope body size, or -1 when `encoded` holds the whole ClientMessage. */
  envelope: number;
  encoded: Uint8Array | undefined;
  id: number;
  topic: number;
  thread: number;
  correlation: number;
  replyTo: number;
  contentType: number;
  traceparent: number;
  tracestate: number;
  headers: number[] | undefined;
}

const str = (s: string | null | undefined): string => s ?? '';

function sizeEnvelope(e: PbEnvelope, out: Sized): number {
  let size = 0;
  const field = (len: number, tag: number): number => (len > 0 ? tag + varintSize(len) + len : 0);
  out.id = utf8Length(str(e.id));
  size += field(out.id, 1);
  out.topic = utf8Length(str(e.topic));
  size += field(out.topic, 1);
  out.thread = utf8Length(str(e.threadId));
  size += field(out.thread, 1);
  out.correlation = utf8Length(str(e.correlationId));
  size += field(out.correlation, 1);
  out.replyTo = utf8Length(str(e.replyTo));
  size += field(out.replyTo, 1);
  if (e.ttlMs) size += 1 + varintSize(e.ttlMs);
  if (e.qos) size += 1 + varintSize(e.qos);
  out.contentType = utf8Length(str(e.contentType));
  size += field(out.contentType, 1);
  const payload = e.payload?.length ?? 0;
  size += field(payload, 1);
  if (e.headers) {
    out.headers = [];
    for (const key in e.headers) {
      const k = utf8Length(key);
      const v = utf8Length(e.headers[key] ?? '');
      const entry = 1 + varintSize(k) + k + 1 + varintSize(v) + v;
      out.headers.push(k, v, entry);
      size += 1 + varintSize(entry) + entry;
    }
  }
  out.traceparent = utf8Length(str(e.traceparent));
  size += field(out.traceparent, 1);
  out.tracestate = utf8Length(str(e.tracestate));
  size += field(out.tracestate, 2);
  return size;
}

function writeEnvelope(w: FrameWriter, e: PbEnvelope, s: Sized): void {
  if (s.id) {
    w.buf[w.pos++] = T_ID;
    w.string(e.id as string, s.id);
  }
  if (s.topic) {
    w.buf[w.pos++] = T_TOPIC;
    w.string(e.topic as string, s.topic);
  }
  if (s.thread) {
    w.buf[w.pos++] = T_THREAD;
    w.string(e.threadId as string, s.thread);
  }
  if (s.correlation) {
    w.buf[w.pos++] = T_CORRELATION;
    w.string(e.correlationId as string, s.correlation);
  }
  if (s.replyTo) {
    w.buf[w.pos++] = T_REPLY_TO;
    w.string(e.replyTo as string, s.replyTo);
  }
  if (e.ttlMs) {
    w.buf[w.pos++] = T_TTL;
    w.varint(e.ttlMs);
  }
  if (e.qos) {
    w.buf[w.pos++] = T_QOS;
    w.varint(e.qos);
  }
  if (s.contentType) {
    w.buf[w.pos++] = T_CONTENT_TYPE;
    w.string(e.contentType as string, s.contentType);
  }
  if (e.payload && e.payload.length > 0) {
    w.buf[w.pos++] = T_PAYLOAD;
    w.bytes(e.payload);
  }
  if (e.headers && s.headers) {
    let i = 0;
    for (const key in e.headers) {
      const k = s.headers[i++] as number;
      const v = s.headers[i++] as number;
      const entry = s.headers[i++] as number;
      w.buf[w.pos++] = T_HEADERS;
      w.varint(entry);
      w.buf[w.pos++] = 0x0a;
      w.string(key, k);
      w.buf[w.pos++] = 0x12;
      w.string(e.headers[key] ?? '', v);
    }
  }
  if (s.traceparent) {
    w.buf[w.pos++] = T_TRACEPARENT;
    w.string(e.traceparent as string, s.traceparent);
  }
  if (s.tracestate) {
    w.buf[w.pos++] = 0x82;
    w.buf[w.pos++] = 0x01;
    w.string(e.tracestate as string, s.tracestate);
  }
}

/** Encodes `{ messages }` as a loom.v1.ClientFrame. */
export function encodeClientFrame(frame: { messages?: PbClientMessage[] | null }): Buffer {
  const messages = frame.messages ?? [];
  const sized: Sized[] = new Array<Sized>(messages.length);
  let total = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as PbClientMessage;
    const s: Sized = {
      envelope: -1,
      encoded: undefined,
      id: 0,
      topic: 0,
      thread: 0,
      correlation: 0,
      replyTo: 0,
      contentType: 0,
      traceparent: 0,
      tracestate: 0,
      headers: undefined,
    };
    let messageSize: number;
    if (m.publish) {
      s.envelope = sizeEnvelope(m.publish, s);
      messageSize = 1 + varintSize(s.envelope) + s.envelope;
    } else {
      s.encoded = pb.ClientMessage.encode(m).finish();
      messageSize = s.encoded.length;
    }
    sized[i] = s;
    total += 1 + varintSize(messageSize) + messageSize;
  }
  const w = new FrameWriter(total);
  for (let i = 0; i < messages.length; i++) {
    const s = sized[i] as Sized;
    w.buf[w.pos++] = 0x0a; // ClientFrame.messages
    if (s.encoded) {
      w.bytes(s.encoded);
    } else {
      w.varint(1 + varintSize(s.envelope) + s.envelope);
      w.buf[w.pos++] = 0x0a; // ClientMessage.publish
      w.varint(s.envelope);
      writeEnvelope(w, (messages[i] as PbClientMessage).publish as PbEnvelope, s);
    }
  }
  return w.buf;
}
