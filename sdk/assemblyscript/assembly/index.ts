// The Caxton agent SDK for AssemblyScript (agent ABI v1; docs/agents.md).
//
// An agent is three lines plus its handler:
//
//   import { Message, onMessage } from "<path to>/sdk/assemblyscript/assembly";
//   export { caxton_alloc, caxton_handle, caxton_init } from "<path to>/sdk/assemblyscript/assembly";
//   onMessage((m: Message): i32 => m.reply("inform", m.content));
//
// Build with the preset next to this directory (asconfig.json: incremental runtime, `_initialize`
// exported, abort/trace/seed/Date/console routed to the host and WASI, so the module imports only
// `caxton` and `wasi_snapshot_preview1`). Messages are read as UTF-8 bytes, once: `Message` keeps
// where each envelope field is and decodes a field only when asked. Every host call returns a
// code: 0 or one of `Err` (`errorName` names it).

export { Json } from "./json";
import { Json, skipValue, skipWs, stringEnd, unescape } from "./json";

// -- host imports ---------------------------------------------------------------------------

@external("caxton", "send")
declare function host_send(ptr: usize, len: i32): i32;
@external("caxton", "log")
declare function host_log(level: i32, ptr: usize, len: i32): void;
@external("caxton", "kv_get")
declare function host_kv_get(kptr: usize, klen: i32, vptr: usize, vcap: i32): i32;
@external("caxton", "kv_set")
declare function host_kv_set(kptr: usize, klen: i32, vptr: usize, vlen: i32): i32;
@external("caxton", "kv_delete")
declare function host_kv_delete(kptr: usize, klen: i32): i32;
@external("caxton", "schedule")
declare function host_schedule(delayMs: i64, ptr: usize, len: i32): i32;
@external("wasi_snapshot_preview1", "environ_sizes_get")
declare function wasi_environ_sizes_get(count: usize, size: usize): u16;
@external("wasi_snapshot_preview1", "environ_get")
declare function wasi_environ_get(environ: usize, buf: usize): u16;
@external("wasi_snapshot_preview1", "args_sizes_get")
declare function wasi_args_sizes_get(count: usize, size: usize): u16;
@external("wasi_snapshot_preview1", "args_get")
declare function wasi_args_get(argv: usize, buf: usize): u16;

// -- result codes ---------------------------------------------------------------------------

/** The host's result codes (0 is success). The same numbers as the C SDK's CAXTON_ERR_*. */
export enum Err {
  /** Not a JSON object, no receiver, or a bad pointer; for kv: the key is absent. */
  MALFORMED = -1,
  /** Above max_message_size, or a kv key or value above its limit. */
  TOO_LARGE = -2,
  /** The agent may not do this. */
  NOT_PERMITTED = -3,
  /** The receiver's mailbox is full: nothing was kept. */
  BACKPRESSURE = -4,
  /** JSON helpers: no such field. */
  NOT_FOUND = -5,
  /** JSON helpers: the field has another type. */
  WRONG_TYPE = -6,
  /** Over the agent's budget (sends per message, per second). */
  OVER_BUDGET = -7,
  /** Over the agent's key/value quota or timer limit: nothing was kept. */
  QUOTA = -8,
  /** The node's store cannot write (disk full): nothing was kept. */
  STORAGE = -9,
}

/** kv_get and kv_delete: the key is absent. */
export const KV_ABSENT: i32 = -1;
export const OK: i32 = 0;

/** A short name for a result code: "ok", "malformed", "too_large", ... or "error <code>". */
export function errorName(code: i32): string {
  switch (code) {
    case 0: return "ok";
    case Err.MALFORMED: return "malformed";
    case Err.TOO_LARGE: return "too_large";
    case Err.NOT_PERMITTED: return "not_permitted";
    case Err.BACKPRESSURE: return "backpressure";
    case Err.NOT_FOUND: return "not_found";
    case Err.WRONG_TYPE: return "wrong_type";
    case Err.OVER_BUDGET: return "over_budget";
    case Err.QUOTA: return "quota";
    case Err.STORAGE: return "storage";
  }
  return "error " + code.toString();
}

// -- log ------------------------------------------------------------------------------------

export enum Level { DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 }

export namespace log {
  /** One line in the agent's log (over its log budget, lines are dropped and counted). */
  export function at(level: Level, text: string): void {
    const n = utf8(text);
    host_log(level, scratch, n);
  }
  export function debug(text: string): void { at(Level.DEBUG, text); }
  export function info(text: string): void { at(Level.INFO, text); }
  export function warn(text: string): void { at(Level.WARN, text); }
  export function error(text: string): void { at(Level.ERROR, text); }
}

// -- scratch buffer: outgoing text as UTF-8, reused by every call ---------------------------

let scratch: usize = 0;
let scratchCap: usize = 0;

function reserve(n: usize): void {
  if (n <= scratchCap) return;
  let cap = scratchCap < 256 ? <usize>256 : scratchCap;
  while (cap < n) cap <<= 1;
  scratch = scratch == 0 ? heap.alloc(cap) : heap.realloc(scratch, cap);
  scratchCap = cap;
}

/** ``text`` as UTF-8 at `scratch`; returns its length. */
function utf8(text: string): i32 {
  const need = <usize>String.UTF8.byteLength(text);
  reserve(need);
  return <i32>String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, scratch);
}

/** Stores the characters of ASCII `text` at `p` as bytes; the address after them. */
function putAscii(p: usize, text: string): usize {
  const n = text.length;
  for (let i = 0; i < n; i++) store<u8>(p + <usize>i, <u8>text.charCodeAt(i));
  return p + <usize>n;
}

// -- sending --------------------------------------------------------------------------------

/** Send one message (a JSON object with `receiver` and `performative`): 0 or an `Err`. */
export function send(json: string): i32 {
  const n = utf8(json);
  return host_send(scratch, n);
}

/** Send `json` after `delayMs` milliseconds (timers, periodic work): 0 or an `Err`. */
export function schedule(delayMs: i64, json: string): i32 {
  const n = utf8(json);
  return host_schedule(delayMs, scratch, n);
}

/** Send `performative` with `content` (JSON text) to the agent named `receiver`. */
export function sendTo(receiver: string, performative: string, content: string): i32 {
  return send(new MessageBuilder(Json.quote(receiver), performative).raw("content", content).build());
}

/**
 * A message built field by field: `new MessageBuilder(receiverJson, "cfp")`, then `str`,
 * `raw` or `int` for each field, then `build()` for its JSON text, or `send()`.
 */
export class MessageBuilder {
  private text: string;

  constructor(receiverJson: string, performative: string) {
    this.text = '{"receiver":' + receiverJson + ',"performative":' + Json.quote(performative);
  }

  /** Add `"key":<raw>`; `raw` is JSON text (a number, an object, a quoted string...). */
  raw(key: string, raw: string): MessageBuilder {
    this.text += "," + Json.quote(key) + ":" + raw;
    return this;
  }

  /** Add `"key":"<text>"` (escaped). */
  str(key: string, text: string): MessageBuilder {
    return this.raw(key, Json.quote(text));
  }

  /** Add `"key":<value>`. */
  int(key: string, value: i64): MessageBuilder {
    return this.raw(key, value.toString());
  }

  build(): string {
    return this.text + "}";
  }

  send(): i32 {
    return send(this.build());
  }
}

// -- key/value ------------------------------------------------------------------------------

export namespace kv {
  /** The value stored under `key` (UTF-8 text), or null if there is none. */
  export function get(key: string): string | null {
    const bytes = getBytes(key);
    return bytes === null ? null : String.UTF8.decode(bytes);
  }

  /** The value stored under `key` as bytes, or null if there is none. */
  export function getBytes(key: string): ArrayBuffer | null {
    const k = String.UTF8.encode(key);
    let cap = 64;
    while (true) {
      const out = new ArrayBuffer(cap);
      const n = host_kv_get(changetype<usize>(k), k.byteLength, changetype<usize>(out), cap);
      if (n < 0) return null; // KV_ABSENT
      if (n <= cap) return out.slice(0, n);
      cap = n; // it did not fit: nothing was copied; ask again with room for all of it
    }
  }

  /** Store `value` (UTF-8 text) under `key`: 0, or `Err.TOO_LARGE`, `Err.QUOTA`, `Err.STORAGE`. */
  export function set(key: string, value: string): i32 {
    return setBytes(key, String.UTF8.encode(value));
  }

  /** Store `value` under `key`: 0 or an `Err`; on an error nothing was kept. */
  export function setBytes(key: string, value: ArrayBuffer): i32 {
    const k = String.UTF8.encode(key);
    return host_kv_set(changetype<usize>(k), k.byteLength, changetype<usize>(value), value.byteLength);
  }

  /** Delete `key`: 0, or `KV_ABSENT` if there was none. */
  export function del(key: string): i32 {
    const k = String.UTF8.encode(key);
    return host_kv_delete(changetype<usize>(k), k.byteLength);
  }
}

// -- the agent's environment (WASI) ---------------------------------------------------------

/** The value of environment variable `name` from the deploy request, or null. */
export function env(name: string): string | null {
  const sizes = memory.data(8, 4);
  if (wasi_environ_sizes_get(sizes, sizes + 4) != 0) return null;
  const count = load<u32>(sizes), size = load<u32>(sizes + 4);
  const ptrs = heap.alloc(<usize>count * 4 + 4), buf = heap.alloc(<usize>size + 1);
  let found: string | null = null;
  if (wasi_environ_get(ptrs, buf) == 0) {
    const prefix = name + "=";
    for (let i: u32 = 0; i < count; i++) {
      const entry = load<usize>(ptrs + <usize>i * 4);
      let end = entry;
      while (load<u8>(end) != 0) end++;
      const text = String.UTF8.decodeUnsafe(entry, end - entry);
      if (text.startsWith(prefix)) {
        found = text.substring(prefix.length);
        break;
      }
    }
  }
  heap.free(ptrs);
  heap.free(buf);
  return found;
}

/** The agent's name (argv[0], as the runtime starts every agent). */
export function agentName(): string {
  const sizes = memory.data(8, 4);
  if (wasi_args_sizes_get(sizes, sizes + 4) != 0 || load<u32>(sizes) == 0) return "";
  const ptrs = heap.alloc(<usize>load<u32>(sizes) * 4), buf = heap.alloc(<usize>load<u32>(sizes + 4) + 1);
  let name = "";
  if (wasi_args_get(ptrs, buf) == 0) {
    const first = load<usize>(ptrs);
    let end = first;
    while (load<u8>(end) != 0) end++;
    name = String.UTF8.decodeUnsafe(first, end - first);
  }
  heap.free(ptrs);
  heap.free(buf);
  return name;
}

// -- the message ----------------------------------------------------------------------------

// Envelope fields `Message` locates in its one pass.
const F_PERFORMATIVE = 0, F_SENDER = 1, F_RECEIVER = 2, F_CONTENT = 3, F_CONVERSATION = 4;
const F_REPLY_WITH = 5, F_IN_REPLY_TO = 6, F_PROTOCOL = 7, F_MESSAGE_ID = 8, FIELDS = 9;

function fieldIndex(ptr: usize, len: usize): i32 {
  // Keys are compared as little-endian words of their bytes (one or two loads, no strings):
  // this runs for every key of every message.
  switch (<i32>len) {
    case 6:
      if (load<u32>(ptr) == 0x646e6573 && load<u16>(ptr, 4) == 0x7265) return F_SENDER; // sender
      break;
    case 7: // content
      if (load<u32>(ptr) == 0x746e6f63 && load<u16>(ptr, 4) == 0x6e65 && load<u8>(ptr, 6) == 0x74) {
        return F_CONTENT;
      }
      break;
    case 8:
      if (load<u64>(ptr) == 0x7265766965636572) return F_RECEIVER; // receiver
      if (load<u64>(ptr) == 0x6c6f636f746f7270) return F_PROTOCOL; // protocol
      break;
    case 10:
      if (load<u16>(ptr, 8) == 0x6874 && load<u64>(ptr) == 0x69775f796c706572) return F_REPLY_WITH;
      if (load<u16>(ptr, 8) == 0x6469 && load<u64>(ptr) == 0x5f6567617373656d) return F_MESSAGE_ID;
      break;
    case 11: // in_reply_to
      if (load<u64>(ptr) == 0x796c7065725f6e69 && load<u16>(ptr, 8) == 0x745f && load<u8>(ptr, 10) == 0x6f) {
        return F_IN_REPLY_TO;
      }
      break;
    case 12: // performative
      if (load<u64>(ptr) == 0x616d726f66726570 && load<u32>(ptr, 8) == 0x65766974) return F_PERFORMATIVE;
      break;
    case 15: // conversation_id
      if (
        load<u64>(ptr) == 0x61737265766e6f63 && load<u32>(ptr, 8) == 0x6e6f6974 &&
        load<u16>(ptr, 12) == 0x695f && load<u8>(ptr, 14) == 0x64
      ) {
        return F_CONVERSATION;
      }
      break;
  }
  return -1;
}

/** Whether the `len` bytes at `ptr` are the ASCII text `text`. */
function bytesAre(ptr: usize, len: usize, text: string): bool {
  if (<usize>text.length != len) return false;
  for (let i: usize = 0; i < len; i++) {
    if (<u32>load<u8>(ptr + i) != <u32>text.charCodeAt(<i32>i)) return false;
  }
  return true;
}

/**
 * One delivered message, read once: the raw JSON extent of each envelope field is found in a
 * single pass over its UTF-8 bytes; a field's text is made only when asked for. Valid only
 * while the handler runs (the next message reuses its buffer).
 */
export class Message {
  /** Where the message's UTF-8 bytes are, and how many. */
  ptr: usize;
  len: i32;
  private starts: StaticArray<i32> = new StaticArray<i32>(FIELDS);
  private ends: StaticArray<i32> = new StaticArray<i32>(FIELDS);

  constructor(ptr: usize, len: i32) {
    this.ptr = ptr;
    this.len = len;
    this.scan();
  }

  /** Read another message into this object (the SDK reuses one `Message` for every call). */
  reset(ptr: usize, len: i32): void {
    this.ptr = ptr;
    this.len = len;
    this.scan();
  }

  private scan(): void {
    for (let i = 0; i < FIELDS; i++) unchecked((this.starts[i] = -1));
    const ptr = this.ptr, end = ptr + <usize>this.len;
    let p = skipWs(ptr, end);
    if (p >= end || load<u8>(p) != 0x7b) return; // not an object: every field absent
    p = skipWs(p + 1, end);
    while (p < end && load<u8>(p) == 0x22) {
      const keyEnd = stringEnd(p, end);
      if (keyEnd >= end) return;
      const index = fieldIndex(p + 1, keyEnd - p - 1);
      p = skipWs(keyEnd + 1, end);
      if (p >= end || load<u8>(p) != 0x3a) return;
      p = skipWs(p + 1, end);
      const valueEnd = skipValue(p, end);
      if (index >= 0 && unchecked(this.starts[index]) < 0) {
        unchecked((this.starts[index] = <i32>(p - ptr)));
        unchecked((this.ends[index] = <i32>(valueEnd - ptr)));
      }
      p = skipWs(valueEnd, end);
      if (p < end && load<u8>(p) == 0x2c) p = skipWs(p + 1, end);
    }
  }

  /** The raw JSON text of envelope field `index`, or null if absent. */
  private rawField(index: i32): string | null {
    const start = unchecked(this.starts[index]);
    if (start < 0) return null;
    return String.UTF8.decodeUnsafe(this.ptr + <usize>start, <usize>(unchecked(this.ends[index]) - start));
  }

  /** Field `index` as a string (a JSON string unescaped), "" if absent or not a string. */
  private textField(index: i32): string {
    const start = unchecked(this.starts[index]);
    if (start < 0) return "";
    const p = this.ptr + <usize>start, n = <usize>(unchecked(this.ends[index]) - start);
    if (n < 2 || load<u8>(p) != 0x22) return "";
    return unescape(p, n);
  }

  /** Whether field `index` is the JSON string `text` (ASCII), without making a string. */
  private fieldIs(index: i32, text: string): bool {
    const start = unchecked(this.starts[index]);
    if (start < 0) return false;
    const p = this.ptr + <usize>start, n = <usize>(unchecked(this.ends[index]) - start);
    return n == <usize>text.length + 2 && load<u8>(p) == 0x22 && bytesAre(p + 1, n - 2, text);
  }

  /** Whether the performative is `performative` (e.g. `m.is("cfp")`); allocates nothing. */
  is(performative: string): bool { return this.fieldIs(F_PERFORMATIVE, performative); }

  get performative(): string { return this.textField(F_PERFORMATIVE); }
  get sender(): string { return this.textField(F_SENDER); }
  get conversationId(): string { return this.textField(F_CONVERSATION); }
  get replyWith(): string { return this.textField(F_REPLY_WITH); }
  get inReplyTo(): string { return this.textField(F_IN_REPLY_TO); }
  get protocol(): string { return this.textField(F_PROTOCOL); }
  get messageId(): string { return this.textField(F_MESSAGE_ID); }

  /** The raw JSON of `receiver` (a string or a list), or null. */
  get receiver(): string | null { return this.rawField(F_RECEIVER); }
  /** The raw JSON text of `content`, "null" when the message has none. */
  get content(): string {
    const raw = this.rawField(F_CONTENT);
    return raw === null ? "null" : raw;
  }
  /** The raw JSON text of the sender's name (quoted), or null. */
  get senderJson(): string | null { return this.rawField(F_SENDER); }

  /** The raw JSON text of any top-level field, or null if absent. */
  field(key: string): string | null {
    const index = fieldIndex(changetype<usize>(String.UTF8.encode(key)), <usize>String.UTF8.byteLength(key));
    if (index >= 0) return this.rawField(index);
    return Json.field(String.UTF8.decodeUnsafe(this.ptr, <usize>this.len), key);
  }

  /** A message to this one's sender (add fields, then `send()`). */
  answer(performative: string): MessageBuilder {
    const sender = this.senderJson;
    return new MessageBuilder(sender === null ? "null" : sender, performative);
  }

  /** Where the raw JSON of `content` starts in memory (0 if absent; see `replyRaw`). */
  get contentPtr(): usize {
    const start = unchecked(this.starts[F_CONTENT]);
    return start < 0 ? 0 : this.ptr + <usize>start;
  }
  /** The byte length of the raw JSON of `content` (0 if absent). */
  get contentLen(): i32 {
    const start = unchecked(this.starts[F_CONTENT]);
    return start < 0 ? 0 : unchecked(this.ends[F_CONTENT]) - start;
  }

  /**
   * Send `performative` with `content` (JSON text) to the sender; the host adds `in_reply_to`
   * and keeps the conversation. 0 or an `Err`. Written straight into the outgoing buffer as
   * UTF-8: no intermediate strings.
   */
  reply(performative: string, content: string): i32 {
    const clen = <usize>String.UTF8.byteLength(content);
    const p = this.replyHead(performative, clen);
    if (p == 0) return Err.MALFORMED;
    const n = String.UTF8.encodeUnsafe(changetype<usize>(content), content.length, p);
    return this.replyEnd(p + n);
  }

  /**
   * `reply` with content given as `len` bytes of raw JSON at `ptr`: e.g. this message's own
   * (`m.replyRaw("inform", m.contentPtr, m.contentLen)`, "null" if `len` is 0). Makes no string.
   */
  replyRaw(performative: string, ptr: usize, len: i32): i32 {
    if (len <= 0) return this.reply(performative, "null");
    const p = this.replyHead(performative, <usize>len);
    if (p == 0) return Err.MALFORMED;
    memory.copy(p, ptr, <usize>len);
    return this.replyEnd(p + <usize>len);
  }

  /** Writes `{"receiver":<sender>,"performative":"<p>","content":` at `scratch`, with room for
   * `room` more bytes and the closing brace; the address after it, or 0 without a sender. */
  private replyHead(performative: string, room: usize): usize {
    const start = unchecked(this.starts[F_SENDER]);
    if (start < 0) return 0;
    const slen = <usize>(unchecked(this.ends[F_SENDER]) - start);
    reserve(slen + <usize>performative.length + room + 48);
    // The fixed parts are stored as little-endian words of their bytes.
    let p = scratch;
    store<u64>(p, 0x766965636572227b); // {"receiver":
    store<u32>(p, 0x3a227265, 8);
    memory.copy(p + 12, this.ptr + <usize>start, slen);
    p += 12 + slen;
    store<u64>(p, 0x726f66726570222c); // ,"performative":"
    store<u64>(p, 0x3a2265766974616d, 8);
    store<u8>(p, 0x22, 16);
    p = putAscii(p + 17, performative);
    store<u64>(p, 0x65746e6f63222c22); // ","content":
    store<u32>(p, 0x3a22746e, 8);
    return p + 12;
  }

  private replyEnd(p: usize): i32 {
    store<u8>(p, 0x7d);
    return host_send(scratch, <i32>(p + 1 - scratch));
  }
}

// -- the exports: `export { caxton_alloc, caxton_handle, caxton_init } from "...";` ---------

let handler: ((m: Message) => i32) | null = null;
let initializer: (() => i32) | null = null;
let inbox: usize = 0;
let inboxCap: usize = 0;

/** Declare the message handler: it returns 0 (handled) or anything else (failed). */
export function onMessage(fn: (m: Message) => i32): void {
  handler = fn;
}

/** Declare a start-up function, run once after `_initialize`; non-zero: the agent fails to start. */
export function onInit(fn: () => i32): void {
  initializer = fn;
}

/** ABI: room for the next message (reused: one message at a time). */
export function caxton_alloc(len: i32): usize {
  const need: usize = len > 0 ? <usize>len : 1;
  if (need > inboxCap) {
    inbox = inbox == 0 ? heap.alloc(need) : heap.realloc(inbox, need);
    inboxCap = need;
  }
  return inbox;
}

let current: Message | null = null;

/** ABI: one message; the declared handler's result. */
export function caxton_handle(ptr: usize, len: i32): i32 {
  const fn = handler;
  if (fn === null) {
    log.error("no handler: call onMessage(...) at the top level of the agent");
    return 1;
  }
  let m = current;
  if (m === null) current = m = new Message(ptr, len);
  else m.reset(ptr, len);
  return fn(m);
}

/** ABI: the declared `onInit` function's result (0 without one). */
export function caxton_init(): i32 {
  const fn = initializer;
  return fn === null ? 0 : fn();
}
