//! pong: the benchmark peer of examples/agents/ping.c. Answers every `request` with `inform`
//! and the same content; other performatives are ignored.
use caxton::{Error, Message};

fn handle(msg: &Message) -> Result<(), Error> {
    if msg.performative() != "request" {
        return Ok(());
    }
    msg.reply("inform", msg.content())
}

caxton::agent!(handle);
