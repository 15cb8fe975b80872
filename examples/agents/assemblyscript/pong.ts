// pong (AssemblyScript): answers every `request` with `inform` and the same content, like
// examples/agents/pong.c (the partner of the C ping in bench/bench_sdk_pongs.py); other
// performatives are ignored.
//
//   caxton agent deploy examples/agents/assemblyscript/pong.wasm --name as-pong
import { Message, onMessage } from "../../../sdk/assemblyscript/assembly";
export { caxton_alloc, caxton_handle, caxton_init } from "../../../sdk/assemblyscript/assembly";

onMessage((m: Message): i32 => {
  if (!m.is("request")) return 0;
  return m.replyRaw("inform", m.contentPtr, m.contentLen) == 0 ? 0 : 1;
});
