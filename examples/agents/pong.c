/*
 * pong: answers every `request` with an `inform` carrying the same content, to
 * the request's sender. Other performatives are ignored. The benchmark partner of
 * `ping` (see ping.c), and a minimal request/inform responder.
 *
 * Reactor agent. Talk to it:
 *   caxton agent deploy examples/agents/pong.wasm --name pong
 *   caxton message send --to pong --performative request --content '{"i":1}' --wait 5s
 * -> `inform` {"i":1}
 *
 * No snprintf, no logging on the per-message path: one pass over the message
 * (caxton_message_read), and the reply is the request's content span copied into it.
 */
#include "caxton.h"

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    caxton_message m;
    if (caxton_message_read(msg, (size_t)len, &m) != 0) return 1;
    if (!caxton_field_is(m.performative, "\"request\"")) return 0;
    return caxton_reply_to(&m, "inform", m.content.ptr, m.content.len) == 0 ? 0 : 1;
}
