/*
 * caxton.h: the C SDK for Caxton agents (agent ABI version 1).
 *
 * Header-only, C11, needs nothing but wasi-libc. Build an agent with
 *
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-all \
 *         -Wl,-z,stack-size=16384 -I sdk/c -o my-agent.wasm my-agent.c
 *
 * (command agents: -mexec-model=command -DCAXTON_COMMAND=1). See docs/agents.md.
 *
 * ---------------------------------------------------------------------------
 * Reactor agent (the usual kind): a long-lived instance that keeps its state in
 * linear memory between messages. You write one function:
 *
 *   #include "caxton.h"
 *
 *   CAXTON_EXPORT("caxton_handle")
 *   int32_t caxton_handle(const char *msg, int32_t len) {
 *       const char *content; size_t clen;
 *       if (caxton_json_field(msg, (size_t)len, "content", &content, &clen) != 0)
 *           return 1;                                   // failed: dead-lettered
 *       return caxton_reply_n(msg, (size_t)len, "inform", content, clen) == 0 ? 0 : 1;
 *   }
 *
 * This header defines the `caxton_alloc` export for you (see CAXTON_NO_DEFAULT_ALLOC).
 * The message is UTF-8 JSON (docs/messaging.md, "The message"). With the default allocator it is
 * also NUL-terminated (msg[len] == 0) and stays valid until caxton_handle returns.
 * Return 0 when the message was handled; anything else fails it (the runtime
 * dead-letters it and sends a `failure` to a sender that asked for a reply).
 * Optionally export `caxton_init` (() -> i32, non-zero = failed to start).
 *
 * Command agent: a plain WASI program. Define CAXTON_COMMAND before including this
 * header (the repository's build script passes -DCAXTON_COMMAND=1 for sources marked
 * `// caxton-mode: command`). Each message starts a fresh instance; read the message
 * with caxton_read_stdin(). In this mode caxton_send() writes one line to stdout (the
 * runtime turns each JSON-object line into an outgoing message) and the logging
 * functions write to stderr (the agent's log). kv and schedule are reactor-only here.
 *
 * ---------------------------------------------------------------------------
 * Return codes. The host functions return 0 or one of these (never anything else):
 *   CAXTON_ERR_MALFORMED      -1  not a valid message (or key/value), or no such field
 *   CAXTON_ERR_TOO_LARGE      -2  over the configured size limit (or your buffer)
 *   CAXTON_ERR_NOT_PERMITTED  -3  the agent may not do this (e.g. not inside a handler)
 *   CAXTON_ERR_BACKPRESSURE   -4  the receiver's mailbox is full: try again later
 *   CAXTON_ERR_OVER_BUDGET    -7  send: over the agent's send budget (per message or
 *                                 per second); nothing was sent
 *   CAXTON_ERR_QUOTA          -8  over the agent's quota: kv keys or bytes (kv_set),
 *                                 pending timers (schedule); nothing was kept
 *   CAXTON_ERR_STORAGE        -9  kv_set/kv_delete/schedule: the node cannot write its
 *                                 store (disk full): nothing was changed; try again later
 * kv_get and kv_delete use -1 for "absent" (CAXTON_KV_ABSENT).
 * The JSON helpers of this SDK (never the host) also return
 *   CAXTON_JSON_NOT_FOUND     -5  the object has no such field
 *   CAXTON_JSON_WRONG_TYPE    -6  the field exists but has another JSON type
 *
 * The JSON helpers are a small scanner, not a validator: they never read outside
 * the (ptr, len) you give them and never recurse, they find *top-level* fields of an
 * object (the first one wins if a key is repeated), and they trust the runtime to
 * have delivered valid JSON. Message text is not copied unless a function says so.
 */
#ifndef CAXTON_H
#define CAXTON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef CAXTON_COMMAND
#include <unistd.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** The agent ABI version this header implements. */
#define CAXTON_ABI_VERSION 1

#define CAXTON_OK 0
#define CAXTON_ERR_MALFORMED (-1)
#define CAXTON_ERR_TOO_LARGE (-2)
#define CAXTON_ERR_NOT_PERMITTED (-3)
#define CAXTON_ERR_BACKPRESSURE (-4)
#define CAXTON_ERR_OVER_BUDGET (-7)
#define CAXTON_ERR_QUOTA (-8)
#define CAXTON_ERR_STORAGE (-9)
#define CAXTON_KV_ABSENT (-1)
#define CAXTON_JSON_NOT_FOUND (-5)
#define CAXTON_JSON_WRONG_TYPE (-6)

/** Log levels of the `log` import. */
#define CAXTON_LOG_DEBUG 0
#define CAXTON_LOG_INFO 1
#define CAXTON_LOG_WARN 2
#define CAXTON_LOG_ERROR 3

/** Size of the buffer caxton_logf formats into; longer lines are cut and end in "...". */
#ifndef CAXTON_LOG_BUFFER
#define CAXTON_LOG_BUFFER 512
#endif

/** Mark a function as a WebAssembly export: CAXTON_EXPORT("caxton_handle"). */
#define CAXTON_EXPORT(name) __attribute__((export_name(name), used))

/* ======================================================================== */
/* Host imports, module "caxton" (exact ABI v1 signatures; pointers are i32). */
/* ======================================================================== */

#define CAXTON__IMPORT(name) __attribute__((import_module("caxton"), import_name(name)))

#ifndef CAXTON_COMMAND
/** send(ptr, len) -> i32: send one JSON message. 0 or CAXTON_ERR_*. */
CAXTON__IMPORT("send") int32_t caxton_host_send(const char *ptr, int32_t len);
/** log(level, ptr, len): one log line at CAXTON_LOG_* level. */
CAXTON__IMPORT("log") void caxton_host_log(int32_t level, const char *ptr, int32_t len);
/** kv_get(kptr, klen, vptr, vcap) -> i32: full value length (copied only if <= vcap), -1 absent. */
CAXTON__IMPORT("kv_get")
int32_t caxton_host_kv_get(const char *kptr, int32_t klen, void *vptr, int32_t vcap);
/** kv_set(kptr, klen, vptr, vlen) -> i32: 0 or a negative CAXTON_ERR_*. Durable. */
CAXTON__IMPORT("kv_set")
int32_t caxton_host_kv_set(const char *kptr, int32_t klen, const void *vptr, int32_t vlen);
/** kv_delete(kptr, klen) -> i32: 0, -1 if absent, or CAXTON_ERR_STORAGE. */
CAXTON__IMPORT("kv_delete") int32_t caxton_host_kv_delete(const char *kptr, int32_t klen);
/** schedule(delay_ms: i64, ptr, len) -> i32: send the message later; codes as send. */
CAXTON__IMPORT("schedule")
int32_t caxton_host_schedule(int64_t delay_ms, const char *ptr, int32_t len);
#endif

/* ======================================================================== */
/* The caxton_alloc export and the inbound message buffer.                   */
/* ======================================================================== */

#if !defined(CAXTON_COMMAND) && !defined(CAXTON_NO_DEFAULT_ALLOC)
/*
 * The host calls caxton_alloc(len) before every message and writes exactly len
 * bytes at the returned pointer, then calls caxton_handle(ptr, len). The guest owns
 * that buffer. This default keeps exactly one inbound buffer: each call frees the
 * previous message's buffer and mallocs len + 1 bytes with a 0 in the last byte,
 * so the message handed to caxton_handle is NUL-terminated and memory does not
 * leak however long the agent runs. Do not keep `msg` pointers after
 * caxton_handle returns: copy what you need. If malloc fails the call traps, and
 * the runtime fails that message (memory limit reached).
 *
 * Defined weak, so every translation unit may include this header. To use your own
 * allocator, either define a (strong) caxton_alloc in another .c file, or define
 * CAXTON_NO_DEFAULT_ALLOC before including this header in the file that defines it.
 */
__attribute__((weak)) void *caxton__inbox;

__attribute__((weak, export_name("caxton_alloc"))) int32_t caxton_alloc(int32_t len) {
    free(caxton__inbox);
    caxton__inbox = NULL;
    size_t n = (size_t)(uint32_t)len;
    char *p = (char *)malloc(n + 1);
    if (p == NULL) __builtin_trap();
    p[n] = 0;
    caxton__inbox = p;
    return (int32_t)(uintptr_t)p;
}
#endif

/* ======================================================================== */
/* Sending and logging.                                                      */
/* ======================================================================== */

/**
 * Send one message: `json` is a JSON object of `len` bytes with at least
 * `receiver`, `performative` and `content`. The host sets `sender` and
 * `message_id`, inherits the current `conversation_id` unless you set one, and
 * fills `in_reply_to` when the message goes to the current message's sender.
 * Returns 0 or CAXTON_ERR_MALFORMED / _TOO_LARGE / _NOT_PERMITTED / _BACKPRESSURE.
 * Command mode: writes the message as one stdout line (raw CR/LF bytes, which can
 * only be whitespace in valid JSON, become spaces); returns 0 or -1 on write error.
 */
static inline int caxton_send(const char *json, size_t len) {
#ifdef CAXTON_COMMAND
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || json[i] == '\n' || json[i] == '\r') {
            if (i > start && fwrite(json + start, 1, i - start, stdout) != i - start) return -1;
            if (i < len && fputc(' ', stdout) == EOF) return -1;
            start = i + 1;
        }
    }
    if (fputc('\n', stdout) == EOF || fflush(stdout) != 0) return -1;
    return 0;
#else
    if (len > INT32_MAX) return CAXTON_ERR_TOO_LARGE;
    return caxton_host_send(json, (int32_t)len);
#endif
}

/** caxton_send() of a NUL-terminated JSON string. */
static inline int caxton_send_str(const char *json) { return caxton_send(json, strlen(json)); }

/** Log `len` bytes at `level` (CAXTON_LOG_*). No formatting: the cheap way to log. */
static inline void caxton_log(int level, const char *text, size_t len) {
#ifdef CAXTON_COMMAND
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "%s: %.*s\n", names[level & 3], (int)(len > INT32_MAX ? INT32_MAX : len), text);
#else
    caxton_host_log(level, text, (int32_t)(len > INT32_MAX ? INT32_MAX : len));
#endif
}

/** caxton_log() of a NUL-terminated string. */
static inline void caxton_log_str(int level, const char *text) {
    caxton_log(level, text, strlen(text));
}

/**
 * printf-style logging into a CAXTON_LOG_BUFFER-byte buffer on the stack (longer
 * text is cut and ends in "..."). Pulls vsnprintf into the module (~10 KB); use
 * caxton_log() in hot paths.
 */
__attribute__((format(printf, 2, 3))) static inline void caxton_logf(int level, const char *fmt,
                                                                      ...) {
    char buf[CAXTON_LOG_BUFFER];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n;
    if (len >= sizeof buf) {
        len = sizeof buf - 1;
        memcpy(buf + len - 3, "...", 3);
    }
    caxton_log(level, buf, len);
}

#define caxton_log_debug(...) caxton_logf(CAXTON_LOG_DEBUG, __VA_ARGS__)
#define caxton_log_info(...) caxton_logf(CAXTON_LOG_INFO, __VA_ARGS__)
#define caxton_log_warn(...) caxton_logf(CAXTON_LOG_WARN, __VA_ARGS__)
#define caxton_log_error(...) caxton_logf(CAXTON_LOG_ERROR, __VA_ARGS__)

/* ======================================================================== */
/* Key/value store and timers (reactor agents).                              */
/* ======================================================================== */

#ifndef CAXTON_COMMAND
/**
 * Copy the value of `key` (NUL-terminated) into buf[0..cap). Returns the value's
 * full length (nothing is copied if it is larger than `cap`: call again with a
 * bigger buffer), or CAXTON_KV_ABSENT (-1). No NUL is added.
 */
static inline int32_t caxton_kv_get(const char *key, void *buf, size_t cap) {
    return caxton_host_kv_get(key, (int32_t)strlen(key), buf,
                              (int32_t)(cap > INT32_MAX ? INT32_MAX : cap));
}

/** Store `len` bytes under `key`; durable across restarts. 0 or CAXTON_ERR_*. */
static inline int32_t caxton_kv_set(const char *key, const void *val, size_t len) {
    if (len > INT32_MAX) return CAXTON_ERR_TOO_LARGE;
    return caxton_host_kv_set(key, (int32_t)strlen(key), val, (int32_t)len);
}

/** Delete `key`: 0, or CAXTON_KV_ABSENT (-1) if it was not there. */
static inline int32_t caxton_kv_delete(const char *key) {
    return caxton_host_kv_delete(key, (int32_t)strlen(key));
}

/**
 * Send the JSON message `json` (NUL-terminated) after `delay_ms` milliseconds
 * (timers, periodic work: schedule a message to yourself). Codes as caxton_send().
 */
static inline int32_t caxton_schedule(int64_t delay_ms, const char *json) {
    size_t len = strlen(json);
    if (len > INT32_MAX) return CAXTON_ERR_TOO_LARGE;
    return caxton_host_schedule(delay_ms, json, (int32_t)len);
}
#endif

#ifdef CAXTON_COMMAND
/**
 * Command agents: read all of stdin (the message) into a malloc'd, NUL-terminated
 * buffer and store its length in *len. Returns NULL on a read or memory error.
 */
static inline char *caxton_read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = (char *)malloc(cap);
    if (buf == NULL) return NULL;
    for (;;) {
        if (cap - n < 2) {
            char *bigger = (char *)realloc(buf, cap * 2);
            if (bigger == NULL) break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t got = read(0, buf + n, cap - n - 1);
        if (got == 0) {
            buf[n] = 0;
            *len = n;
            return buf;
        }
        if (got < 0) break;
        n += (size_t)got;
    }
    free(buf);
    return NULL;
}
#endif

/* ======================================================================== */
/* String builder: a bounded buffer you append JSON pieces to.               */
/* ======================================================================== */

/**
 * caxton_sb: appends never write past `cap` bytes; once something does not fit
 * the builder is marked overflowed and later appends do nothing. The text is
 * always NUL-terminated (cap must be >= 1).
 *
 *   char out[256]; caxton_sb sb; caxton_sb_init(&sb, out, sizeof out);
 *   caxton_sb_raw(&sb, "{\"n\":", 5); caxton_sb_int(&sb, 42); caxton_sb_char(&sb, '}');
 *   if (caxton_sb_finish(&sb) < 0) ...too large...
 */
typedef struct caxton_sb {
    char *buf;
    size_t cap;
    size_t len;
    int overflow;
} caxton_sb;

/** Start an empty builder over buf[0..cap). */
static inline void caxton_sb_init(caxton_sb *sb, char *buf, size_t cap) {
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->overflow = cap == 0;
    if (cap) buf[0] = 0;
}

/** Append n raw bytes (for JSON you already have: a value span, a literal). */
static inline void caxton_sb_raw(caxton_sb *sb, const char *s, size_t n) {
    if (sb->overflow) return;
    if (n >= sb->cap - sb->len) {
        sb->overflow = 1;
        return;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = 0;
}

/** Append a NUL-terminated string raw. */
static inline void caxton_sb_cstr(caxton_sb *sb, const char *s) { caxton_sb_raw(sb, s, strlen(s)); }

/** Append one raw byte. */
static inline void caxton_sb_char(caxton_sb *sb, char c) { caxton_sb_raw(sb, &c, 1); }

/**
 * Append n bytes of text escaped for the inside of a JSON string (no quotes):
 * " \ and control characters escaped, bytes >= 0x80 copied (give it UTF-8).
 */
static inline void caxton_sb_escaped(caxton_sb *sb, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        caxton_sb_raw(sb, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, '0', '0', hex[c >> 4], hex[c & 15]};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default: esc[1] = 'u'; elen = 6;
        }
        caxton_sb_raw(sb, esc, elen);
    }
    caxton_sb_raw(sb, s + run, n - run);
}

/** Append n bytes of text as a JSON string: quoted and escaped (caxton_sb_escaped). */
static inline void caxton_sb_json_str(caxton_sb *sb, const char *s, size_t n) {
    caxton_sb_char(sb, '"');
    caxton_sb_escaped(sb, s, n);
    caxton_sb_char(sb, '"');
}

/** Append a decimal integer (no snprintf). */
static inline void caxton_sb_int(caxton_sb *sb, int64_t v) {
    char tmp[21];
    size_t i = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    caxton_sb_raw(sb, tmp + i, sizeof tmp - i);
}

/** The text's length (>= 0), or CAXTON_ERR_TOO_LARGE if something did not fit. */
static inline int caxton_sb_finish(const caxton_sb *sb) {
    return sb->overflow ? CAXTON_ERR_TOO_LARGE : (int)sb->len;
}

/**
 * Escape n bytes of text for use inside a JSON string (no quotes added) into
 * out[0..cap), NUL-terminated. Returns the escaped length, or CAXTON_ERR_TOO_LARGE.
 */
static inline int caxton_json_escape(const char *s, size_t n, char *out, size_t cap) {
    caxton_sb sb;
    caxton_sb_init(&sb, out, cap);
    caxton_sb_escaped(&sb, s, n);
    return caxton_sb_finish(&sb);
}

/* ======================================================================== */
/* JSON reading.                                                             */
/* ======================================================================== */

/* Internal: index after whitespace. */
static inline size_t caxton__ws(const char *s, size_t i, size_t n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* Internal: s[i] is '"'; index after the closing quote, or 0 if malformed. */
static inline size_t caxton__skip_string(const char *s, size_t i, size_t n) {
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') return i + 1;
        if (c == '\\')
            i++;
        else if (c < 0x20)
            return 0;
    }
    return 0;
}

/* Internal: index after the value starting at s[i], or 0 if malformed. No recursion. */
static inline size_t caxton__skip_value(const char *s, size_t i, size_t n) {
    if (i >= n) return 0;
    char c = s[i];
    if (c == '"') return caxton__skip_string(s, i, n);
    if (c == '{' || c == '[') {
        size_t depth = 0;
        while (i < n) {
            c = s[i];
            if (c == '"') {
                i = caxton__skip_string(s, i, n);
                if (i == 0) return 0;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
            i++;
        }
        return 0;
    }
    size_t j = i;
    while (j < n && ((s[j] >= '0' && s[j] <= '9') || (s[j] >= 'a' && s[j] <= 'z') ||
                     s[j] == '-' || s[j] == '+' || s[j] == '.' || s[j] == 'E'))
        j++;
    return j > i ? j : 0;
}

static inline int caxton__hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/**
 * Decode the inside of a JSON string (the n bytes between the quotes, escapes
 * still in) into out[0..cap) as UTF-8, NUL-terminated. Handles \" \\ \/ \b \f \n
 * \r \t and \uXXXX (surrogate pairs joined; a lone surrogate becomes U+FFFD).
 * Returns the decoded length, CAXTON_ERR_MALFORMED, or CAXTON_ERR_TOO_LARGE.
 */
static inline int caxton_json_unescape(const char *raw, size_t n, char *out, size_t cap) {
    caxton_sb sb;
    caxton_sb_init(&sb, out, cap);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] != '\\') continue;
        caxton_sb_raw(&sb, raw + run, i - run);
        if (++i >= n) return CAXTON_ERR_MALFORMED;
        char c = raw[i];
        run = i + 1;
        switch (c) {
        case '"': case '\\': case '/': caxton_sb_char(&sb, c); continue;
        case 'b': caxton_sb_char(&sb, '\b'); continue;
        case 'f': caxton_sb_char(&sb, '\f'); continue;
        case 'n': caxton_sb_char(&sb, '\n'); continue;
        case 'r': caxton_sb_char(&sb, '\r'); continue;
        case 't': caxton_sb_char(&sb, '\t'); continue;
        case 'u': break;
        default: return CAXTON_ERR_MALFORMED;
        }
        uint32_t cp;
        if (n - i < 5 || caxton__hex4(raw + i + 1, &cp) != 0) return CAXTON_ERR_MALFORMED;
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (n - i >= 7 && raw[i + 1] == '\\' && raw[i + 2] == 'u' &&
                caxton__hex4(raw + i + 3, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        run = i + 1;
        char u[4];
        size_t ul;
        if (cp < 0x80) {
            u[0] = (char)cp;
            ul = 1;
        } else if (cp < 0x800) {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            ul = 2;
        } else if (cp < 0x10000) {
            u[0] = (char)(0xE0 | (cp >> 12));
            u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (char)(0x80 | (cp & 0x3F));
            ul = 3;
        } else {
            u[0] = (char)(0xF0 | (cp >> 18));
            u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[3] = (char)(0x80 | (cp & 0x3F));
            ul = 4;
        }
        caxton_sb_raw(&sb, u, ul);
    }
    caxton_sb_raw(&sb, raw + run, n - run);
    return caxton_sb_finish(&sb);
}

/* Internal: does the raw (still escaped) key equal `key`? */
static inline int caxton__key_eq(const char *raw, size_t n, const char *key, size_t klen) {
    if (memchr(raw, '\\', n) == NULL) return n == klen && memcmp(raw, key, n) == 0;
    char tmp[256];
    int got = caxton_json_unescape(raw, n, tmp, sizeof tmp);
    return got >= 0 && (size_t)got == klen && memcmp(tmp, key, klen) == 0;
}

/**
 * Iterate over the top-level fields of the JSON object json[0..len). Start with
 * *pos = 0; each call points (*key, *key_len) at the next raw key (without its
 * quotes, still escaped) and (*val, *val_len) at its raw value text, and returns
 * 1, or 0 after the last field, or CAXTON_ERR_MALFORMED (not an object).
 * *key_escaped is set when the key contains a backslash escape.
 */
static inline int caxton_json_next(const char *json, size_t len, size_t *pos, const char **key,
                                   size_t *key_len, int *key_escaped, const char **val,
                                   size_t *val_len) {
    size_t i = *pos;
    if (i == 0) {
        i = caxton__ws(json, 0, len);
        if (i >= len || json[i] != '{') return CAXTON_ERR_MALFORMED;
        i = caxton__ws(json, i + 1, len);
        if (i < len && json[i] == '}') return 0;
    } else {
        i = caxton__ws(json, i, len);
        if (i >= len) return CAXTON_ERR_MALFORMED;
        if (json[i] == '}') return 0;
        if (json[i] != ',') return CAXTON_ERR_MALFORMED;
        i = caxton__ws(json, i + 1, len);
    }
    if (i >= len || json[i] != '"') return CAXTON_ERR_MALFORMED;
    /* The key: a plain scan that notes escapes (keys are short and rarely escaped). */
    size_t kstart = i + 1, k = kstart;
    int escaped = 0;
    for (;;) {
        if (k >= len) return CAXTON_ERR_MALFORMED;
        unsigned char c = (unsigned char)json[k];
        if (c == '"') break;
        if (c == '\\') {
            escaped = 1;
            k++;
        } else if (c < 0x20) {
            return CAXTON_ERR_MALFORMED;
        }
        k++;
    }
    i = caxton__ws(json, k + 1, len);
    if (i >= len || json[i] != ':') return CAXTON_ERR_MALFORMED;
    i = caxton__ws(json, i + 1, len);
    size_t vend = caxton__skip_value(json, i, len);
    if (vend == 0) return CAXTON_ERR_MALFORMED;
    *key = json + kstart;
    *key_len = k - kstart;
    *key_escaped = escaped;
    *val = json + i;
    *val_len = vend - i;
    *pos = vend;
    return 1;
}

/**
 * Find the top-level field `key` of the JSON object json[0..len) and point
 * (*val, *val_len) at its raw value text (a string value includes its quotes).
 * Returns 0, CAXTON_JSON_NOT_FOUND, or CAXTON_ERR_MALFORMED (not an object).
 * To read several fields of a message, caxton_message_read() is one pass instead
 * of one per field.
 */
static inline int caxton_json_field(const char *json, size_t len, const char *key, const char **val,
                                    size_t *val_len) {
    size_t klen = strlen(key), pos = 0, rawlen, vlen;
    const char *raw, *v;
    int escaped, rc;
    while ((rc = caxton_json_next(json, len, &pos, &raw, &rawlen, &escaped, &v, &vlen)) == 1) {
        if (escaped ? caxton__key_eq(raw, rawlen, key, klen)
                    : rawlen == klen && memcmp(raw, key, klen) == 0) {
            *val = v;
            *val_len = vlen;
            return CAXTON_OK;
        }
    }
    return rc == 0 ? CAXTON_JSON_NOT_FOUND : rc;
}

/** A field's raw JSON value text (strings keep their quotes); ptr NULL if absent. */
typedef struct caxton_field {
    const char *ptr;
    size_t len;
} caxton_field;

/** The envelope fields of a message (docs/messaging.md, "The message"), read by caxton_message_read(). */
typedef struct caxton_message {
    caxton_field sender, receiver, performative, content, conversation_id, reply_with,
        in_reply_to, message_id;
} caxton_message;

/**
 * Read the envelope fields of the message msg[0..len) in one pass (the first
 * occurrence of a repeated key wins, as for caxton_json_field). Returns 0 or
 * CAXTON_ERR_MALFORMED. Absent fields are {NULL, 0}.
 */
static inline int caxton_message_read(const char *msg, size_t len, caxton_message *m) {
    memset(m, 0, sizeof *m);
    size_t pos = 0, klen, vlen;
    const char *key, *v;
    int escaped, rc;
    char tmp[32];
    while ((rc = caxton_json_next(msg, len, &pos, &key, &klen, &escaped, &v, &vlen)) == 1) {
        if (escaped) { /* rare: compare the unescaped key */
            int got = caxton_json_unescape(key, klen, tmp, sizeof tmp);
            if (got < 0) continue;
            key = tmp;
            klen = (size_t)got;
        }
        caxton_field *f = NULL;
        switch (klen) {
        case 6:
            if (memcmp(key, "sender", 6) == 0) f = &m->sender;
            break;
        case 7:
            if (memcmp(key, "content", 7) == 0) f = &m->content;
            break;
        case 8:
            if (memcmp(key, "receiver", 8) == 0) f = &m->receiver;
            break;
        case 10:
            if (memcmp(key, "message_id", 10) == 0)
                f = &m->message_id;
            else if (memcmp(key, "reply_with", 10) == 0)
                f = &m->reply_with;
            break;
        case 11:
            if (memcmp(key, "in_reply_to", 11) == 0) f = &m->in_reply_to;
            break;
        case 12:
            if (memcmp(key, "performative", 12) == 0) f = &m->performative;
            break;
        case 15:
            if (memcmp(key, "conversation_id", 15) == 0) f = &m->conversation_id;
            break;
        default:
            break;
        }
        if (f != NULL && f->ptr == NULL) {
            f->ptr = v;
            f->len = vlen;
        }
    }
    return rc == 0 ? CAXTON_OK : rc;
}

/** 1 if the raw JSON text v[0..vl) is exactly `raw` (e.g. "\"inform\""). */
static inline int caxton_raw_eq(const char *v, size_t vl, const char *raw) {
    return vl == strlen(raw) && memcmp(v, raw, vl) == 0;
}

/** 1 if the field is present and its raw JSON text is exactly `raw` (e.g. "\"inform\""). */
static inline int caxton_field_is(caxton_field f, const char *raw) {
    return f.ptr != NULL && caxton_raw_eq(f.ptr, f.len, raw);
}

/** 1 if the top-level field `key` of json[0..len) has exactly the raw JSON text `raw`. */
static inline int caxton_json_field_is(const char *json, size_t len, const char *key,
                                       const char *raw) {
    const char *v;
    size_t vl;
    return caxton_json_field(json, len, key, &v, &vl) == 0 && caxton_raw_eq(v, vl, raw);
}

/** 1 if json[0..len) is exactly one JSON object (plus whitespace), else 0. Shallow check. */
static inline int caxton_json_is_object(const char *json, size_t len) {
    size_t i = caxton__ws(json, 0, len);
    if (i >= len || json[i] != '{') return 0;
    size_t end = caxton__skip_value(json, i, len);
    return end != 0 && caxton__ws(json, end, len) == len;
}

/**
 * Decode a raw JSON string value (with its quotes, e.g. from caxton_json_field)
 * into out[0..cap) like caxton_json_unescape. Returns the decoded length,
 * CAXTON_JSON_WRONG_TYPE (not a string), CAXTON_ERR_MALFORMED or _TOO_LARGE.
 */
static inline int caxton_json_string_value(const char *val, size_t n, char *out, size_t cap) {
    if (n < 2 || val[0] != '"' || val[n - 1] != '"') return CAXTON_JSON_WRONG_TYPE;
    return caxton_json_unescape(val + 1, n - 2, out, cap);
}

/**
 * Copy the string field `key` of the object json[0..len), unescaped and
 * NUL-terminated, into out[0..cap). Returns its length, or CAXTON_JSON_NOT_FOUND,
 * CAXTON_JSON_WRONG_TYPE, CAXTON_ERR_MALFORMED, CAXTON_ERR_TOO_LARGE.
 */
static inline int caxton_json_get_string(const char *json, size_t len, const char *key, char *out,
                                         size_t cap) {
    const char *v;
    size_t vl;
    int rc = caxton_json_field(json, len, key, &v, &vl);
    if (rc != 0) return rc;
    return caxton_json_string_value(v, vl, out, cap);
}

/**
 * Read the integer field `key` (e.g. 42, -7; not 1.5 or 1e3) of the object
 * json[0..len) into *out. Returns 0, CAXTON_JSON_NOT_FOUND, CAXTON_JSON_WRONG_TYPE,
 * CAXTON_ERR_MALFORMED, or CAXTON_ERR_TOO_LARGE (does not fit in int64_t).
 */
static inline int caxton_json_get_int(const char *json, size_t len, const char *key, int64_t *out) {
    const char *v;
    size_t vl;
    int rc = caxton_json_field(json, len, key, &v, &vl);
    if (rc != 0) return rc;
    size_t i = 0;
    int neg = 0;
    if (vl > 0 && v[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == vl) return CAXTON_JSON_WRONG_TYPE;
    uint64_t u = 0;
    for (; i < vl; i++) {
        if (v[i] < '0' || v[i] > '9') return CAXTON_JSON_WRONG_TYPE;
        unsigned d = (unsigned)(v[i] - '0');
        if (u > (UINT64_MAX - d) / 10) return CAXTON_ERR_TOO_LARGE;
        u = u * 10 + d;
    }
    if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX) return CAXTON_ERR_TOO_LARGE;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return CAXTON_OK;
}

/* ======================================================================== */
/* Building messages field by field, and sending replies.                    */
/* ======================================================================== */

/* Internal: append ,"<key>": (key: plain ASCII, written as given). */
static inline void caxton__msg_key(caxton_sb *sb, const char *key) {
    caxton_sb_raw(sb, ",\"", 2);
    caxton_sb_cstr(sb, key);
    caxton_sb_raw(sb, "\":", 2);
}

/** Append ,"<key>":<raw JSON> to a message being built. */
static inline void caxton_msg_raw(caxton_sb *sb, const char *key, const char *raw, size_t n) {
    caxton__msg_key(sb, key);
    caxton_sb_raw(sb, raw, n);
}

/** Append ,"<key>":"<text>" (n bytes of UTF-8 text, JSON-escaped). */
static inline void caxton_msg_str_n(caxton_sb *sb, const char *key, const char *text, size_t n) {
    caxton__msg_key(sb, key);
    caxton_sb_json_str(sb, text, n);
}

/** caxton_msg_str_n() of a NUL-terminated string. */
static inline void caxton_msg_str(caxton_sb *sb, const char *key, const char *text) {
    caxton_msg_str_n(sb, key, text, strlen(text));
}

/** Append ,"<key>":<integer>. */
static inline void caxton_msg_int(caxton_sb *sb, const char *key, int64_t value) {
    caxton__msg_key(sb, key);
    caxton_sb_int(sb, value);
}

/**
 * Start a message in `sb`: {"receiver":<receiver_json>,"performative":"<p>".
 * `receiver_json` is raw JSON (a quoted name or a list of names), as the fields
 * of caxton_message hold it. Add fields with caxton_msg_raw/_str/_int, then
 * caxton_msg_send() (or caxton_msg_end() to keep the text):
 *
 *   char out[512]; caxton_sb sb; caxton_sb_init(&sb, out, sizeof out);
 *   caxton_msg_begin(&sb, m.sender.ptr, m.sender.len, "propose");
 *   caxton_msg_str(&sb, "protocol", "fipa-contract-net");
 *   caxton_msg_raw(&sb, "content", "{\"price\":42}", 12);
 *   if (caxton_msg_send(&sb) != 0) ...
 */
static inline void caxton_msg_begin(caxton_sb *sb, const char *receiver_json, size_t rlen,
                                    const char *performative) {
    caxton_sb_raw(sb, "{\"receiver\":", 12);
    caxton_sb_raw(sb, receiver_json, rlen);
    caxton_msg_str(sb, "performative", performative);
}

/** Close the message: its length, or CAXTON_ERR_TOO_LARGE if it did not fit. */
static inline int caxton_msg_end(caxton_sb *sb) {
    caxton_sb_char(sb, '}');
    return caxton_sb_finish(sb);
}

/** Close the message and caxton_send() it. Returns the codes of caxton_send(). */
static inline int caxton_msg_send(caxton_sb *sb) {
    int n = caxton_msg_end(sb);
    return n < 0 ? n : caxton_send(sb->buf, (size_t)n);
}

/* Internal: send {"receiver":<receiver_json>,"performative":"<p>","content":<c>}. */
static inline int caxton__send3(const char *receiver_json, size_t rlen, const char *performative,
                                const char *content_json, size_t clen) {
    if (content_json == NULL || clen == 0) {
        content_json = "null";
        clen = 4;
    }
    size_t need = 48 + rlen + strlen(performative) + clen;
    char stackbuf[512];
    char *buf = need <= sizeof stackbuf ? stackbuf : (char *)malloc(need);
    if (buf == NULL) return CAXTON_ERR_TOO_LARGE;
    caxton_sb sb;
    caxton_sb_init(&sb, buf, need);
    caxton_msg_begin(&sb, receiver_json, rlen, performative);
    caxton_msg_raw(&sb, "content", content_json, clen);
    int rc = caxton_msg_send(&sb);
    if (buf != stackbuf) free(buf);
    return rc;
}

/**
 * Reply to the message msg[0..len): send `performative` with the raw JSON
 * `content_json` (content_len bytes; NULL or 0 means null) to the message's
 * `sender`. The host fills in `in_reply_to` (from the message's `reply_with`) and
 * the conversation. Returns 0, CAXTON_ERR_MALFORMED if the message has no sender,
 * or any code of caxton_send().
 */
static inline int caxton_reply_n(const char *msg, size_t len, const char *performative,
                                 const char *content_json, size_t content_len) {
    const char *sender;
    size_t slen;
    if (caxton_json_field(msg, len, "sender", &sender, &slen) != 0) return CAXTON_ERR_MALFORMED;
    return caxton__send3(sender, slen, performative, content_json, content_len);
}

/**
 * caxton_reply_n() for a message already read with caxton_message_read() (no
 * second scan of the message): replies to m->sender.
 */
static inline int caxton_reply_to(const caxton_message *m, const char *performative,
                                  const char *content_json, size_t content_len) {
    if (m->sender.ptr == NULL) return CAXTON_ERR_MALFORMED;
    return caxton__send3(m->sender.ptr, m->sender.len, performative, content_json, content_len);
}

/** caxton_reply_n() with NUL-terminated `content_json` (a JSON text such as "{\"ok\":true}"). */
static inline int caxton_reply(const char *msg, size_t len, const char *performative,
                               const char *content_json) {
    return caxton_reply_n(msg, len, performative, content_json,
                          content_json ? strlen(content_json) : 0);
}

/**
 * Send `performative` with the raw JSON `content_json` (NUL-terminated; NULL means
 * null) to the agent named `receiver`. Returns the codes of caxton_send().
 */
static inline int caxton_send_to(const char *receiver, const char *performative,
                                 const char *content_json) {
    char rbuf[160];
    caxton_sb sb;
    caxton_sb_init(&sb, rbuf, sizeof rbuf);
    caxton_sb_json_str(&sb, receiver, strlen(receiver));
    if (sb.overflow) return CAXTON_ERR_TOO_LARGE;
    return caxton__send3(rbuf, sb.len, performative, content_json,
                         content_json ? strlen(content_json) : 0);
}

#ifdef __cplusplus
}
#endif

#endif /* CAXTON_H */
