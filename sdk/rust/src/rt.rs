//! What `caxton::agent!` expands to: the `caxton_alloc` buffer, the handler call, the panic hook.
//! Not for direct use.

use std::cell::UnsafeCell;
use std::fmt::Display;
use std::sync::Once;

use crate::{log, Level, Message};

/// The one inbound buffer: each `caxton_alloc` replaces (frees) the previous message's.
struct Inbox(UnsafeCell<Vec<u8>>);

// An agent instance runs one thread and handles one message at a time.
unsafe impl Sync for Inbox {}

static INBOX: Inbox = Inbox(UnsafeCell::new(Vec::new()));
static HOOK: Once = Once::new();

/// Route panics to the agent's log (level error) with their text and place. The panic then
/// traps (wasm panics abort): that message fails and the agent restarts.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let text: &str = if let Some(s) = payload.downcast_ref::<&str>() {
                s
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s
            } else {
                "Box<dyn Any>"
            };
            let line = match info.location() {
                Some(at) => format!(
                    "panicked at {}:{}:{}: {}",
                    at.file(),
                    at.line(),
                    at.column(),
                    text
                ),
                None => format!("panicked: {}", text),
            };
            log(Level::Error, &line);
        }));
    });
}

pub fn alloc(len: i32) -> *mut u8 {
    install_panic_hook();
    // Safety: one message at a time; the previous buffer is no longer in use.
    let inbox = unsafe { &mut *INBOX.0.get() };
    let len = len.max(0) as usize;
    *inbox = Vec::with_capacity(len + 1);
    inbox.as_mut_ptr()
}

/// # Safety
/// `ptr..ptr + len` is the buffer `alloc` returned, filled by the host.
pub unsafe fn handle<E: Display>(
    ptr: *const u8,
    len: i32,
    f: fn(&Message<'_>) -> Result<(), E>,
) -> i32 {
    let bytes = std::slice::from_raw_parts(ptr, len.max(0) as usize);
    // The host delivers only messages it parsed as JSON from UTF-8 (agent ABI v1): checking
    // again would cost a pass over every message.
    let text = std::str::from_utf8_unchecked(bytes);
    let msg = match Message::parse(text) {
        Ok(msg) => msg,
        Err(_) => {
            log(Level::Error, "the message is not a JSON object");
            return 1;
        }
    };
    match f(&msg) {
        Ok(()) => 0,
        Err(e) => {
            log(Level::Error, &format!("failed: {}", e));
            1
        }
    }
}

pub fn init<E: Display>(f: fn() -> Result<(), E>) -> i32 {
    install_panic_hook();
    match f() {
        Ok(()) => 0,
        Err(e) => {
            log(Level::Error, &format!("init failed: {}", e));
            1
        }
    }
}
