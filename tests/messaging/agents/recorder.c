/*
 * recorder: remembers every message it handled in kv (key = the message_id, value "1"),
 * so a test can check after a kill -9 and a restart that every accepted message was handled.
 * Replies nothing. Built by tests/messaging/conftest.py with the C SDK.
 */
#include "caxton.h"

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    char id[128];
    if (caxton_json_get_string(msg, (size_t)len, "message_id", id, sizeof id) <= 0) return 1;
    return caxton_kv_set(id, "1", 1) == 0 ? 0 : 1;
}
