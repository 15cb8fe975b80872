/*
 * echo: replies `inform` to the sender with the same `content`.
 *
 * Reactor agent. Talk to it:
 *   caxton agent deploy examples/agents/echo.wasm --name echo
 *   caxton message send --to echo --performative request --content '{"hello":"world"}' --wait 5s
 * -> an `inform` from echo whose content is {"hello":"world"} (any JSON value works,
 *    a message without `content` gets content null back).
 */
#include "caxton.h"

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    const char *content = NULL;
    size_t clen = 0;
    int rc = caxton_json_field(msg, (size_t)len, "content", &content, &clen);
    if (rc == CAXTON_ERR_MALFORMED) return 1;
    /* no content field: reply with null (content stays NULL) */
    rc = caxton_reply_n(msg, (size_t)len, "inform", content, clen);
    if (rc != 0) {
        caxton_log_error("echo: reply failed with %d", rc);
        return 1;
    }
    return 0;
}
