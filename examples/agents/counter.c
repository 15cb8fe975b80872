/*
 * counter: counts the messages it handles, twice.
 *
 *  - memory_count lives in a static variable (linear memory). It survives
 *    hibernation (the runtime saves linear memory) but starts again at 0 when the
 *    agent restarts with a fresh instance (after a crash, an upgrade, a node restart).
 *  - kv_count lives in the durable key/value store under the key "count" (decimal
 *    text). It survives restarts.
 *
 * Reactor agent. Every message increments both and gets an `inform` reply with
 * content {"memory_count":N,"kv_count":M}; content {"op":"reset"} sets both to 0
 * (and replies {"memory_count":0,"kv_count":0}).
 *   caxton agent deploy examples/agents/counter.wasm --name counter
 *   caxton message send --to counter --performative request --content '{}' --wait 5s
 *   caxton message send --to counter --performative request --content '{"op":"reset"}' --wait 5s
 */
#include "caxton.h"

static int64_t memory_count;

static int reply_counts(const char *msg, size_t len, int64_t kv_count) {
    char out[80];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    caxton_sb_cstr(&sb, "{\"memory_count\":");
    caxton_sb_int(&sb, memory_count);
    caxton_sb_cstr(&sb, ",\"kv_count\":");
    caxton_sb_int(&sb, kv_count);
    caxton_sb_char(&sb, '}');
    int n = caxton_sb_finish(&sb);
    if (n < 0) return n;
    return caxton_reply_n(msg, len, "inform", out, (size_t)n);
}

/* The stored count, 0 if absent or unreadable. */
static int64_t load_kv_count(void) {
    char buf[24];
    int32_t n = caxton_kv_get("count", buf, sizeof buf - 1);
    if (n < 0 || n >= (int32_t)sizeof buf) return 0;
    int64_t value = 0;
    for (int32_t i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9') return 0;
        value = value * 10 + (buf[i] - '0');
    }
    return value;
}

static int store_kv_count(int64_t value) {
    char buf[24];
    caxton_sb sb;
    caxton_sb_init(&sb, buf, sizeof buf);
    caxton_sb_int(&sb, value);
    return caxton_kv_set("count", buf, sb.len);
}

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    size_t n = (size_t)len;
    const char *content;
    size_t clen;
    char op[16];
    if (caxton_json_field(msg, n, "content", &content, &clen) == 0 &&
        caxton_json_get_string(content, clen, "op", op, sizeof op) >= 0 &&
        strcmp(op, "reset") == 0) {
        memory_count = 0;
        int32_t rc = caxton_kv_delete("count");
        if (rc != 0 && rc != CAXTON_KV_ABSENT) {
            caxton_log_error("counter: kv_delete failed with %d", (int)rc);
            return 1;
        }
        caxton_log_info("counter: reset");
        return reply_counts(msg, n, 0) == 0 ? 0 : 1;
    }
    memory_count++;
    int64_t kv_count = load_kv_count() + 1;
    int32_t rc = store_kv_count(kv_count);
    if (rc != 0) {
        caxton_log_error("counter: kv_set failed with %d", (int)rc);
        return 1;
    }
    return reply_counts(msg, n, kv_count) == 0 ? 0 : 1;
}
