// echo (AssemblyScript): replies `inform` to the sender with the same `content` (null if the
// message had none), like examples/agents/echo.c.
//
//   caxton agent deploy examples/agents/assemblyscript/echo.wasm --name as-echo
//   caxton message send --to as-echo --performative request --content '{"hello":"world"}' --wait 5s
import { Message, log, onMessage } from "../../../sdk/assemblyscript/assembly";
export { caxton_alloc, caxton_handle, caxton_init } from "../../../sdk/assemblyscript/assembly";

onMessage((m: Message): i32 => {
  const rc = m.replyRaw("inform", m.contentPtr, m.contentLen);
  if (rc != 0) log.error("echo: reply failed with " + rc.toString());
  return rc == 0 ? 0 : 1;
});
