// bidder (AssemblyScript): the participant of the FIPA contract-net protocol, answering the C
// manager (examples/agents/manager.c) exactly as examples/agents/bidder.c does.
//
// Deploy one module several times with different environments:
//   PRICE=<int>  answer every `cfp` with `propose` {"price":<int>}
//   REFUSE=1     answer every `cfp` with `refuse` {"reason":"not taking work"}
//   neither      propose 10 + (FNV-1a hash of the agent's name) % 90
//
//   cfp {"task":T}                 -> propose {"price":N} (reply_with "<name>-p<k>") or refuse
//   accept_proposal {"task":T,...} -> inform {"done":T,"price":N}
//                                     (failure {"reason":"no proposal was made"} if REFUSE=1)
//   reject_proposal                -> nothing (logged)
//   inform, failure, not_understood, agree, refuse, propose -> nothing (logged)
//   anything else                  -> not_understood {"error":...}
//
// Every answer goes to the sender with "protocol":"fipa-contract-net"; the host keeps the
// conversation and sets in_reply_to from the sender's reply_with.
//
//   caxton agent deploy examples/agents/assemblyscript/bidder.wasm --name as-bidder --env PRICE=15
import { Json, Message, agentName, env, log, onInit, onMessage } from "../../../sdk/assemblyscript/assembly";
export { caxton_alloc, caxton_handle, caxton_init } from "../../../sdk/assemblyscript/assembly";

const PROTOCOL = "fipa-contract-net";

let refuses = false;
let price: i64 = 0;
let name = "bidder";
let proposals = 0;

/** Decide once, at start-up, from the environment (and the name). */
onInit((): i32 => {
  const argv0 = agentName();
  if (argv0.length > 0) name = argv0;
  const refuse = env("REFUSE");
  if (refuse !== null && refuse == "1") {
    refuses = true;
    log.info("bidder: REFUSE=1, refusing every cfp");
    return 0;
  }
  const p = env("PRICE");
  if (p !== null && p.length > 0 && p.length <= 12 && isDigits(p)) {
    price = I64.parseInt(p, 10);
    return 0;
  }
  if (p !== null) log.warn("bidder: PRICE is not a non-negative integer, ignored");
  const bytes = Uint8Array.wrap(String.UTF8.encode(name));
  let h: u32 = 2166136261;
  for (let i = 0; i < bytes.length; i++) h = (h ^ <u32>bytes[i]) * 16777619;
  price = 10 + <i64>(h % 90);
  return 0;
});

function isDigits(text: string): bool {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

function answer(m: Message, performative: string, content: string, withReplyWith: bool = false): i32 {
  const out = m.answer(performative).str("protocol", PROTOCOL);
  if (withReplyWith) out.str("reply_with", name + "-p" + (++proposals).toString());
  return out.raw("content", content).send() == 0 ? 0 : 1;
}

onMessage((m: Message): i32 => {
  if (m.is("cfp")) {
    if (refuses) return answer(m, "refuse", '{"reason":"not taking work"}');
    return answer(m, "propose", '{"price":' + price.toString() + "}", true);
  }
  if (m.is("accept_proposal")) {
    if (refuses) return answer(m, "failure", '{"reason":"no proposal was made"}');
    const task = Json.field(m.content, "task");
    const rc = answer(m, "inform", '{"done":' + (task !== null ? task : "null") + ',"price":' + price.toString() + "}");
    log.info("bidder: won a contract, task done");
    return rc;
  }
  if (m.is("reject_proposal")) {
    log.info("bidder: proposal rejected");
    return 0;
  }
  if (m.is("inform") || m.is("failure") || m.is("not_understood") || m.is("agree") || m.is("refuse") || m.is("propose")) {
    log.warn("bidder: an unexpected answer, ignored");
    return 0;
  }
  return answer(m, "not_understood", '{"error":"a bidder answers cfp, accept_proposal and reject_proposal"}');
});
