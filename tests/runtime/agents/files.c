/*
 * files: writes to and deletes files in its granted directory (/data), for the
 * temp_storage_limit tests (tests/runtime/test_temp_storage.py).
 *
 * A request with content {"op": "write", "file": NAME, "bytes": N, "chunk": C} appends N bytes
 * to /data/NAME, C bytes per write() (default 4096); {"op": "truncate", "file": NAME, "size": N}
 * sets its size; {"op": "delete", "file": NAME} unlinks it; {"op": "stdio", "file": NAME,
 * "bytes": N} closes stdout first, then appends like "write" (a file must not get fd 1).
 * It replies `inform` to the sender with
 * {"written": <bytes written>, "errno": <errno of the failing call, 0 if none>, "fd": <fd>}.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "caxton.h"

static char block[65536];
static char reply[256];

static int last_fd = -1;

static int answer(const char *msg, size_t n, int64_t written, int err) {
    caxton_sb sb;
    caxton_sb_init(&sb, reply, sizeof reply);
    caxton_sb_cstr(&sb, "{\"written\":");
    caxton_sb_int(&sb, written);
    caxton_sb_cstr(&sb, ",\"errno\":");
    caxton_sb_int(&sb, err);
    caxton_sb_cstr(&sb, ",\"fd\":");
    caxton_sb_int(&sb, last_fd);
    caxton_sb_char(&sb, '}');
    return caxton_reply_n(msg, n, "inform", reply, sb.len) == 0 ? 0 : 1;
}

CAXTON_EXPORT("caxton_handle")
int32_t caxton_handle(const char *msg, int32_t len) {
    size_t n = (size_t)len;
    const char *content;
    size_t clen;
    char op[16], file[64], path[80];
    int64_t bytes = 0, chunk = 4096, size = 0;
    if (caxton_json_field(msg, n, "content", &content, &clen) != 0 ||
        caxton_json_get_string(content, clen, "op", op, sizeof op) < 0 ||
        caxton_json_get_string(content, clen, "file", file, sizeof file) < 0)
        return 2;
    strcpy(path, "/data/");
    strcat(path, file);
    if (strcmp(op, "delete") == 0) return answer(msg, n, 0, unlink(path) == 0 ? 0 : errno);
    if (strcmp(op, "truncate") == 0) {
        caxton_json_get_int(content, clen, "size", &size);
        return answer(msg, n, 0, truncate(path, (off_t)size) == 0 ? 0 : errno);
    }
    caxton_json_get_int(content, clen, "bytes", &bytes);
    caxton_json_get_int(content, clen, "chunk", &chunk);
    if (chunk <= 0 || chunk > (int64_t)sizeof block) chunk = sizeof block;
    memset(block, 'x', sizeof block);
    if (strcmp(op, "stdio") == 0) close(1);
    int fd = last_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return answer(msg, n, 0, errno);
    int64_t done = 0;
    int err = 0;
    while (done < bytes) {
        size_t want = (size_t)(bytes - done < chunk ? bytes - done : chunk);
        ssize_t w = write(fd, block, want);
        if (w < 0) {
            err = errno;
            break;
        }
        done += w;
    }
    close(fd);
    return answer(msg, n, done, err);
}
