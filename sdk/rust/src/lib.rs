//! The Rust SDK for [Caxton](https://github.com/) agents (agent ABI version 1).
//!
//! An agent is a `cdylib` built for `wasm32-wasi` (Rust 1.63-1.77, Debian 12) or
//! `wasm32-wasip1` (Rust 1.78 and later). One line declares it:
//!
//! ```ignore
//! use caxton::{Error, Message};
//!
//! fn handle(msg: &Message) -> Result<(), Error> {
//!     msg.reply("inform", msg.content())
//! }
//!
//! caxton::agent!(handle);
//! ```
//!
//! What you get:
//!
//! - [`Message`]: the message, read once; envelope fields borrowed as raw JSON, helpers
//!   for the content ([`Message::content_str`], [`Message::content_i64`]).
//! - [`Message::reply`], [`Outgoing`] (build a message), [`send`], [`schedule`].
//! - [`kv`]: `get` / `set` / `delete` on the agent's durable store.
//! - [`log`] at four [`Level`]s, and the [`info!`]-style macros that format.
//! - [`Error`]: one variant per host error code.
//! - Panics: their text and place go to the agent's log at level error; the message fails
//!   and the agent restarts with a fresh instance.
//! - Feature `serde`: [`Message::content_as`] and [`Outgoing::content_of`].
//!
//! Build settings (see `sdk/rust/README.md`): `crate-type = ["cdylib"]`, `panic = "abort"`,
//! `-C link-arg=-zstack-size=32768`.

mod host;
pub mod json;
mod message;
#[doc(hidden)]
pub mod rt;

pub use host::{kv, log, schedule, send, Level};
pub use message::{Message, Outgoing};

use std::fmt;

/// The agent ABI version this crate implements.
pub const ABI_VERSION: u32 = 1;

/// An error code of a host call. Every code the host returns has its own variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// -1: not a valid message (or key), no `receiver`/`performative`, nested too deep, or a
    /// pointer outside memory.
    Malformed,
    /// -2: above the message size limit or the kv key/value limits.
    TooLarge,
    /// -3: called outside a handler (`caxton_handle` / `caxton_init`).
    NotPermitted,
    /// -4: the receiver's mailbox is full; nothing was kept: try again later (`schedule`).
    Backpressure,
    /// -7: over the agent's send budget (per message or per second); nothing was sent.
    OverBudget,
    /// -8: over the agent's kv quota (keys or bytes) or its pending timers; nothing was kept.
    Quota,
    /// -9: the node cannot write its store (disk full); nothing was changed.
    Storage,
    /// A code this SDK does not know (a newer host).
    Other(i32),
}

impl Error {
    /// The error for a host return code (`code` < 0).
    pub fn from_code(code: i32) -> Error {
        match code {
            -1 => Error::Malformed,
            -2 => Error::TooLarge,
            -3 => Error::NotPermitted,
            -4 => Error::Backpressure,
            -7 => Error::OverBudget,
            -8 => Error::Quota,
            -9 => Error::Storage,
            other => Error::Other(other),
        }
    }

    /// The host's code for this error.
    pub fn code(self) -> i32 {
        match self {
            Error::Malformed => -1,
            Error::TooLarge => -2,
            Error::NotPermitted => -3,
            Error::Backpressure => -4,
            Error::OverBudget => -7,
            Error::Quota => -8,
            Error::Storage => -9,
            Error::Other(code) => code,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Error::Malformed => "malformed",
            Error::TooLarge => "too large",
            Error::NotPermitted => "not permitted",
            Error::Backpressure => "backpressure: the receiver's mailbox is full",
            Error::OverBudget => "over the agent's send budget",
            Error::Quota => "over the agent's quota",
            Error::Storage => "the node cannot write its store",
            Error::Other(_) => "host error",
        };
        write!(f, "{} ({})", what, self.code())
    }
}

impl std::error::Error for Error {}

/// Log at level debug, with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)*)) };
}

/// Log at level info, with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &::std::format!($($arg)*)) };
}

/// Log at level warn, with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)*)) };
}

/// Log at level error, with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log($crate::Level::Error, &::std::format!($($arg)*)) };
}

/// Declare the agent: `caxton::agent!(handle);` or `caxton::agent!(handle, init = start);`.
///
/// `handle: fn(&Message) -> Result<(), E>` runs for every message (`Err` fails it: the
/// error is logged, the message is dead-lettered and a sender that asked for a reply gets
/// `failure`). `start: fn() -> Result<(), E>` runs once when the instance starts (`Err`:
/// the agent fails to start). `E` is any type that implements `Display`. This exports
/// `caxton_alloc`, `caxton_handle` (and `caxton_init`) and installs the panic hook.
#[macro_export]
macro_rules! agent {
    ($handle:path $(, init = $init:path)? $(,)?) => {
        #[no_mangle]
        pub extern "C" fn caxton_alloc(len: i32) -> *mut u8 {
            $crate::rt::alloc(len)
        }

        #[no_mangle]
        pub extern "C" fn caxton_handle(ptr: *const u8, len: i32) -> i32 {
            // Safety: the host wrote len bytes at the pointer caxton_alloc returned.
            unsafe { $crate::rt::handle(ptr, len, $handle) }
        }

        $(
            #[no_mangle]
            pub extern "C" fn caxton_init() -> i32 {
                $crate::rt::init($init)
            }
        )?
    };
}
