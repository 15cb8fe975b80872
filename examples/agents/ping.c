/*
 * ping: plays N request/inform round trips with a peer (normally the `pong`
 * example) and reports when done. Used by the throughput benchmark.
 *
 * Reactor agent. Start a game:
 *   caxton agent deploy examples/agents/pong.wasm --name pong
 *   caxton agent deploy examples/agents/ping.wasm --name ping
 *   caxton message send --to ping --performative request \
 *       --content '{"op":"start","peer":"pong","n":1000}' --wait 30s
 * ping remembers who sent `start` (S), sends `request` {"i":1} to the peer; every
 * `inform` {"i":k} coming back from the peer with k < n is answered with `request`
 * {"i":k+1}; at k == n ping sends `inform` {"done":n} to S. All of it stays in the
 * conversation of the start message, so --wait returns the done message.
 * n <= 0 answers {"done":0} at once; a malformed start gets `not_understood`.
 * A new start replaces a game in progress.
 *
 * The per-message path does no snprintf and no malloc: the request prefix is built
 * once at start, and each step appends one integer.
 */
#include "caxton.h"

#define PREFIX_CAP 160

static char peer[80];          /* the peer's name as a JSON string, quotes included */
static size_t peer_len;
static char starter[160];      /* S: the start message's sender, raw JSON */
static size_t starter_len;
static int64_t rounds;         /* n of the game in progress, 0 = none */
static char prefix[PREFIX_CAP]; /* {"receiver":<peer>,"performative":"request","content":{"i": */
static size_t prefix_len;

static int send_request(int64_t i) {
    char out[PREFIX_CAP + 32];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    caxton_sb_raw(&sb, prefix, prefix_len);
    caxton_sb_int(&sb, i);
    caxton_sb_raw(&sb, "}}", 2);
    if (sb.overflow) return CAXTON_ERR_TOO_LARGE;
    return caxton_send(out, sb.len);
}

static int send_done(int64_t n) {
    char out[256];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    caxton_sb_cstr(&sb, "{\"receiver\":");
    caxton_sb_raw(&sb, starter, starter_len);
    caxton_sb_cstr(&sb, ",\"performative\":\"inform\",\"content\":{\"done\":");
    caxton_sb_int(&sb, n);
    caxton_sb_raw(&sb, "}}", 2);
    if (sb.overflow) return CAXTON_ERR_TOO_LARGE;
    rounds = 0;
    return caxton_send(out, sb.len);
}

static int32_t not_understood(const char *msg, size_t len, const char *why) {
    char content[128];
    caxton_sb sb;
    caxton_sb_init(&sb, content, sizeof content);
    caxton_sb_cstr(&sb, "{\"error\":");
    caxton_sb_json_str(&sb, why, strlen(why));
    caxton_sb_char(&sb, '}');
    caxton_log_warn("ping: %s", why);
    return caxton_reply_n(msg, len, "not_understood", content, sb.len) == 0 ? 0 : 1;
}

static int32_t start(const char *msg, size_t len, const char *content, size_t clen) {
    const char *v;
    size_t vl;
    int64_t n;
    char name[72];
    if (caxton_json_get_string(content, clen, "peer", name, sizeof name) <= 0)
        return not_understood(msg, len, "start needs a string peer");
    if (caxton_json_get_int(content, clen, "n", &n) != 0)
        return not_understood(msg, len, "start needs an integer n");
    if (caxton_json_field(msg, len, "sender", &v, &vl) != 0 || vl > sizeof starter)
        return 1;
    memcpy(starter, v, vl);
    starter_len = vl;
    caxton_sb sb;
    caxton_sb_init(&sb, peer, sizeof peer);
    caxton_sb_json_str(&sb, name, strlen(name));
    peer_len = sb.len;
    caxton_sb_init(&sb, prefix, sizeof prefix);
    caxton_sb_cstr(&sb, "{\"receiver\":");
    caxton_sb_raw(&sb, peer, peer_len);
    caxton_sb_cstr(&sb, ",\"performative\":\"request\",\"content\":{\"i\":");
    prefix_len = sb.len;
    caxton_log_info("ping: %lld rounds with %s", (long long)n, name);
    if (n <= 0) return send_done(0) == 0 ? 0 : 1;
    rounds = n;
    return send_request(1) == 0 ? 0 : 1;
}

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    size_t n = (size_t)len;
    caxton_message m;
    if (caxton_message_read(msg, n, &m) != 0 || m.content.ptr == NULL)
        return not_understood(msg, n, "no content");
    const char *content = m.content.ptr;
    size_t clen = m.content.len;
    int64_t i;
    if (caxton_json_get_int(content, clen, "i", &i) == 0) {
        /* the hot path: an inform {"i":k} from the peer */
        if (rounds == 0 || !caxton_field_is(m.performative, "\"inform\"") ||
            m.sender.len != peer_len || memcmp(m.sender.ptr, peer, peer_len) != 0) {
            caxton_log(CAXTON_LOG_WARN, "ping: unexpected i, ignored", 27);
            return 0;
        }
        if (i < rounds) return send_request(i + 1) == 0 ? 0 : 1;
        return send_done(rounds) == 0 ? 0 : 1;
    }
    const char *op;
    size_t oplen;
    if (caxton_json_field(content, clen, "op", &op, &oplen) == 0 && oplen == 7 &&
        memcmp(op, "\"start\"", 7) == 0)
        return start(msg, n, content, clen);
    return not_understood(msg, n, "expected {\"op\":\"start\",\"peer\":NAME,\"n\":N}");
}
