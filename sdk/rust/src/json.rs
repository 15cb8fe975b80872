//! A small JSON scanner for messages the runtime already validated, and JSON text helpers.
//!
//! Nothing here allocates unless it says so, nothing recurses, and nothing reads outside the
//! text it is given. Values are handed out as their raw JSON text (`"abc"`, `42`, `{...}`);
//! look inside an object value by calling [`field`] again on it.

use std::borrow::Cow;

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string starting at `b[i] == b'"'`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// The end of the JSON value starting at `b[i]` (no whitespace before it).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            if j == i {
                None
            } else {
                Some(j)
            }
        }
    }
}

/// Iterator over the top-level fields of a JSON object: `(raw key without quotes, raw value)`.
///
/// The key is the text between the quotes as written (escapes are not decoded: field names
/// of messages never need them). Stops at the end of the object or at malformed text.
pub struct Fields<'a> {
    text: &'a str,
    pos: usize,
}

/// The top-level fields of the object `json` (nothing if it is not an object).
pub fn fields(json: &str) -> Fields<'_> {
    let b = json.as_bytes();
    let start = skip_ws(b, 0);
    let pos = if b.get(start) == Some(&b'{') {
        start + 1
    } else {
        b.len()
    };
    Fields { text: json, pos }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        let mut i = skip_ws(b, self.pos);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
        if b.get(i) != Some(&b'"') {
            self.pos = b.len();
            return None;
        }
        let kend = string_end(b, i)?;
        let key = &self.text[i + 1..kend - 1];
        i = skip_ws(b, kend);
        if b.get(i) != Some(&b':') {
            self.pos = b.len();
            return None;
        }
        let vstart = skip_ws(b, i + 1);
        let vend = match value_end(b, vstart) {
            Some(end) => end,
            None => {
                self.pos = b.len();
                return None;
            }
        };
        self.pos = vend;
        Some((key, &self.text[vstart..vend]))
    }
}

/// The raw JSON text of the top-level field `key` of the object `json` (the first one wins).
pub fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    fields(json).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// True if `json` (raw text) is an object.
pub fn is_object(json: &str) -> bool {
    json.trim_start().starts_with('{')
}

/// The value of a raw JSON string (`"a\nb"` -> `a` newline `b`); `None` if `raw` is not a
/// string. Borrows when there is nothing to unescape.
pub fn string_value(raw: &str) -> Option<Cow<'_, str>> {
    let raw = raw.trim();
    if raw.len() < 2 || !raw.starts_with('"') || !raw.ends_with('"') {
        return None;
    }
    let inner = &raw[1..raw.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hi = hex4(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex4(&mut chars)?;
                    0x10000 + ((hi - 0xD800) << 10) + (lo.checked_sub(0xDC00)? & 0x3FF)
                } else {
                    hi
                };
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

/// The value of a raw JSON integer (`42`, `-7`); `None` for anything else (`4.5`, `"4"`).
pub fn int_value(raw: &str) -> Option<i64> {
    raw.trim().parse::<i64>().ok()
}

/// The string field `key` of the object `json`, unescaped.
pub fn get_str<'a>(json: &'a str, key: &str) -> Option<Cow<'a, str>> {
    field(json, key).and_then(string_value)
}

/// The integer field `key` of the object `json`.
pub fn get_i64(json: &str, key: &str) -> Option<i64> {
    field(json, key).and_then(int_value)
}

/// Append `text` as a JSON string (with its quotes) to `out`.
pub fn push_str(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&text[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// `text` as a JSON string, with its quotes.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_str(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_top_level_fields_only() {
        let j = r#" {"a": {"b": 1, "c": "}"}, "b" : [1, {"x": "]"}], "c":"q\"\\", "d": -12 }"#;
        assert_eq!(field(j, "a"), Some(r#"{"b": 1, "c": "}"}"#));
        assert_eq!(field(j, "b"), Some(r#"[1, {"x": "]"}]"#));
        assert_eq!(get_str(j, "c").as_deref(), Some("q\"\\"));
        assert_eq!(get_i64(j, "d"), Some(-12));
        assert_eq!(field(j, "x"), None);
        assert_eq!(fields(j).count(), 4);
    }

    #[test]
    fn unescapes_and_quotes_round_trip() {
        let text = "tab\t \"quote\" back\\slash \u{1} é 😀";
        let raw = quote(text);
        assert_eq!(raw, "\"tab\\t \\\"quote\\\" back\\\\slash \\u0001 é 😀\"");
        assert_eq!(string_value(&raw).unwrap(), text);
        assert_eq!(string_value(r#""\ud83d\ude00\u00e9""#).unwrap(), "😀é");
    }

    #[test]
    fn malformed_text_ends_the_scan() {
        assert_eq!(fields("[1,2]").count(), 0);
        assert_eq!(field(r#"{"a":"unterminated"#, "a"), None);
        assert_eq!(int_value("4.5"), None);
    }
}
