/*
 * Clean-room probe agent (DESIGN.md section 2 only, no SDK header): on each message it
 * exercises the kv_* and send return codes and replies "inform" to the caller with what
 * it saw. The caller's name is passed as the message content (a JSON string without
 * escapes), which keeps this agent free of a JSON parser.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAXTON_IMPORT(name) __attribute__((import_module("caxton"), import_name(name)))
#define CAXTON_EXPORT(name) __attribute__((export_name(name)))

CAXTON_IMPORT("send") int32_t cx_send(const void *ptr, int32_t len);
CAXTON_IMPORT("kv_get") int32_t cx_kv_get(const void *kptr, int32_t klen, void *vptr, int32_t vcap);
CAXTON_IMPORT("kv_set") int32_t cx_kv_set(const void *kptr, int32_t klen, const void *vptr, int32_t vlen);
CAXTON_IMPORT("kv_delete") int32_t cx_kv_delete(const void *kptr, int32_t klen);

#define S(lit) lit, (int32_t)(sizeof lit - 1)

CAXTON_EXPORT("caxton_alloc") void *caxton_alloc(int32_t len) { return malloc((size_t)len + 1); }

static int32_t send_str(const char *s) { return cx_send(s, (int32_t)strlen(s)); }

CAXTON_EXPORT("caxton_handle") int32_t caxton_handle(char *ptr, int32_t len) {
    ptr[len] = '\0';
    /* the reply goes to the name in "content":"<name>" */
    const char *c = strstr(ptr, "\"content\":\"");
    if (!c) c = strstr(ptr, "\"content\": \"");
    if (!c) {
        free(ptr);
        return 1;
    }
    c = strchr(c + 10, '"') + 1;
    const char *ce = strchr(c, '"');
    int name_len = (int)(ce - c);

    char small[4] = {'#', '#', '#', '#'};
    char big[16] = {0};
    int32_t get_absent = cx_kv_get(S("absent"), big, (int32_t)sizeof big);
    int32_t del_absent = cx_kv_delete(S("absent"));
    int32_t set_rc = cx_kv_set(S("k"), S("abcdef"));
    int32_t get_small = cx_kv_get(S("k"), small, (int32_t)sizeof small);
    int untouched = small[0] == '#' && small[1] == '#' && small[2] == '#' && small[3] == '#';
    int32_t get_big = cx_kv_get(S("k"), big, (int32_t)sizeof big);
    int same = get_big == 6 && memcmp(big, "abcdef", 6) == 0;
    int32_t set_empty = cx_kv_set(S("e"), "", 0);
    int32_t get_empty = cx_kv_get(S("e"), big, (int32_t)sizeof big);
    int32_t del_rc = cx_kv_delete(S("k"));
    int32_t get_after_del = cx_kv_get(S("k"), big, (int32_t)sizeof big);

    int32_t send_garbage = send_str("this is not json");
    int32_t send_no_perf = send_str("{\"receiver\":\"nobody-here\",\"content\":1}");
    int32_t send_bad_perf =
        send_str("{\"performative\":\"shout\",\"receiver\":\"nobody-here\",\"content\":1}");
    int32_t send_unknown =
        send_str("{\"performative\":\"inform\",\"receiver\":\"nobody-here\",\"content\":1}");

    char out[1024];
    int n = snprintf(out, sizeof out,
                     "{\"performative\":\"inform\",\"receiver\":\"%.*s\",\"sender\":\"mallory\","
                     "\"content\":{\"get_absent\":%d,\"del_absent\":%d,\"set\":%d,"
                     "\"get_small\":%d,\"small_untouched\":%d,\"get_big\":%d,\"same\":%d,"
                     "\"set_empty\":%d,\"get_empty\":%d,\"del\":%d,\"get_after_del\":%d,"
                     "\"send_garbage\":%d,\"send_no_perf\":%d,\"send_bad_perf\":%d,"
                     "\"send_unknown\":%d}}",
                     name_len, c, (int)get_absent, (int)del_absent, (int)set_rc, (int)get_small,
                     untouched, (int)get_big, same, (int)set_empty, (int)get_empty, (int)del_rc,
                     (int)get_after_del, (int)send_garbage, (int)send_no_perf,
                     (int)send_bad_perf, (int)send_unknown);
    int32_t rc = cx_send(out, n);
    free(ptr);
    return rc == 0 ? 0 : 2;
}
