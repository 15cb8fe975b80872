//! The host functions (module `caxton`) and the safe calls over them: send, schedule, kv, log.

use crate::Error;

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "caxton")]
    extern "C" {
        pub fn send(ptr: *const u8, len: i32) -> i32;
        pub fn log(level: i32, ptr: *const u8, len: i32);
        pub fn kv_get(kptr: *const u8, klen: i32, vptr: *mut u8, vcap: i32) -> i32;
        pub fn kv_set(kptr: *const u8, klen: i32, vptr: *const u8, vlen: i32) -> i32;
        pub fn kv_delete(kptr: *const u8, klen: i32) -> i32;
        pub fn schedule(delay_ms: i64, ptr: *const u8, len: i32) -> i32;
    }
}

/// Off wasm (unit tests of the JSON helpers on the build machine) there is no host: every
/// call answers "not permitted" and log lines go to stderr.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod imports {
    pub unsafe fn send(_: *const u8, _: i32) -> i32 {
        -3
    }
    pub unsafe fn log(level: i32, ptr: *const u8, len: i32) {
        let text = std::slice::from_raw_parts(ptr, len as usize);
        eprintln!("[{}] {}", level, String::from_utf8_lossy(text));
    }
    pub unsafe fn kv_get(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
        -3
    }
    pub unsafe fn kv_set(_: *const u8, _: i32, _: *const u8, _: i32) -> i32 {
        -3
    }
    pub unsafe fn kv_delete(_: *const u8, _: i32) -> i32 {
        -3
    }
    pub unsafe fn schedule(_: i64, _: *const u8, _: i32) -> i32 {
        -3
    }
}

fn len32(bytes: &[u8]) -> Result<i32, Error> {
    if bytes.len() > i32::MAX as usize {
        Err(Error::TooLarge)
    } else {
        Ok(bytes.len() as i32)
    }
}

fn status(rc: i32) -> Result<(), Error> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::from_code(rc))
    }
}

/// Send one message: a JSON object with at least `receiver` and `performative`.
///
/// The host sets `sender`, `message_id`, the current conversation (unless the message sets
/// one) and `in_reply_to` for an answer to the current sender. `Ok` means queued, not
/// delivered. Most agents build the JSON with [`crate::Outgoing`] or [`crate::Message::reply`].
pub fn send(json: &str) -> Result<(), Error> {
    let len = len32(json.as_bytes())?;
    status(unsafe { imports::send(json.as_ptr(), len) })
}

/// Send `json` after `delay_ms` milliseconds (timers: schedule a message to yourself).
/// Codes as [`send`]; [`Error::Quota`] when the agent has too many timers pending.
pub fn schedule(delay_ms: u64, json: &str) -> Result<(), Error> {
    let len = len32(json.as_bytes())?;
    let delay = if delay_ms > i64::MAX as u64 {
        i64::MAX
    } else {
        delay_ms as i64
    };
    status(unsafe { imports::schedule(delay, json.as_ptr(), len) })
}

/// Log levels of the agent's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

/// Write one line to the agent's log (`caxton debug --agent-id NAME` shows the recent ones).
pub fn log(level: Level, text: &str) {
    let n = if text.len() > i32::MAX as usize {
        i32::MAX
    } else {
        text.len() as i32
    };
    unsafe { imports::log(level as i32, text.as_ptr(), n) }
}

/// The agent's durable key/value store: per agent, survives restarts.
///
/// Keys are text (up to 1 KiB), values are bytes (up to the node's message size limit).
pub mod kv {
    use super::{imports, len32, status};
    use crate::Error;

    /// The value of `key`, or `None` if it is absent.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
        let klen = len32(key.as_bytes())?;
        let mut buf: Vec<u8> = Vec::with_capacity(64);
        loop {
            let cap = buf.capacity().min(i32::MAX as usize) as i32;
            let n = unsafe { imports::kv_get(key.as_ptr(), klen, buf.as_mut_ptr(), cap) };
            if n == -1 {
                return Ok(None);
            }
            if n < 0 {
                return Err(Error::from_code(n));
            }
            let n = n as usize;
            if n <= buf.capacity() {
                // The host copied exactly n bytes into the buffer.
                unsafe { buf.set_len(n) };
                return Ok(Some(buf));
            }
            buf.reserve_exact(n);
        }
    }

    /// The value of `key` as UTF-8 text; `Ok(None)` if absent, [`Error::Malformed`] if the
    /// value is not UTF-8.
    pub fn get_string(key: &str) -> Result<Option<String>, Error> {
        match get(key)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Error::Malformed),
        }
    }

    /// Store `value` under `key`. `Ok` means it is on disk; on any error nothing was kept
    /// ([`Error::Quota`], [`Error::Storage`], [`Error::TooLarge`], ...).
    pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
        let klen = len32(key.as_bytes())?;
        let vlen = len32(value)?;
        status(unsafe { imports::kv_set(key.as_ptr(), klen, value.as_ptr(), vlen) })
    }

    /// Delete `key`: `Ok(true)` if it was there, `Ok(false)` if it was absent,
    /// [`Error::Storage`] if the node cannot write (the key is still there).
    pub fn delete(key: &str) -> Result<bool, Error> {
        let klen = len32(key.as_bytes())?;
        match unsafe { imports::kv_delete(key.as_ptr(), klen) } {
            0 => Ok(true),
            -1 => Ok(false),
            rc => Err(Error::from_code(rc)),
        }
    }
}
