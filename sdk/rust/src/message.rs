//! The message an agent handles (read once, fields borrowed) and the messages it sends.

use std::borrow::Cow;

use crate::{json, Error};

/// One inbound message, read once: every envelope field is the raw JSON text of that field,
/// borrowed from the message (nothing is copied). Absent fields are `None`.
#[derive(Clone, Debug, Default)]
pub struct Message<'a> {
    /// The whole message as the runtime delivered it.
    pub raw: &'a str,
    pub performative: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub receiver: Option<&'a str>,
    pub content: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub reply_with: Option<&'a str>,
    pub in_reply_to: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub ontology: Option<&'a str>,
    pub language: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

fn unquoted(raw: Option<&str>) -> Option<&str> {
    // Names, performatives and ids never contain escapes: strip the quotes without copying.
    let raw = raw?;
    if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        Some(&raw[1..raw.len() - 1])
    } else {
        None
    }
}

impl<'a> Message<'a> {
    /// Read the envelope of `raw` in one pass over its top-level fields.
    /// [`Error::Malformed`] if it is not a JSON object.
    pub fn parse(raw: &'a str) -> Result<Message<'a>, Error> {
        if !json::is_object(raw) {
            return Err(Error::Malformed);
        }
        let mut m = Message {
            raw,
            ..Message::default()
        };
        for (key, value) in json::fields(raw) {
            let slot = match key {
                "performative" => &mut m.performative,
                "sender" => &mut m.sender,
                "receiver" => &mut m.receiver,
                "content" => &mut m.content,
                "conversation_id" => &mut m.conversation_id,
                "reply_with" => &mut m.reply_with,
                "in_reply_to" => &mut m.in_reply_to,
                "protocol" => &mut m.protocol,
                "ontology" => &mut m.ontology,
                "language" => &mut m.language,
                "message_id" => &mut m.message_id,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        Ok(m)
    }

    /// The performative (`"request"`, `"cfp"`, ...); `""` if absent.
    pub fn performative(&self) -> &'a str {
        unquoted(self.performative).unwrap_or("")
    }

    /// The sender's name, if any (the runtime always sets one).
    pub fn sender(&self) -> Option<&'a str> {
        unquoted(self.sender)
    }

    /// The content's raw JSON text; `null` if the message has none.
    pub fn content(&self) -> &'a str {
        self.content.unwrap_or("null")
    }

    /// A string field of the content (an object), unescaped.
    pub fn content_str(&self, key: &str) -> Option<Cow<'a, str>> {
        json::get_str(self.content?, key)
    }

    /// An integer field of the content (an object).
    pub fn content_i64(&self, key: &str) -> Option<i64> {
        json::get_i64(self.content?, key)
    }

    /// The raw JSON of a field of the content (an object).
    pub fn content_field(&self, key: &str) -> Option<&'a str> {
        json::field(self.content?, key)
    }

    /// The content as a string if it is a JSON string.
    pub fn content_as_str(&self) -> Option<Cow<'a, str>> {
        json::string_value(self.content?)
    }

    /// Start an answer to the sender: receiver = the sender (the host fills in
    /// `in_reply_to` from this message's `reply_with` and keeps the conversation).
    pub fn answer(&self, performative: &str) -> Result<Outgoing, Error> {
        let sender = self.sender.ok_or(Error::Malformed)?;
        Ok(Outgoing::to_raw(sender, performative))
    }

    /// Send `performative` with `content` (raw JSON text) to the sender.
    pub fn reply(&self, performative: &str, content: &str) -> Result<(), Error> {
        self.answer(performative)?.content(content).send()
    }

    /// The content decoded into `T` (feature `serde`).
    #[cfg(feature = "serde")]
    pub fn content_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.content())
    }
}

/// A message being built: `{"receiver":...,"performative":...,...}`, then sent or scheduled.
///
/// ```ignore
/// Outgoing::to("bidder-a", "cfp").str("protocol", "fipa-contract-net")
///     .content(r#"{"task":"paint"}"#).send()?;
/// ```
#[derive(Clone, Debug)]
pub struct Outgoing {
    buf: String,
}

impl Outgoing {
    /// A message to the agent (or client) `receiver`.
    pub fn to(receiver: &str, performative: &str) -> Outgoing {
        let mut buf = String::with_capacity(128);
        buf.push_str("{\"receiver\":");
        json::push_str(&mut buf, receiver);
        Outgoing::finish_head(buf, performative)
    }

    /// A message to `receiver` given as raw JSON (a string, or a list of names).
    pub fn to_raw(receiver: &str, performative: &str) -> Outgoing {
        let mut buf = String::with_capacity(96 + receiver.len());
        buf.push_str("{\"receiver\":");
        buf.push_str(receiver);
        Outgoing::finish_head(buf, performative)
    }

    fn finish_head(mut buf: String, performative: &str) -> Outgoing {
        buf.push_str(",\"performative\":");
        json::push_str(&mut buf, performative);
        Outgoing { buf }
    }

    /// Add a field whose value is raw JSON text (`"content"`, a number, an object ...).
    pub fn raw(mut self, key: &str, raw_json: &str) -> Outgoing {
        self.buf.push(',');
        json::push_str(&mut self.buf, key);
        self.buf.push(':');
        self.buf.push_str(raw_json);
        self
    }

    /// Add a string field (escaped for you).
    pub fn str(mut self, key: &str, value: &str) -> Outgoing {
        self.buf.push(',');
        json::push_str(&mut self.buf, key);
        self.buf.push(':');
        json::push_str(&mut self.buf, value);
        self
    }

    /// Set the content (raw JSON text).
    pub fn content(self, raw_json: &str) -> Outgoing {
        self.raw("content", raw_json)
    }

    /// Set the content to `value` serialised as JSON (feature `serde`).
    #[cfg(feature = "serde")]
    pub fn content_of<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Outgoing, Error> {
        let text = serde_json::to_string(value).map_err(|_| Error::Malformed)?;
        Ok(self.raw("content", &text))
    }

    /// The message's JSON text.
    pub fn build(mut self) -> String {
        self.buf.push('}');
        self.buf
    }

    /// Send it now ([`crate::send`]).
    pub fn send(self) -> Result<(), Error> {
        crate::send(&self.build())
    }

    /// Send it after `delay_ms` milliseconds ([`crate::schedule`]).
    pub fn schedule(self, delay_ms: u64) -> Result<(), Error> {
        crate::schedule(delay_ms, &self.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_once() {
        let raw = r#"{"sender":"client-1","performative":"request","content":{"n":2,"s":"a\"b"},"reply_with":"r1","extra":[1]}"#;
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.performative(), "request");
        assert_eq!(m.sender(), Some("client-1"));
        assert_eq!(m.content_i64("n"), Some(2));
        assert_eq!(m.content_str("s").as_deref(), Some("a\"b"));
        assert_eq!(m.reply_with, Some("\"r1\""));
        assert_eq!(m.in_reply_to, None);
        assert!(Message::parse("[1]").is_err());
    }

    #[test]
    fn builds_messages() {
        let m = Message::parse(r#"{"sender":"c","content":null}"#).unwrap();
        let text = m
            .answer("inform")
            .unwrap()
            .str("protocol", "p\"")
            .content("{}")
            .build();
        assert_eq!(
            text,
            r#"{"receiver":"c","performative":"inform","protocol":"p\"","content":{}}"#
        );
    }
}
