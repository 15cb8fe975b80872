/*
 * responder: the participant of the FIPA-request interaction protocol.
 *
 * Reactor agent. It performs two small, deterministic actions when asked with a
 * `request` whose content names the action:
 *
 *   {"action":"add","a":2,"b":3}      -> agree {"action":"add"},   inform {"result":5}
 *   {"action":"upper","text":"hi"}    -> agree {"action":"upper"}, inform {"result":"HI"}
 *   {"action":"fly"}                  -> refuse {"reason":"unknown action fly"}
 *   anything else (no object, no string action, add without integers a and b,
 *   upper without a string text)      -> not_understood {"error":"..."}
 *   add whose sum overflows int64     -> agree, then failure {"reason":"integer overflow"}
 *
 * Every reply goes to the request's sender with "protocol":"fipa-request"; the host
 * keeps the conversation and sets in_reply_to from the request's reply_with. Other
 * performatives get not_understood, except not_understood and failure (answering
 * those could make two agents talk forever), which are logged and ignored.
 *
 * Each message is read once (caxton_message_read); the replies use its sender, and
 * the action's arguments are read from its content.
 *
 *   caxton agent deploy examples/agents/responder.wasm --name responder
 *   caxton message send --to responder --performative request \
 *       --content '{"action":"add","a":2,"b":3}' --wait 5s
 * (--wait returns the first reply, the agree; `caxton conversation show` has both.)
 */
#include "caxton.h"

#define PROTOCOL "fipa-request"

/* Send {"receiver":<sender>,"performative":P,"protocol":...,"content":C} to m's sender. */
static int reply(const caxton_message *m, const char *performative, const char *content,
                 size_t clen) {
    if (m->sender.ptr == NULL) return CAXTON_ERR_MALFORMED;
    size_t cap = m->sender.len + clen + 96;
    char small[512];
    char *buf = cap <= sizeof small ? small : (char *)malloc(cap);
    if (buf == NULL) return CAXTON_ERR_TOO_LARGE;
    caxton_sb sb;
    caxton_sb_init(&sb, buf, cap);
    caxton_msg_begin(&sb, m->sender.ptr, m->sender.len, performative);
    caxton_msg_str(&sb, "protocol", PROTOCOL);
    caxton_msg_raw(&sb, "content", content, clen);
    int rc = caxton_msg_send(&sb);
    if (buf != small) free(buf);
    return rc;
}

/* Reply `performative` with content {"<key>":"<prefix><text>"}. */
static int reply_text(const caxton_message *m, const char *performative, const char *key,
                      const char *prefix, const char *text, size_t tlen) {
    size_t cap = strlen(key) + strlen(prefix) + tlen * 6 + 16;
    char *content = (char *)malloc(cap);
    if (content == NULL) return CAXTON_ERR_TOO_LARGE;
    caxton_sb sb;
    caxton_sb_init(&sb, content, cap);
    caxton_sb_cstr(&sb, "{\"");
    caxton_sb_cstr(&sb, key);
    caxton_sb_cstr(&sb, "\":\"");
    caxton_sb_cstr(&sb, prefix);
    caxton_sb_escaped(&sb, text, tlen);
    caxton_sb_cstr(&sb, "\"}");
    int rc = sb.overflow ? CAXTON_ERR_TOO_LARGE : reply(m, performative, content, sb.len);
    free(content);
    return rc;
}

static int32_t not_understood(const caxton_message *m, const char *why) {
    caxton_log_str(CAXTON_LOG_WARN, why);
    return reply_text(m, "not_understood", "error", "", why, strlen(why)) == 0 ? 0 : 1;
}

static int agree(const caxton_message *m, const char *action) {
    char content[64];
    caxton_sb sb;
    caxton_sb_init(&sb, content, sizeof content);
    caxton_sb_cstr(&sb, "{\"action\":\"");
    caxton_sb_cstr(&sb, action);
    caxton_sb_cstr(&sb, "\"}");
    return reply(m, "agree", content, sb.len);
}

static int32_t do_add(const caxton_message *m, const char *content, size_t clen) {
    int64_t a, b, sum;
    if (caxton_json_get_int(content, clen, "a", &a) != 0 ||
        caxton_json_get_int(content, clen, "b", &b) != 0)
        return not_understood(m, "add needs integers a and b");
    if (agree(m, "add") != 0) return 1;
    if (__builtin_add_overflow(a, b, &sum)) {
        const char *fail = "{\"reason\":\"integer overflow\"}";
        return reply(m, "failure", fail, strlen(fail)) == 0 ? 0 : 1;
    }
    char out[48];
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    caxton_sb_cstr(&sb, "{\"result\":");
    caxton_sb_int(&sb, sum);
    caxton_sb_char(&sb, '}');
    return reply(m, "inform", out, sb.len) == 0 ? 0 : 1;
}

static int32_t do_upper(const caxton_message *m, const char *content, size_t clen) {
    char *text = (char *)malloc(clen + 1);
    if (text == NULL) return 1;
    int tlen = caxton_json_get_string(content, clen, "text", text, clen + 1);
    int32_t rc;
    if (tlen < 0) {
        rc = not_understood(m, "upper needs a string text");
    } else if (agree(m, "upper") != 0) {
        rc = 1;
    } else {
        for (int i = 0; i < tlen; i++)
            if (text[i] >= 'a' && text[i] <= 'z') text[i] = (char)(text[i] - 'a' + 'A');
        rc = reply_text(m, "inform", "result", "", text, (size_t)tlen) == 0 ? 0 : 1;
    }
    free(text);
    return rc;
}

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    caxton_message m;
    /* The result is not checked: the runtime delivers only valid messages, and an absent
     * field is {NULL, 0}, which every use below allows for. */
    (void)caxton_message_read(msg, (size_t)len, &m);
    if (caxton_field_is(m.performative, "\"not_understood\"") ||
        caxton_field_is(m.performative, "\"failure\"")) {
        caxton_log(CAXTON_LOG_WARN, "responder: ignored a not_understood/failure", 43);
        return 0;
    }
    if (!caxton_field_is(m.performative, "\"request\""))
        return not_understood(&m, "responder expects a request");
    const char *content = m.content.ptr;
    size_t clen = m.content.len;
    if (content == NULL || !caxton_json_is_object(content, clen))
        return not_understood(&m, "content must be an object with a string action");
    char *action = (char *)malloc(clen + 1);
    if (action == NULL) return 1;
    int alen = caxton_json_get_string(content, clen, "action", action, clen + 1);
    int32_t rc;
    if (alen < 0)
        rc = not_understood(&m, "content must be an object with a string action");
    else if (alen == 3 && memcmp(action, "add", 3) == 0)
        rc = do_add(&m, content, clen);
    else if (alen == 5 && memcmp(action, "upper", 5) == 0)
        rc = do_upper(&m, content, clen);
    else
        rc = reply_text(&m, "refuse", "reason", "unknown action ", action, (size_t)alen) == 0
                 ? 0
                 : 1;
    free(action);
    return rc;
}
