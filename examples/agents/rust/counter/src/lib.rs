//! counter: counts the messages it handles, twice (the Rust twin of counter.c).
//!
//! - `memory_count` is a static (linear memory): it survives hibernation (the runtime saves
//!   the instance) but starts again at 0 when the agent restarts with a fresh instance.
//! - `kv_count` is kept in the durable key/value store under `count` (decimal text): it
//!   survives restarts.
//!
//! Every message adds one to both and gets `inform` `{"memory_count":N,"kv_count":M}`;
//! content `{"op":"reset"}` sets both to 0.
use std::sync::atomic::{AtomicI64, Ordering};

use caxton::{kv, Error, Message};

static MEMORY_COUNT: AtomicI64 = AtomicI64::new(0);

fn reply_counts(msg: &Message, memory: i64, stored: i64) -> Result<(), Error> {
    let content = format!("{{\"memory_count\":{},\"kv_count\":{}}}", memory, stored);
    msg.reply("inform", &content)
}

fn handle(msg: &Message) -> Result<(), Error> {
    if msg.content_str("op").as_deref() == Some("reset") {
        MEMORY_COUNT.store(0, Ordering::Relaxed);
        kv::delete("count")?;
        caxton::info!("counter: reset");
        return reply_counts(msg, 0, 0);
    }
    let memory = MEMORY_COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    // An absent or unreadable count starts again from 0.
    let stored = kv::get_string("count")?
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
        + 1;
    kv::set("count", stored.to_string().as_bytes())?;
    reply_counts(msg, memory, stored)
}

caxton::agent!(handle);
