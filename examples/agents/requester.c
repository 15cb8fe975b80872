/*
 * requester: the initiator of the FIPA-request interaction protocol.
 *
 * Reactor agent. A client asks it to get something done by another agent:
 *
 *   request {"op":"ask","responder":"responder","action":"add","a":2,"b":3}
 *
 * The requester sends `request` {"action":"add","a":2,"b":3} (the client's content
 * without "op" and "responder") to the responder with reply_with "ask-<n>", then waits:
 * `agree` is noted, `refuse` / `inform` / `failure` / `not_understood` end the protocol,
 * and the requester tells the client with one `inform`:
 *
 *   {"outcome":"done","result":5}                     after agree + inform {"result":5}
 *   {"outcome":"refused","reason":"unknown action x"}  after refuse
 *   {"outcome":"failed","reason":...}                 after failure (also the runtime's
 *                                                     failure for an unknown responder)
 *   {"outcome":"not_understood","reason":...}         after not_understood
 *
 * Everything stays in the client's conversation (the host passes it on to every
 * message sent while handling a message of that conversation), and every message the
 * requester sends has "protocol":"fipa-request"; the final inform has in_reply_to set
 * to the client's reply_with. Up to 16 asks can be in progress at once (a table in
 * linear memory keyed by our reply_with); a 17th gets `failure`. A malformed ask gets
 * `not_understood`. Replies that match no ask in progress are logged and ignored.
 * Each message is read once (caxton_message_read): its in_reply_to finds the ask an
 * answer belongs to, and only the content is looked into further.
 *
 *   caxton agent deploy examples/agents/responder.wasm --name responder
 *   caxton agent deploy examples/agents/requester.wasm --name requester
 *   caxton message send --to requester --performative request \
 *       --content '{"op":"ask","responder":"responder","action":"add","a":2,"b":3}' --wait 5s
 */
#include "caxton.h"

#define PROTOCOL "fipa-request"
#define SLOTS 16
#define CLIENT_CAP 160 /* the client's name, raw JSON */
#define RW_CAP 128     /* the client's reply_with, raw JSON */
#define PEER_CAP 80    /* the responder's name, JSON string */

enum { FREE, WAITING, AGREED };

typedef struct {
    int state;
    uint32_t id; /* our reply_with is "ask-<id>" */
    char client[CLIENT_CAP];
    size_t client_len;
    char client_rw[RW_CAP];
    size_t client_rw_len; /* 0: the client set no reply_with */
    char peer[PEER_CAP];
    size_t peer_len;
} ask_t;

static ask_t asks[SLOTS];
static uint32_t last_id;

/* ---- helpers --------------------------------------------------------------------- */

/* "ask-<id>" as a JSON string into buf; its length. */
static size_t token_json(uint32_t id, char *buf, size_t cap) {
    caxton_sb sb;
    caxton_sb_init(&sb, buf, cap);
    caxton_sb_cstr(&sb, "\"ask-");
    caxton_sb_int(&sb, id);
    caxton_sb_char(&sb, '"');
    return sb.len;
}

/* Start a message: {"receiver":R,"performative":"P","protocol":"fipa-request" */
static void begin(caxton_sb *sb, const char *receiver, size_t rlen, const char *performative) {
    caxton_msg_begin(sb, receiver, rlen, performative);
    caxton_msg_str(sb, "protocol", PROTOCOL);
}

static int32_t reply_error(const caxton_message *m, const char *performative, const char *key,
                           const char *why) {
    if (m->sender.ptr == NULL || m->sender.len > CLIENT_CAP) return 1;
    char out[CLIENT_CAP + 256];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    begin(&sb, m->sender.ptr, m->sender.len, performative);
    caxton_sb_cstr(&sb, ",\"content\":{\"");
    caxton_sb_cstr(&sb, key);
    caxton_sb_cstr(&sb, "\":");
    caxton_sb_json_str(&sb, why, strlen(why));
    caxton_sb_char(&sb, '}');
    caxton_log_str(CAXTON_LOG_WARN, why);
    return caxton_msg_send(&sb) == 0 ? 0 : 1;
}

/* ---- the client's ask ------------------------------------------------------------- */

/* The members of the client's content but "op" and "responder", comma-separated, into sb. */
static void copy_members(caxton_sb *sb, const char *content, size_t clen) {
    size_t pos = 0, klen, vlen;
    const char *key, *val;
    int escaped, first = 1;
    while (caxton_json_next(content, clen, &pos, &key, &klen, &escaped, &val, &vlen) == 1) {
        if (caxton_raw_eq(key, klen, "op") || caxton_raw_eq(key, klen, "responder")) continue;
        if (!first) caxton_sb_char(sb, ',');
        first = 0;
        caxton_sb_char(sb, '"');
        caxton_sb_raw(sb, key, klen);
        caxton_sb_cstr(sb, "\":");
        caxton_sb_raw(sb, val, vlen);
    }
}

static int32_t ask(const caxton_message *m) {
    const char *content = m->content.ptr;
    size_t clen = m->content.len;
    char name[PEER_CAP];
    int nlen = caxton_json_get_string(content, clen, "responder", name, 64);
    if (nlen <= 0)
        return reply_error(m, "not_understood", "error",
                           "ask needs a string responder (an agent name)");
    if (m->sender.ptr == NULL || m->sender.len > CLIENT_CAP) return 1;
    ask_t *slot = NULL;
    for (int i = 0; i < SLOTS && slot == NULL; i++)
        if (asks[i].state == FREE) slot = &asks[i];
    if (slot == NULL) return reply_error(m, "failure", "reason", "too many requests in progress");

    size_t cap = clen + PEER_CAP + 160;
    char *out = (char *)malloc(cap);
    if (out == NULL) return 1;
    caxton_sb sb, peer;
    caxton_sb_init(&peer, slot->peer, sizeof slot->peer);
    caxton_sb_json_str(&peer, name, (size_t)nlen);
    if (peer.overflow) {
        free(out);
        return reply_error(m, "not_understood", "error", "the responder name is too long");
    }
    caxton_sb_init(&sb, out, cap);
    begin(&sb, slot->peer, peer.len, "request");
    char token[32];
    uint32_t id = ++last_id;
    caxton_sb_cstr(&sb, ",\"reply_with\":");
    caxton_sb_raw(&sb, token, token_json(id, token, sizeof token));
    caxton_sb_cstr(&sb, ",\"content\":{");
    copy_members(&sb, content, clen);
    caxton_sb_char(&sb, '}');
    int rc = caxton_msg_send(&sb);
    free(out);
    if (rc != 0) {
        caxton_log_str(CAXTON_LOG_ERROR, "requester: could not send the request");
        return 1; /* fails the ask: the runtime sends the client a failure */
    }
    slot->state = WAITING;
    slot->id = id;
    slot->peer_len = peer.len;
    memcpy(slot->client, m->sender.ptr, m->sender.len);
    slot->client_len = m->sender.len;
    slot->client_rw_len = 0;
    caxton_field rw = m->reply_with;
    if (rw.ptr != NULL && rw.len <= RW_CAP && rw.ptr[0] == '"') {
        memcpy(slot->client_rw, rw.ptr, rw.len);
        slot->client_rw_len = rw.len;
    }
    return 0;
}

/* ---- the responder's answers ------------------------------------------------------ */

/* Tell the client: inform {"outcome":O,"<key>":<value>} and free the slot. */
static int32_t finish(ask_t *slot, const char *outcome, const char *key, const char *value,
                      size_t vlen) {
    if (value == NULL) {
        value = "null";
        vlen = 4;
    }
    size_t cap = vlen + CLIENT_CAP + RW_CAP + 160;
    char *out = (char *)malloc(cap);
    slot->state = FREE;
    if (out == NULL) return 1;
    caxton_sb sb;
    caxton_sb_init(&sb, out, cap);
    begin(&sb, slot->client, slot->client_len, "inform");
    if (slot->client_rw_len) {
        caxton_sb_cstr(&sb, ",\"in_reply_to\":");
        caxton_sb_raw(&sb, slot->client_rw, slot->client_rw_len);
    }
    caxton_sb_cstr(&sb, ",\"content\":{\"outcome\":\"");
    caxton_sb_cstr(&sb, outcome);
    caxton_sb_cstr(&sb, "\",\"");
    caxton_sb_cstr(&sb, key);
    caxton_sb_cstr(&sb, "\":");
    caxton_sb_raw(&sb, value, vlen);
    caxton_sb_char(&sb, '}');
    int rc = caxton_msg_send(&sb);
    free(out);
    return rc == 0 ? 0 : 1;
}

/* The raw value of content[key] if content is an object with it, else the whole content. */
static void pick(const char *content, size_t clen, const char *key, const char *alt,
                 const char **v, size_t *vl) {
    if (content == NULL) return;
    if (caxton_json_field(content, clen, key, v, vl) == 0) return;
    if (alt != NULL && caxton_json_field(content, clen, alt, v, vl) == 0) return;
    *v = content;
    *vl = clen;
}

static int32_t answer(ask_t *slot, const caxton_message *m) {
    caxton_field s = m->sender;
    if (s.ptr == NULL || s.len != slot->peer_len || memcmp(s.ptr, slot->peer, s.len) != 0) {
        caxton_log_str(CAXTON_LOG_WARN, "requester: an answer from someone else, ignored");
        return 0;
    }
    caxton_field perf = m->performative;
    if (perf.ptr == NULL) return 0;
    const char *content = m->content.ptr, *v = NULL; /* content: NULL if absent */
    size_t clen = m->content.len, vl = 0;
    if (caxton_field_is(perf, "\"agree\"")) {
        if (slot->state == WAITING) slot->state = AGREED;
        return 0;
    }
    if (caxton_field_is(perf, "\"inform\"")) {
        pick(content, clen, "result", NULL, &v, &vl);
        return finish(slot, "done", "result", v, vl);
    }
    if (caxton_field_is(perf, "\"refuse\"")) {
        pick(content, clen, "reason", NULL, &v, &vl);
        return finish(slot, "refused", "reason", v, vl);
    }
    if (caxton_field_is(perf, "\"failure\"")) {
        pick(content, clen, "reason", NULL, &v, &vl);
        return finish(slot, "failed", "reason", v, vl);
    }
    if (caxton_field_is(perf, "\"not_understood\"")) {
        pick(content, clen, "error", "reason", &v, &vl);
        return finish(slot, "not_understood", "reason", v, vl);
    }
    caxton_log_str(CAXTON_LOG_WARN, "requester: an unexpected performative in an ask, ignored");
    return 0;
}

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    caxton_message m;
    /* The result is not checked: the runtime delivers only valid messages, and an absent
     * field is {NULL, 0}, which every use below allows for. */
    (void)caxton_message_read(msg, (size_t)len, &m);
    if (m.in_reply_to.ptr != NULL) {
        char token[32];
        for (int i = 0; i < SLOTS; i++) {
            if (asks[i].state == FREE) continue;
            size_t tl = token_json(asks[i].id, token, sizeof token);
            if (m.in_reply_to.len == tl && memcmp(m.in_reply_to.ptr, token, tl) == 0)
                return answer(&asks[i], &m);
        }
    }
    const char *content = m.content.ptr;
    size_t clen = m.content.len;
    if (content != NULL && caxton_json_is_object(content, clen) &&
        caxton_json_field_is(content, clen, "op", "\"ask\""))
        return ask(&m);
    if (!caxton_field_is(m.performative, "\"request\"") &&
        !caxton_field_is(m.performative, "\"query_ref\"") &&
        !caxton_field_is(m.performative, "\"query_if\"")) {
        caxton_log_str(CAXTON_LOG_WARN, "requester: a message for no ask in progress, ignored");
        return 0;
    }
    return reply_error(&m, "not_understood", "error",
                       "expected {\"op\":\"ask\",\"responder\":NAME,\"action\":...}");
}
