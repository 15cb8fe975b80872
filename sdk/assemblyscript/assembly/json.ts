// A small JSON scanner over UTF-8 bytes, for messages the runtime already validated: it finds
// top-level fields and the extent of values without building a tree, never recurses, and reads
// only inside the range it is given. `Json` offers the same on AssemblyScript strings.

/** The first byte at or after `p` that is not JSON whitespace (or `end`). */
export function skipWs(p: usize, end: usize): usize {
  while (p < end) {
    const c = load<u8>(p);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
    p++;
  }
  return p;
}

/** Given `p` at a string's opening quote: the position of its closing quote (or `end`). */
export function stringEnd(p: usize, end: usize): usize {
  p++;
  while (p < end) {
    // Four bytes at a time while none is a quote or a backslash (a word has a byte equal to
    // b when (w ^ b*0x01010101) has a zero byte: (x - 0x01010101) & ~x & 0x80808080).
    while (p + 4 <= end) {
      const w = load<u32>(p);
      const q = w ^ 0x22222222, b = w ^ 0x5c5c5c5c;
      if ((((q - 0x01010101) & ~q) | ((b - 0x01010101) & ~b)) & 0x80808080) break;
      p += 4;
    }
    if (p >= end) break;
    const c = load<u8>(p);
    if (c == 0x22) return p;
    p += c == 0x5c ? 2 : 1;
  }
  return end;
}

/** Given `p` at a value: the position just after it (or `end`). */
export function skipValue(p: usize, end: usize): usize {
  let depth = 0;
  while (p < end) {
    const c = load<u8>(p);
    if (c == 0x22) {
      p = stringEnd(p, end) + 1;
    } else if (c == 0x7b || c == 0x5b) {
      depth++;
      p++;
    } else if (c == 0x7d || c == 0x5d) {
      if (depth == 0) return p;
      depth--;
      p++;
    } else if (depth == 0 && (c == 0x2c || c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09)) {
      return p;
    } else {
      p++;
    }
    if (depth == 0 && (c == 0x22 || c == 0x7d || c == 0x5d)) return p;
  }
  return end;
}

function hex(c: u32): i32 {
  if (c >= 0x30 && c <= 0x39) return <i32>(c - 0x30);
  if (c >= 0x61 && c <= 0x66) return <i32>(c - 0x61 + 10);
  if (c >= 0x41 && c <= 0x46) return <i32>(c - 0x41 + 10);
  return -1;
}

/** The text of the JSON string at `p` (`n` bytes, quotes included), unescaped. */
export function unescape(p: usize, n: usize): string {
  const start = p + 1, end = p + n - 1;
  let plain = true;
  for (let q = start; q < end; q++) {
    if (load<u8>(q) == 0x5c) {
      plain = false;
      break;
    }
  }
  if (plain) return String.UTF8.decodeUnsafe(start, end - start);
  let out = "";
  let run = start;
  let q = start;
  while (q < end) {
    if (load<u8>(q) != 0x5c) {
      q++;
      continue;
    }
    out += String.UTF8.decodeUnsafe(run, q - run);
    const e = <u32>load<u8>(q + 1);
    q += 2;
    if (e == 0x6e) out += "\n";
    else if (e == 0x74) out += "\t";
    else if (e == 0x72) out += "\r";
    else if (e == 0x62) out += "\b";
    else if (e == 0x66) out += "\f";
    else if (e == 0x75 && q + 4 <= end) {
      let code = 0;
      for (let k: usize = 0; k < 4; k++) code = (code << 4) | hex(<u32>load<u8>(q + k));
      q += 4;
      out += String.fromCharCode(code & 0xffff); // surrogate pairs come as two escapes
    } else out += String.fromCharCode(<i32>e); // \" \\ \/
    run = q;
  }
  return out + String.UTF8.decodeUnsafe(run, end - run);
}

/** JSON helpers on strings: top-level fields of an object's text, quoting. */
export namespace Json {
  /** `text` as a JSON string literal, quotes included. */
  export function quote(text: string): string {
    let simple = true;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c == 0x22 || c == 0x5c) {
        simple = false;
        break;
      }
    }
    if (simple) return '"' + text + '"';
    let out = '"';
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c == 0x22) out += '\\"';
      else if (c == 0x5c) out += "\\\\";
      else if (c == 0x0a) out += "\\n";
      else if (c == 0x0d) out += "\\r";
      else if (c == 0x09) out += "\\t";
      else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
      else out += String.fromCharCode(c);
    }
    return out + '"';
  }

  /** The raw JSON text of top-level field `key` of the object `json`, or null. */
  export function field(json: string, key: string): string | null {
    const bytes = String.UTF8.encode(json);
    const ptr = changetype<usize>(bytes), end = ptr + <usize>bytes.byteLength;
    const want = String.UTF8.encode(key);
    const wptr = changetype<usize>(want), wlen = <usize>want.byteLength;
    let p = skipWs(ptr, end);
    if (p >= end || load<u8>(p) != 0x7b) return null;
    p = skipWs(p + 1, end);
    while (p < end && load<u8>(p) == 0x22) {
      const keyEnd = stringEnd(p, end);
      if (keyEnd >= end) return null;
      const same = keyEnd - p - 1 == wlen && memory.compare(p + 1, wptr, wlen) == 0;
      p = skipWs(keyEnd + 1, end);
      if (p >= end || load<u8>(p) != 0x3a) return null;
      p = skipWs(p + 1, end);
      const valueEnd = skipValue(p, end);
      if (same) return String.UTF8.decodeUnsafe(p, valueEnd - p);
      p = skipWs(valueEnd, end);
      if (p < end && load<u8>(p) == 0x2c) p = skipWs(p + 1, end);
    }
    return null;
  }

  /** Top-level string field `key` of `json`, unescaped, or null (absent or not a string). */
  export function getString(json: string, key: string): string | null {
    const raw = field(json, key);
    if (raw === null || raw.length < 2 || raw.charCodeAt(0) != 0x22) return null;
    const bytes = String.UTF8.encode(raw);
    return unescape(changetype<usize>(bytes), <usize>bytes.byteLength);
  }

  /** Whether top-level field `key` of `json` is an integer (then `getInt` returns it). */
  export function hasInt(json: string, key: string): bool {
    const raw = field(json, key);
    if (raw === null || raw.length == 0) return false;
    for (let i = raw.charCodeAt(0) == 0x2d ? 1 : 0; i < raw.length; i++) {
      const c = raw.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return false;
    }
    return raw.length > (raw.charCodeAt(0) == 0x2d ? 1 : 0) && raw.length <= 19;
  }

  /** Top-level integer field `key` of `json`, or `fallback` if absent or not an integer. */
  export function getInt(json: string, key: string, fallback: i64 = 0): i64 {
    if (!hasInt(json, key)) return fallback;
    return I64.parseInt(<string>field(json, key), 10);
  }
}
