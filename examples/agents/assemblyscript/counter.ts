// counter (AssemblyScript): counts the messages it handles, twice, like examples/agents/counter.c.
//
//  - memoryCount is a module variable: AssemblyScript keeps it in a wasm global, which the
//    runtime saves with linear memory when it hibernates the agent, so it survives hibernation;
//    it starts again at 0 when the agent restarts with a fresh instance.
//  - the kv count lives under the key "count" (decimal text): it survives restarts.
//
// Every message increments both and gets `inform` {"memory_count":N,"kv_count":M}; content
// {"op":"reset"} sets both to 0.
//
//   caxton agent deploy examples/agents/assemblyscript/counter.wasm --name as-counter
//   caxton message send --to as-counter --performative request --content '{}' --wait 5s
import { Json, KV_ABSENT, Message, errorName, kv, log, onMessage } from "../../../sdk/assemblyscript/assembly";
export { caxton_alloc, caxton_handle, caxton_init } from "../../../sdk/assemblyscript/assembly";

let memoryCount: i64 = 0;

function replyCounts(m: Message, kvCount: i64): i32 {
  const content = '{"memory_count":' + memoryCount.toString() + ',"kv_count":' + kvCount.toString() + "}";
  return m.reply("inform", content) == 0 ? 0 : 1;
}

/** The stored count, 0 if absent or not a number. */
function loadKvCount(): i64 {
  const text = kv.get("count");
  if (text === null || text.length == 0 || text.length > 18) return 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 0;
  }
  return I64.parseInt(text, 10);
}

onMessage((m: Message): i32 => {
  const op = Json.getString(m.content, "op");
  if (op !== null && op == "reset") {
    memoryCount = 0;
    const rc = kv.del("count");
    if (rc != 0 && rc != KV_ABSENT) {
      log.error("counter: kv delete failed: " + errorName(rc));
      return 1;
    }
    log.info("counter: reset");
    return replyCounts(m, 0);
  }
  memoryCount++;
  const kvCount = loadKvCount() + 1;
  const rc = kv.set("count", kvCount.toString());
  if (rc != 0) {
    log.error("counter: kv set failed: " + errorName(rc));
    return 1;
  }
  return replyCounts(m, kvCount);
});
