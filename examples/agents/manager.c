/*
 * manager: the initiator of the FIPA contract-net interaction protocol.
 *
 * Reactor agent. A client starts a negotiation:
 *
 *   request {"op":"start","task":"build-widget","bidders":["bidder-a","bidder-b","bidder-c"]}
 *
 * 1. The manager sends `cfp` {"task":...} to each bidder, with reply_with "cn-<n>".
 * 2. It collects one answer per bidder: `propose` {"price":N} is a proposal; `refuse`,
 *    `failure` (the runtime sends one for an unknown or failing bidder) and
 *    `not_understood` count as refusals, and so does a proposal without an integer price.
 * 3. With no proposal at all the client gets `failure` {"reason":"no proposals"}.
 *    Otherwise the lowest price wins (the first in the bidders list on a tie): the
 *    winner gets `accept_proposal` {"task":...,"price":N} (reply_with "cn-<n>"), every
 *    other proposer `reject_proposal` {"task":...,"reason":"another proposal was accepted"}
 *    (both with in_reply_to = the proposal's reply_with).
 * 4. The winner's `inform` ends it: the client gets `inform`
 *    {"winner":"bidder-b","price":20,"proposals":2,"refusals":1}. If the winner answers
 *    `failure`, `refuse` or `not_understood` instead, the client gets `failure`
 *    {"reason":"the winner did not do the task","winner":"bidder-b"}.
 *
 * Everything happens in the client's conversation and every message the manager sends
 * has "protocol":"fipa-contract-net", so `caxton conversation show ID` lists the whole
 * negotiation in order. Messages to the client carry in_reply_to = the client's
 * reply_with. Up to 16 negotiations (of up to 16 bidders each) run at once; their state
 * is malloc'd in linear memory and freed at the end. A malformed start gets
 * `not_understood`; a 17th negotiation gets `failure`; duplicate or late answers are
 * logged and ignored. Each message is read once (caxton_message_read): its in_reply_to
 * finds the negotiation an answer belongs to, and only the content is looked into
 * further.
 *
 *   caxton agent deploy examples/agents/bidder.wasm --name bidder-a --env PRICE=30
 *   caxton agent deploy examples/agents/bidder.wasm --name bidder-b --env PRICE=20
 *   caxton agent deploy examples/agents/bidder.wasm --name bidder-c --env REFUSE=1
 *   caxton agent deploy examples/agents/manager.wasm --name manager
 *   caxton message send --to manager --performative request --wait 5s --content \
 *     '{"op":"start","task":"build-widget","bidders":["bidder-a","bidder-b","bidder-c"]}'
 */
#include "caxton.h"

#define PROTOCOL "fipa-contract-net"
#define MAX_NEGOTIATIONS 16
#define MAX_BIDDERS 16
#define NAME_CAP 80    /* an agent name as a JSON string */
#define CLIENT_CAP 160 /* the client's name, raw JSON */
#define RW_CAP 128     /* a reply_with, raw JSON */
#define TASK_CAP 512   /* the task, raw JSON */

enum { WAITING, PROPOSED, REFUSED };
enum { COLLECTING, AWARDED };

typedef struct {
    char name[NAME_CAP];
    size_t name_len;
    char proposal_rw[RW_CAP]; /* the proposal's reply_with, raw JSON; 0 length = none */
    size_t proposal_rw_len;
    int64_t price;
    int state;
} bidder_t;

typedef struct {
    int state;
    uint32_t id; /* our reply_with is "cn-<id>" */
    char client[CLIENT_CAP];
    size_t client_len;
    char client_rw[RW_CAP];
    size_t client_rw_len;
    char task[TASK_CAP];
    size_t task_len;
    int count, pending, proposals, refusals, winner;
    bidder_t bidders[MAX_BIDDERS];
} negotiation_t;

static negotiation_t *negotiations[MAX_NEGOTIATIONS];
static uint32_t last_id;

/* ---- helpers --------------------------------------------------------------------- */

static size_t token_json(uint32_t id, char *buf, size_t cap) {
    caxton_sb sb;
    caxton_sb_init(&sb, buf, cap);
    caxton_sb_cstr(&sb, "\"cn-");
    caxton_sb_int(&sb, id);
    caxton_sb_char(&sb, '"');
    return sb.len;
}

/* Start a message: {"receiver":R,"performative":"P","protocol":"fipa-contract-net" */
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

/* Start a message to the client of `neg` (with in_reply_to = the client's reply_with). */
static void begin_client(caxton_sb *sb, negotiation_t *neg, const char *performative) {
    begin(sb, neg->client, neg->client_len, performative);
    if (neg->client_rw_len) caxton_msg_raw(sb, "in_reply_to", neg->client_rw, neg->client_rw_len);
}

static void close_negotiation(negotiation_t *neg) {
    for (int i = 0; i < MAX_NEGOTIATIONS; i++)
        if (negotiations[i] == neg) negotiations[i] = NULL;
    free(neg);
}

/* ---- start: send the calls for proposals ----------------------------------------- */

/* Parse the bidders array into neg->bidders; 0, or -1 with *why set. */
static int parse_bidders(negotiation_t *neg, const char *arr, size_t n, const char **why) {
    *why = "bidders must be a list of 1 to 16 agent names";
    size_t i = 0;
    while (i < n && (arr[i] == ' ' || arr[i] == '\n' || arr[i] == '\r' || arr[i] == '\t')) i++;
    if (i >= n || arr[i] != '[') return -1;
    i++;
    for (;;) {
        while (i < n && (arr[i] == ' ' || arr[i] == '\n' || arr[i] == '\r' || arr[i] == '\t' ||
                         arr[i] == ','))
            i++;
        if (i >= n) return -1;
        if (arr[i] == ']') break;
        if (arr[i] != '"' || neg->count == MAX_BIDDERS) return -1;
        size_t end = i + 1;
        while (end < n && arr[end] != '"') end += arr[end] == '\\' ? 2 : 1;
        if (end >= n) return -1;
        char name[64];
        int nl = caxton_json_string_value(arr + i, end + 1 - i, name, sizeof name);
        if (nl <= 0) return -1;
        bidder_t *b = &neg->bidders[neg->count++];
        caxton_sb sb;
        caxton_sb_init(&sb, b->name, sizeof b->name);
        caxton_sb_json_str(&sb, name, (size_t)nl);
        if (sb.overflow) return -1;
        b->name_len = sb.len;
        b->state = WAITING;
        i = end + 1;
    }
    return neg->count > 0 ? 0 : -1;
}

static int32_t decide(negotiation_t *neg);

static int32_t start(const caxton_message *m) {
    const char *content = m->content.ptr, *task, *list, *why;
    size_t clen = m->content.len, tlen, llen;
    if (caxton_json_field(content, clen, "task", &task, &tlen) != 0 || tlen > TASK_CAP)
        return reply_error(m, "not_understood", "error",
                           "start needs a task (any JSON value up to 512 bytes)");
    if (caxton_json_field(content, clen, "bidders", &list, &llen) != 0)
        return reply_error(m, "not_understood", "error",
                           "start needs bidders: a list of agent names");
    if (m->sender.ptr == NULL || m->sender.len > CLIENT_CAP) return 1;
    int slot = -1;
    for (int i = 0; i < MAX_NEGOTIATIONS && slot < 0; i++)
        if (negotiations[i] == NULL) slot = i;
    if (slot < 0) return reply_error(m, "failure", "reason", "too many negotiations in progress");
    negotiation_t *neg = (negotiation_t *)calloc(1, sizeof *neg);
    if (neg == NULL) return 1;
    if (parse_bidders(neg, list, llen, &why) != 0) {
        free(neg);
        return reply_error(m, "not_understood", "error", why);
    }
    negotiations[slot] = neg;
    neg->state = COLLECTING;
    neg->id = ++last_id;
    neg->winner = -1;
    memcpy(neg->client, m->sender.ptr, m->sender.len);
    neg->client_len = m->sender.len;
    caxton_field rw = m->reply_with;
    if (rw.ptr != NULL && rw.len <= RW_CAP && rw.ptr[0] == '"') {
        memcpy(neg->client_rw, rw.ptr, rw.len);
        neg->client_rw_len = rw.len;
    }
    memcpy(neg->task, task, tlen);
    neg->task_len = tlen;

    char token[32], out[NAME_CAP + TASK_CAP + 160];
    size_t toklen = token_json(neg->id, token, sizeof token);
    for (int i = 0; i < neg->count; i++) {
        bidder_t *b = &neg->bidders[i];
        caxton_sb sb;
        caxton_sb_init(&sb, out, sizeof out);
        begin(&sb, b->name, b->name_len, "cfp");
        caxton_msg_raw(&sb, "reply_with", token, toklen);
        caxton_sb_cstr(&sb, ",\"content\":{\"task\":");
        caxton_sb_raw(&sb, neg->task, neg->task_len);
        caxton_sb_char(&sb, '}');
        if (caxton_msg_send(&sb) == 0) {
            neg->pending++;
        } else { /* backpressure or not permitted: no answer will come */
            caxton_log_str(CAXTON_LOG_WARN, "manager: a cfp could not be sent; counted as a refusal");
            b->state = REFUSED;
            neg->refusals++;
        }
    }
    return neg->pending == 0 ? decide(neg) : 0;
}

/* ---- all answers are in: award the contract ---------------------------------------- */

static int32_t decide(negotiation_t *neg) {
    char out[NAME_CAP + RW_CAP + TASK_CAP + CLIENT_CAP + 256];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    if (neg->proposals == 0) {
        begin_client(&sb, neg, "failure");
        caxton_sb_cstr(&sb, ",\"content\":{\"reason\":\"no proposals\"}");
        int rc = caxton_msg_send(&sb);
        close_negotiation(neg);
        return rc == 0 ? 0 : 1;
    }
    int w = -1;
    for (int i = 0; i < neg->count; i++)
        if (neg->bidders[i].state == PROPOSED &&
            (w < 0 || neg->bidders[i].price < neg->bidders[w].price))
            w = i;
    neg->winner = w;
    neg->state = AWARDED;
    char token[32];
    size_t toklen = token_json(neg->id, token, sizeof token);
    bidder_t *win = &neg->bidders[w];
    begin(&sb, win->name, win->name_len, "accept_proposal");
    caxton_msg_raw(&sb, "reply_with", token, toklen);
    if (win->proposal_rw_len) caxton_msg_raw(&sb, "in_reply_to", win->proposal_rw, win->proposal_rw_len);
    caxton_sb_cstr(&sb, ",\"content\":{\"task\":");
    caxton_sb_raw(&sb, neg->task, neg->task_len);
    caxton_sb_cstr(&sb, ",\"price\":");
    caxton_sb_int(&sb, win->price);
    caxton_sb_char(&sb, '}');
    if (caxton_msg_send(&sb) != 0) {
        caxton_log_str(CAXTON_LOG_ERROR, "manager: could not send accept_proposal");
        caxton_sb_init(&sb, out, sizeof out);
        begin_client(&sb, neg, "failure");
        caxton_sb_cstr(&sb, ",\"content\":{\"reason\":\"could not accept the proposal\"}");
        int rc = caxton_msg_send(&sb);
        close_negotiation(neg);
        return rc == 0 ? 0 : 1;
    }
    for (int i = 0; i < neg->count; i++) {
        bidder_t *b = &neg->bidders[i];
        if (i == w || b->state != PROPOSED) continue;
        caxton_sb_init(&sb, out, sizeof out);
        begin(&sb, b->name, b->name_len, "reject_proposal");
        if (b->proposal_rw_len) caxton_msg_raw(&sb, "in_reply_to", b->proposal_rw, b->proposal_rw_len);
        caxton_sb_cstr(&sb, ",\"content\":{\"task\":");
        caxton_sb_raw(&sb, neg->task, neg->task_len);
        caxton_sb_cstr(&sb, ",\"reason\":\"another proposal was accepted\"}");
        if (caxton_msg_send(&sb) != 0) caxton_log_str(CAXTON_LOG_WARN, "manager: a reject_proposal was lost");
    }
    return 0;
}

/* The winner answered the award: report to the client and close. */
static int32_t report(negotiation_t *neg, int done) {
    char out[NAME_CAP + RW_CAP + CLIENT_CAP + 256];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    bidder_t *win = &neg->bidders[neg->winner];
    if (done) {
        begin_client(&sb, neg, "inform");
        caxton_sb_cstr(&sb, ",\"content\":{\"winner\":");
        caxton_sb_raw(&sb, win->name, win->name_len);
        caxton_sb_cstr(&sb, ",\"price\":");
        caxton_sb_int(&sb, win->price);
        caxton_sb_cstr(&sb, ",\"proposals\":");
        caxton_sb_int(&sb, neg->proposals);
        caxton_sb_cstr(&sb, ",\"refusals\":");
        caxton_sb_int(&sb, neg->refusals);
        caxton_sb_char(&sb, '}');
    } else {
        begin_client(&sb, neg, "failure");
        caxton_sb_cstr(&sb, ",\"content\":{\"reason\":\"the winner did not do the task\",");
        caxton_sb_cstr(&sb, "\"winner\":");
        caxton_sb_raw(&sb, win->name, win->name_len);
        caxton_sb_char(&sb, '}');
    }
    int rc = caxton_msg_send(&sb);
    close_negotiation(neg);
    return rc == 0 ? 0 : 1;
}

/* ---- an answer from a bidder --------------------------------------------------------- */

static int32_t answer(negotiation_t *neg, const caxton_message *m) {
    caxton_field sender = m->sender, perf = m->performative;
    if (sender.ptr == NULL || perf.ptr == NULL) return 0;
    if (neg->state == AWARDED) {
        bidder_t *win = &neg->bidders[neg->winner];
        if (sender.len != win->name_len || memcmp(sender.ptr, win->name, sender.len) != 0) {
            caxton_log_str(CAXTON_LOG_WARN, "manager: a late answer after the award, ignored");
            return 0;
        }
        if (caxton_field_is(perf, "\"inform\"")) return report(neg, 1);
        if (caxton_field_is(perf, "\"failure\"") || caxton_field_is(perf, "\"not_understood\"") ||
            caxton_field_is(perf, "\"refuse\""))
            return report(neg, 0);
        caxton_log_str(CAXTON_LOG_WARN, "manager: an unexpected answer to the award, ignored");
        return 0;
    }
    bidder_t *b = NULL;
    for (int i = 0; i < neg->count && b == NULL; i++)
        if (neg->bidders[i].state == WAITING && neg->bidders[i].name_len == sender.len &&
            memcmp(neg->bidders[i].name, sender.ptr, sender.len) == 0)
            b = &neg->bidders[i];
    if (b == NULL) {
        caxton_log_str(CAXTON_LOG_WARN, "manager: an answer from no waiting bidder, ignored");
        return 0;
    }
    int64_t price;
    if (caxton_field_is(perf, "\"propose\"")) {
        if (m->content.ptr != NULL &&
            caxton_json_get_int(m->content.ptr, m->content.len, "price", &price) == 0) {
            b->state = PROPOSED;
            b->price = price;
            neg->proposals++;
            caxton_field rw = m->reply_with;
            if (rw.ptr != NULL && rw.len <= RW_CAP && rw.ptr[0] == '"') {
                memcpy(b->proposal_rw, rw.ptr, rw.len);
                b->proposal_rw_len = rw.len;
            }
        } else {
            caxton_log_str(CAXTON_LOG_WARN, "manager: a proposal without an integer price is a refusal");
            b->state = REFUSED;
            neg->refusals++;
        }
    } else if (caxton_field_is(perf, "\"refuse\"") || caxton_field_is(perf, "\"failure\"") ||
               caxton_field_is(perf, "\"not_understood\"")) {
        b->state = REFUSED;
        neg->refusals++;
    } else {
        caxton_log_str(CAXTON_LOG_WARN, "manager: an unexpected performative from a bidder, ignored");
        return 0;
    }
    return --neg->pending == 0 ? decide(neg) : 0;
}

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    caxton_message m;
    /* The result is not checked: the runtime delivers only valid messages, and an absent
     * field is {NULL, 0}, which every use below allows for. */
    (void)caxton_message_read(msg, (size_t)len, &m);
    if (m.in_reply_to.ptr != NULL) {
        char token[32];
        for (int i = 0; i < MAX_NEGOTIATIONS; i++) {
            if (negotiations[i] == NULL) continue;
            size_t tl = token_json(negotiations[i]->id, token, sizeof token);
            if (m.in_reply_to.len == tl && memcmp(m.in_reply_to.ptr, token, tl) == 0)
                return answer(negotiations[i], &m);
        }
    }
    const char *content = m.content.ptr;
    size_t clen = m.content.len;
    if (content != NULL && caxton_json_is_object(content, clen) &&
        caxton_json_field_is(content, clen, "op", "\"start\""))
        return start(&m);
    if (caxton_field_is(m.performative, "\"request\"") ||
        caxton_field_is(m.performative, "\"query_ref\"") ||
        caxton_field_is(m.performative, "\"query_if\"") ||
        caxton_field_is(m.performative, "\"cfp\""))
        return reply_error(&m, "not_understood", "error",
                           "expected {\"op\":\"start\",\"task\":...,\"bidders\":[NAME,...]}");
    caxton_log_str(CAXTON_LOG_WARN, "manager: a message for no negotiation in progress, ignored");
    return 0;
}
