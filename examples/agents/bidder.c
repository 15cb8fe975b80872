/*
 * bidder: the participant of the FIPA contract-net interaction protocol.
 *
 * Reactor agent; deploy one module several times with different environments:
 *
 *   PRICE=<int>  answer every `cfp` with `propose` {"price":<int>}
 *   REFUSE=1     answer every `cfp` with `refuse` {"reason":"not taking work"}
 *   neither      propose a price derived from the agent's name (argv[0]):
 *                10 + (FNV-1a hash of the name) % 90, so always the same for a name
 *
 * The messages it understands (all answers go to the sender, with
 * "protocol":"fipa-contract-net"; the host keeps the conversation and sets
 * in_reply_to from the sender's reply_with):
 *
 *   cfp {"task":T}                  -> propose {"price":N} (reply_with "<name>-p<k>")
 *                                      or refuse {"reason":"not taking work"}
 *   accept_proposal {"task":T,...}  -> inform {"done":T,"price":N}
 *                                      (failure {"reason":"no proposal was made"} if REFUSE=1)
 *   reject_proposal                 -> nothing (logged)
 *   inform, failure, not_understood, agree, refuse, propose -> nothing (logged)
 *   anything else                   -> not_understood {"error":...}
 *
 * Each message is read once (caxton_message_read): its performative picks the answer,
 * which goes to its sender.
 *
 *   caxton agent deploy examples/agents/bidder.wasm --name bidder-a --env PRICE=30
 *   caxton agent deploy examples/agents/bidder.wasm --name bidder-b --env PRICE=20
 *   caxton agent deploy examples/agents/bidder.wasm --name bidder-c --env REFUSE=1
 */
#include <wasi/api.h>

#include "caxton.h"

#define PROTOCOL "fipa-contract-net"

static int configured;
static int refuses;
static int64_t price;
static char name[64] = "bidder";
static size_t name_len = 6;
static uint32_t proposals;

/* The agent's name: argv[0], as the runtime starts every agent. */
static void load_name(void) {
    __wasi_size_t argc, size;
    if (__wasi_args_sizes_get(&argc, &size) != 0 || argc == 0 || argc > 8 || size > 256) return;
    uint8_t *argv[8];
    uint8_t buf[256];
    if (__wasi_args_get(argv, buf) != 0) return;
    size_t n = strlen((const char *)argv[0]);
    if (n == 0 || n >= sizeof name) return;
    memcpy(name, argv[0], n + 1);
    name_len = n;
}

/* Decide once, from the environment (and the name). */
static void configure(void) {
    if (configured) return;
    configured = 1;
    load_name();
    const char *refuse = getenv("REFUSE");
    if (refuse != NULL && strcmp(refuse, "1") == 0) {
        refuses = 1;
        caxton_log_str(CAXTON_LOG_INFO, "bidder: REFUSE=1, refusing every cfp");
        return;
    }
    const char *p = getenv("PRICE");
    if (p != NULL && *p) {
        int64_t v = 0;
        const char *c = p;
        while (*c >= '0' && *c <= '9' && v < 1000000000000LL) v = v * 10 + (*c++ - '0');
        if (*c == 0) {
            price = v;
            return;
        }
        caxton_log_str(CAXTON_LOG_WARN, "bidder: PRICE is not a non-negative integer, ignored");
    }
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < name_len; i++) h = (h ^ (uint8_t)name[i]) * 16777619u;
    price = 10 + (int64_t)(h % 90);
}

/* Send {"receiver":<sender>,"performative":P,"protocol":...[,"reply_with":..],"content":C}
 * to m's sender. */
static int reply(const caxton_message *m, const char *performative, int with_reply_with,
                 const char *content, size_t clen) {
    if (m->sender.ptr == NULL) return CAXTON_ERR_MALFORMED;
    size_t cap = m->sender.len + clen + sizeof name + 128;
    char *buf = (char *)malloc(cap);
    if (buf == NULL) return CAXTON_ERR_TOO_LARGE;
    caxton_sb sb;
    caxton_sb_init(&sb, buf, cap);
    caxton_msg_begin(&sb, m->sender.ptr, m->sender.len, performative);
    caxton_msg_str(&sb, "protocol", PROTOCOL);
    if (with_reply_with) {
        caxton_msg_raw(&sb, "reply_with", "\"", 1);
        caxton_sb_escaped(&sb, name, name_len);
        caxton_sb_cstr(&sb, "-p");
        caxton_sb_int(&sb, ++proposals);
        caxton_sb_char(&sb, '"');
    }
    caxton_msg_raw(&sb, "content", content, clen);
    int rc = caxton_msg_send(&sb);
    free(buf);
    return rc;
}

static int32_t on_cfp(const caxton_message *m) {
    if (refuses) {
        const char *no = "{\"reason\":\"not taking work\"}";
        return reply(m, "refuse", 0, no, strlen(no)) == 0 ? 0 : 1;
    }
    char out[48];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    caxton_sb_cstr(&sb, "{\"price\":");
    caxton_sb_int(&sb, price);
    caxton_sb_char(&sb, '}');
    return reply(m, "propose", 1, out, sb.len) == 0 ? 0 : 1;
}

static int32_t on_accept(const caxton_message *m) {
    if (refuses) {
        const char *no = "{\"reason\":\"no proposal was made\"}";
        return reply(m, "failure", 0, no, strlen(no)) == 0 ? 0 : 1;
    }
    const char *task = "null";
    size_t tlen = 4;
    if (m->content.ptr != NULL &&
        caxton_json_field(m->content.ptr, m->content.len, "task", &task, &tlen) != 0) {
        task = "null";
        tlen = 4;
    }
    size_t cap = tlen + 48;
    char *out = (char *)malloc(cap);
    if (out == NULL) return 1;
    caxton_sb sb;
    caxton_sb_init(&sb, out, cap);
    caxton_sb_cstr(&sb, "{\"done\":");
    caxton_sb_raw(&sb, task, tlen);
    caxton_sb_cstr(&sb, ",\"price\":");
    caxton_sb_int(&sb, price);
    caxton_sb_char(&sb, '}');
    int rc = sb.overflow ? CAXTON_ERR_TOO_LARGE : reply(m, "inform", 0, out, sb.len);
    free(out);
    caxton_log_str(CAXTON_LOG_INFO, "bidder: won a contract, task done");
    return rc == 0 ? 0 : 1;
}

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    configure();
    caxton_message m;
    /* The result is not checked: the runtime delivers only valid messages, and an absent
     * field is {NULL, 0}, which every use below allows for. */
    (void)caxton_message_read(msg, (size_t)len, &m);
    caxton_field p = m.performative;
    if (caxton_field_is(p, "\"cfp\"")) return on_cfp(&m);
    if (caxton_field_is(p, "\"accept_proposal\"")) return on_accept(&m);
    if (caxton_field_is(p, "\"reject_proposal\"")) {
        caxton_log_str(CAXTON_LOG_INFO, "bidder: proposal rejected");
        return 0;
    }
    if (caxton_field_is(p, "\"inform\"") || caxton_field_is(p, "\"failure\"") ||
        caxton_field_is(p, "\"not_understood\"") || caxton_field_is(p, "\"agree\"") ||
        caxton_field_is(p, "\"refuse\"") || caxton_field_is(p, "\"propose\"")) {
        caxton_log_str(CAXTON_LOG_WARN, "bidder: an unexpected answer, ignored");
        return 0;
    }
    const char *why = "{\"error\":\"a bidder answers cfp, accept_proposal and reject_proposal\"}";
    return reply(&m, "not_understood", 0, why, strlen(why)) == 0 ? 0 : 1;
}
