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
 * No snprintf, no logging on the per-message path: the reply is the request's
 * content span copied into the reply.
 */
#include "caxton.h"

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    size_t n = (size_t)len;
    const char *v;
    size_t vl;
    if (caxton_json_field(msg, n, "performative", &v, &vl) != 0) return 1;
    if (vl != 9 || memcmp(v, "\"request\"", 9) != 0) return 0;
    if (caxton_json_field(msg, n, "content", &v, &vl) != 0) {
        v = NULL;
        vl = 0;
    }
    return caxton_reply_n(msg, n, "inform", v, vl) == 0 ? 0 : 1;
}
