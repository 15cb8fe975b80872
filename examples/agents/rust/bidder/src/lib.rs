//! bidder: the participant of the FIPA contract-net protocol, in Rust. It plays against the
//! C `manager` (examples/agents/manager.c) exactly like `bidder.c`, so Rust and C bidders can
//! compete in one negotiation.
//!
//! Deploy one module several times with different environments:
//!
//!   PRICE=<int>  answer every `cfp` with `propose` {"price":<int>}
//!   REFUSE=1     answer every `cfp` with `refuse` {"reason":"not taking work"}
//!   neither      propose 10 + (FNV-1a hash of the agent's name) % 90
//!
//! cfp -> propose (reply_with "<name>-p<k>") or refuse; accept_proposal {"task":T} -> inform
//! {"done":T,"price":N}; reject_proposal -> nothing (logged); other answers are ignored;
//! anything else -> not_understood.
//!
//!   caxton agent deploy examples/agents/rust/bidder.wasm --name bidder-rs --env PRICE=15
use std::cell::RefCell;

use caxton::{Error, Level, Message};

const PROTOCOL: &str = "fipa-contract-net";

struct Config {
    name: String,
    refuses: bool,
    price: i64,
    proposals: u32,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn configure() -> Config {
    // argv[0] is the agent's name; the environment is what the deploy gave.
    let name = std::env::args()
        .next()
        .unwrap_or_else(|| "bidder".to_string());
    if std::env::var("REFUSE").ok().as_deref() == Some("1") {
        caxton::log(Level::Info, "bidder: REFUSE=1, refusing every cfp");
        return Config {
            name,
            refuses: true,
            price: 0,
            proposals: 0,
        };
    }
    if let Ok(text) = std::env::var("PRICE") {
        match text.parse::<i64>() {
            Ok(price) if price >= 0 => {
                return Config {
                    name,
                    refuses: false,
                    price,
                    proposals: 0,
                }
            }
            _ => caxton::log(
                Level::Warn,
                "bidder: PRICE is not a non-negative integer, ignored",
            ),
        }
    }
    let mut hash: u32 = 2_166_136_261;
    for byte in name.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(16_777_619);
    }
    let price = 10 + i64::from(hash % 90);
    Config {
        name,
        refuses: false,
        price,
        proposals: 0,
    }
}

fn on_cfp(msg: &Message, config: &mut Config) -> Result<(), Error> {
    let answer = msg.answer(if config.refuses { "refuse" } else { "propose" })?;
    let answer = answer.str("protocol", PROTOCOL);
    if config.refuses {
        return answer.content(r#"{"reason":"not taking work"}"#).send();
    }
    config.proposals += 1;
    let reply_with = format!("{}-p{}", config.name, config.proposals);
    let content = format!("{{\"price\":{}}}", config.price);
    answer
        .str("reply_with", &reply_with)
        .content(&content)
        .send()
}

fn on_accept(msg: &Message, config: &Config) -> Result<(), Error> {
    let answer = msg.answer(if config.refuses { "failure" } else { "inform" })?;
    let answer = answer.str("protocol", PROTOCOL);
    if config.refuses {
        return answer
            .content(r#"{"reason":"no proposal was made"}"#)
            .send();
    }
    let task = msg.content_field("task").unwrap_or("null");
    let content = format!("{{\"done\":{},\"price\":{}}}", task, config.price);
    answer.content(&content).send()?;
    caxton::info!("bidder: won a contract at {}, task done", config.price);
    Ok(())
}

fn handle(msg: &Message) -> Result<(), Error> {
    CONFIG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let config = slot.get_or_insert_with(configure);
        match msg.performative() {
            "cfp" => on_cfp(msg, config),
            "accept_proposal" => on_accept(msg, config),
            "reject_proposal" => {
                caxton::log(Level::Info, "bidder: proposal rejected");
                Ok(())
            }
            "inform" | "failure" | "not_understood" | "agree" | "refuse" | "propose" => {
                caxton::log(Level::Warn, "bidder: an unexpected answer, ignored");
                Ok(())
            }
            _ => msg
                .answer("not_understood")?
                .str("protocol", PROTOCOL)
                .content(r#"{"error":"a bidder answers cfp, accept_proposal and reject_proposal"}"#)
                .send(),
        }
    })
}

caxton::agent!(handle);
