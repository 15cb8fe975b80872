//! echo: replies `inform` to the sender with the content it got (`null` if none).
//!
//!   caxton agent deploy examples/agents/rust/echo.wasm --name echo-rs
//!   caxton message send --to echo-rs --performative request --content '{"hello":"world"}' --wait 5s
use caxton::{Error, Message};

fn handle(msg: &Message) -> Result<(), Error> {
    msg.reply("inform", msg.content())
}

caxton::agent!(handle);
