/*
 * fields: reports what the SDK's JSON readers see in each message it gets.
 *
 * Replies `inform` to the sender with content
 *   {"one_pass": {<field>: <raw value text as a JSON string, or null>, ...},
 *    "per_field": {... the same fields found with caxton_json_field ...},
 *    "rc": <caxton_message_read's result>}
 * so a test can compare both readers on tricky JSON (escaped keys, whitespace,
 * repeated keys, nested values). Used by tests/runtime/test_sdk_message_read.py.
 */
#include "caxton.h"

static const char *const NAMES[] = {"sender",          "receiver",   "performative",
                                    "content",         "conversation_id", "reply_with",
                                    "in_reply_to",     "message_id"};

static void put(caxton_sb *sb, const char *name, const char *v, size_t vl, int first) {
    if (!first) caxton_sb_char(sb, ',');
    caxton_sb_json_str(sb, name, strlen(name));
    caxton_sb_char(sb, ':');
    if (v == NULL)
        caxton_sb_cstr(sb, "null");
    else
        caxton_sb_json_str(sb, v, vl);
}

static char out[16384];

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    size_t n = (size_t)len;
    caxton_message m;
    int rc = caxton_message_read(msg, n, &m);
    const caxton_field fields[] = {m.sender,          m.receiver,   m.performative,
                                   m.content,         m.conversation_id, m.reply_with,
                                   m.in_reply_to,     m.message_id};
    caxton_sb sb;
    caxton_sb_init(&sb, out, sizeof out);
    caxton_sb_cstr(&sb, "{\"receiver\":\"observer\",\"performative\":\"inform\",\"content\":{");
    caxton_sb_cstr(&sb, "\"one_pass\":{");
    for (size_t k = 0; k < 8; k++) put(&sb, NAMES[k], fields[k].ptr, fields[k].len, k == 0);
    caxton_sb_cstr(&sb, "},\"per_field\":{");
    for (size_t k = 0; k < 8; k++) {
        const char *v;
        size_t vl;
        if (caxton_json_field(msg, n, NAMES[k], &v, &vl) != 0) v = NULL;
        put(&sb, NAMES[k], v, v ? vl : 0, k == 0);
    }
    caxton_sb_cstr(&sb, "},\"rc\":");
    caxton_sb_int(&sb, rc);
    caxton_sb_cstr(&sb, "}}");
    if (sb.overflow) return 2;
    return caxton_send(out, sb.len) == 0 ? 0 : 1;
}
