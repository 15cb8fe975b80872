/*
 * shout: a COMMAND agent (a plain WASI program with main()).
 *
 * For each message the runtime starts a fresh instance with the message JSON on
 * stdin. shout replies `inform` to the sender with the content upper-cased (ASCII
 * letters only): a string content is upper-cased as text; any other content is
 * turned into its JSON text, upper-cased, and sent as a string. It writes one line
 * to stderr (the agent's log) and exits 0; it exits 2 if stdin is not a JSON object
 * and 1 if the message has no sender or the reply cannot be written.
 *   caxton agent deploy examples/agents/shout.wasm --name shout
 *   caxton message send --to shout --performative request --content '"hello"' --wait 5s
 * -> `inform` "HELLO";  --content '{"a":1}'  -> `inform` "{\"A\":1}"
 */
// caxton-mode: command
#ifndef CAXTON_COMMAND
#define CAXTON_COMMAND 1
#endif
#include "caxton.h"

static void upcase(char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'a' && s[i] <= 'z') s[i] = (char)(s[i] - 'a' + 'A');
}

int main(void) {
    size_t len;
    char *msg = caxton_read_stdin(&len);
    if (msg == NULL || !caxton_json_is_object(msg, len)) {
        fputs("shout: stdin is not a JSON object\n", stderr);
        return 2;
    }
    const char *content;
    size_t clen;
    char *text;
    int tlen;
    if (caxton_json_field(msg, len, "content", &content, &clen) != 0) {
        content = "null";
        clen = 4;
    }
    text = (char *)malloc(clen + 1);
    if (text == NULL) return 1;
    tlen = caxton_json_string_value(content, clen, text, clen + 1);
    if (tlen < 0) { /* not a string: shout its JSON text */
        memcpy(text, content, clen);
        tlen = (int)clen;
    }
    upcase(text, (size_t)tlen);
    size_t cap = (size_t)tlen * 6 + 3;
    char *json = (char *)malloc(cap);
    if (json == NULL) return 1;
    caxton_sb sb;
    caxton_sb_init(&sb, json, cap);
    caxton_sb_json_str(&sb, text, (size_t)tlen);
    int rc = caxton_reply_n(msg, len, "inform", json, sb.len);
    if (rc != 0) {
        fprintf(stderr, "shout: could not reply (%d)\n", rc);
        return 1;
    }
    fprintf(stderr, "shout: shouted %d bytes back\n", tlen);
    return 0;
}
