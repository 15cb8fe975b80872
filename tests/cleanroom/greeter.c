/*
 * Clean-room Caxton reactor agent, written only from DESIGN.md section 2 and 3.
 * No SDK header: the `caxton` host imports are declared here by hand.
 *
 * On every message: reply to the sender with performative "inform" and content
 *   {"greeting": "hello, <sender>", "count": N, "total": T}
 * where N counts messages in linear memory (since this instance started) and
 * T is the durable total kept under kv key "total" (decimal text).
 * One log line per message.
 *
 * Build: clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-all -o greeter.wasm greeter.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAXTON_IMPORT(name) __attribute__((import_module("caxton"), import_name(name)))
#define CAXTON_EXPORT(name) __attribute__((export_name(name)))

CAXTON_IMPORT("send") int32_t cx_send(const void *ptr, int32_t len);
CAXTON_IMPORT("log") void cx_log(int32_t level, const void *ptr, int32_t len);
CAXTON_IMPORT("kv_get") int32_t cx_kv_get(const void *kptr, int32_t klen, void *vptr, int32_t vcap);
CAXTON_IMPORT("kv_set") int32_t cx_kv_set(const void *kptr, int32_t klen, const void *vptr, int32_t vlen);

static int32_t count; /* messages handled by this instance (linear memory) */
static int32_t init_called;

CAXTON_EXPORT("caxton_alloc") void *caxton_alloc(int32_t len) {
    /* One extra byte so the handler can NUL-terminate; never return NULL for len 0. */
    return malloc((size_t)len + 1);
}

CAXTON_EXPORT("caxton_init") int32_t caxton_init(void) {
    init_called = 1;
    static const char msg[] = "greeter: init";
    cx_log(1, msg, (int32_t)(sizeof msg - 1));
    return 0;
}

/* ---- a minimal JSON scanner: enough to find top-level string members ---- */

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* p points at '"'; returns pointer just past the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end) {
    p++;
    while (p < end) {
        if (*p == '\\') {
            p += 2;
        } else if (*p == '"') {
            return p + 1;
        } else {
            p++;
        }
    }
    return NULL;
}

/* Skip any JSON value starting at p (after whitespace). Returns NULL on error. */
static const char *skip_value(const char *p, const char *end) {
    p = skip_ws(p, end);
    if (p >= end) return NULL;
    if (*p == '"') return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                depth--;
                if (depth == 0) return p + 1;
            }
            p++;
        }
        return NULL;
    }
    /* number, true, false, null */
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r')
        p++;
    return p;
}

/*
 * Find the top-level member `key` whose value is a JSON string. On success
 * `out` and `outlen` receive the raw (still escaped) characters between the quotes,
 * which can be pasted verbatim into another JSON string.
 */
static int find_string_member(const char *buf, int32_t len, const char *key, const char **out,
                              int32_t *outlen) {
    const char *p = buf, *end = buf + len;
    size_t klen = strlen(key);
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return 0;
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end) return 0;
        if (*p == '}') return 0;
        if (*p != '"') return 0;
        const char *kstart = p + 1;
        const char *kend = skip_string(p, end);
        if (!kend) return 0;
        int match = (size_t)(kend - 1 - kstart) == klen && memcmp(kstart, key, klen) == 0;
        p = skip_ws(kend, end);
        if (p >= end || *p != ':') return 0;
        p = skip_ws(p + 1, end);
        if (match && p < end && *p == '"') {
            const char *vend = skip_string(p, end);
            if (!vend) return 0;
            *out = p + 1;
            *outlen = (int32_t)(vend - 1 - (p + 1));
            return 1;
        }
        p = skip_value(p, end);
        if (!p) return 0;
        p = skip_ws(p, end);
        if (p < end && *p == ',') p++;
    }
}

static int32_t bump_total(void) {
    static const char key[] = "total";
    char val[32];
    int32_t total = 0;
    int32_t n = cx_kv_get(key, (int32_t)(sizeof key - 1), val, (int32_t)(sizeof val - 1));
    if (n >= 0 && n < (int32_t)sizeof val) {
        val[n] = '\0';
        total = (int32_t)atoi(val);
    }
    total++;
    int vlen = snprintf(val, sizeof val, "%d", (int)total);
    if (cx_kv_set(key, (int32_t)(sizeof key - 1), val, (int32_t)vlen) != 0) {
        static const char err[] = "greeter: kv_set failed";
        cx_log(3, err, (int32_t)(sizeof err - 1));
    }
    return total;
}

CAXTON_EXPORT("caxton_handle") int32_t caxton_handle(char *ptr, int32_t len) {
    const char *sender = NULL;
    int32_t sender_len = 0;
    int32_t rc = 0;

    if (!find_string_member(ptr, len, "sender", &sender, &sender_len)) {
        static const char err[] = "greeter: message has no string sender";
        cx_log(2, err, (int32_t)(sizeof err - 1));
        free(ptr);
        return 1;
    }

    count++;
    int32_t total = bump_total();

    size_t cap = (size_t)sender_len * 2 + 256;
    char *out = malloc(cap);
    if (!out) {
        free(ptr);
        return 2;
    }
    int n = snprintf(out, cap,
                     "{\"performative\":\"inform\",\"receiver\":\"%.*s\","
                     "\"content\":{\"greeting\":\"hello, %.*s\",\"count\":%d,\"total\":%d,"
                     "\"init\":%d}}",
                     (int)sender_len, sender, (int)sender_len, sender, (int)count, (int)total,
                     (int)init_called);
    int32_t s = cx_send(out, n);

    char line[160];
    int ln = snprintf(line, sizeof line, "greeter: message %d (total %d) from %.*s, send=%d",
                      (int)count, (int)total, sender_len > 64 ? 64 : (int)sender_len, sender,
                      (int)s);
    cx_log(1, line, ln < (int)sizeof line ? ln : (int)sizeof line - 1);

    if (s != 0) rc = 3;
    free(out);
    free(ptr);
    return rc;
}
