/*
 * caxton.runtime.sandbox._accel.TraceContext: a worker's traced message, in C.
 *
 * The C twin of `caxton.wire.trace.TraceContext` (same attributes, methods and results; the
 * tests run both): the per-message work of a traced handling (checking the message's
 * ``traceparent``, a span id per handling and per send, the ``traceparent`` written into each
 * message sent, the handling's times and its record for the span builder) without the Python
 * calls, slices, formatting and integer objects it takes in Python (measured with
 * ``bench/bench_instructions.py --stack --traced``; docs/observability.md).
 *
 * Span ids come from splitmix64 over a counter seeded from ``os.urandom`` per context (one
 * per worker): distinct within a context for 2**64 ids, never zero, and uniformly spread as
 * W3C trace context asks; they are not meant to be unpredictable (nor are Python's).
 * Times are ``CLOCK_REALTIME`` nanoseconds, as ``time.time_ns``.
 *
 * A traced message starts ``{"traceparent":"00-<32 hex>-<16 hex>-01",`` (`caxton.wire.trace`);
 * the positions below are that layout's, and `accel.load` checks them against the Python
 * module's (`TRACE_LAYOUT`) before it uses this type.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_accel_trace.h"

static const char HEAD[] = "{\"traceparent\":\"00-"; /* through the version: TRACE_START */
#define TRACE_START 19
#define TRACE_END (TRACE_START + 32)
#define SPAN_END (TRACE_END + 1 + 16)
#define FIELD_END (SPAN_END + 5)
static const char TAIL[] = "-01\","; /* SPAN_END .. FIELD_END */
#define OPEN_LEN (TRACE_END + 1)      /* what every stamped message starts with */

static PyObject *HANDLE; /* "handle", interned: every record's first item */

typedef struct {
    PyObject_HEAD
    PyObject *message; /* bytes: the traced message (b"" before the first) */
    PyObject *agent;   /* str */
    PyObject *sends;   /* list: span id, time, bytes per message sent */
    PyObject *span_id; /* int: the handling's span id (0 before the first) */
    long long start;
    long long end;
    uint64_t state; /* splitmix64 */
    int active;     /* between `begin` and `finish` */
} TraceContext;

static uint64_t
next_id(TraceContext *self)
{
    uint64_t z;
    do {
        z = (self->state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
    } while (z == 0);
    return z;
}

static long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int
TraceContext_init(TraceContext *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist))
        return -1;
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL)
        return -1;
    PyObject *seed = PyObject_CallMethod(os, "urandom", "i", 8);
    Py_DECREF(os);
    if (seed == NULL)
        return -1;
    if (!PyBytes_Check(seed) || PyBytes_GET_SIZE(seed) != 8) {
        Py_DECREF(seed);
        PyErr_SetString(PyExc_RuntimeError, "os.urandom(8) did not return 8 bytes");
        return -1;
    }
    memcpy(&self->state, PyBytes_AS_STRING(seed), 8);
    Py_DECREF(seed);
    Py_XSETREF(self->message, PyBytes_FromStringAndSize(NULL, 0));
    Py_XSETREF(self->agent, PyUnicode_FromString(""));
    Py_XSETREF(self->sends, PyList_New(0));
    Py_XSETREF(self->span_id, PyLong_FromLong(0));
    if (self->message == NULL || self->agent == NULL || self->sends == NULL ||
        self->span_id == NULL)
        return -1;
    self->active = 0;
    return 0;
}

static int
TraceContext_traverse(TraceContext *self, visitproc visit, void *arg)
{
    Py_VISIT(self->sends);
    return 0;
}

static int
TraceContext_clear(TraceContext *self)
{
    Py_CLEAR(self->message);
    Py_CLEAR(self->agent);
    Py_CLEAR(self->sends);
    Py_CLEAR(self->span_id);
    return 0;
}

static void
TraceContext_dealloc(TraceContext *self)
{
    PyObject_GC_UnTrack(self);
    TraceContext_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(TraceContext *self)
{
    if (self->sends == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "TraceContext.__init__ was not called");
        return 0;
    }
    return 1;
}

/* begin(message, agent) -> int | None */
static PyObject *
TraceContext_begin(TraceContext *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "begin(message, agent) takes 2 arguments");
        return NULL;
    }
    if (!ready(self))
        return NULL;
    PyObject *agent = args[1];
    if (!PyUnicode_Check(agent)) {
        PyErr_SetString(PyExc_TypeError, "begin(message: bytes, agent: str)");
        return NULL;
    }
    self->active = 0;
    /* Messages are bytes; another bytes-like object is copied (the context keeps it). */
    PyObject *message = PyBytes_Check(args[0]) ? Py_NewRef(args[0]) : PyBytes_FromObject(args[0]);
    if (message == NULL)
        return NULL;
    const char *data = PyBytes_AS_STRING(message);
    if (PyBytes_GET_SIZE(message) < FIELD_END || memcmp(data, HEAD, TRACE_START) != 0 ||
        memcmp(data + SPAN_END, TAIL, FIELD_END - SPAN_END) != 0) {
        Py_DECREF(message);
        Py_RETURN_NONE;
    }
    PyObject *span = PyLong_FromUnsignedLongLong(next_id(self));
    if (span == NULL ||
        (PyList_GET_SIZE(self->sends) && PyList_SetSlice(self->sends, 0, PY_SSIZE_T_MAX, NULL))) {
        Py_XDECREF(span);
        Py_DECREF(message);
        return NULL;
    }
    Py_SETREF(self->message, message);
    Py_INCREF(agent);
    Py_SETREF(self->agent, agent);
    Py_SETREF(self->span_id, span);
    self->active = 1;
    self->start = now_ns();
    Py_INCREF(span);
    return span;
}

static void
hex16(char *out, uint64_t value)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 14; i >= 0; i -= 2) {
        out[i] = digits[(value >> 4) & 0xF];
        out[i + 1] = digits[value & 0xF];
        value >>= 8;
    }
}

/* stamp(out) -> bytes */
static PyObject *
TraceContext_stamp(TraceContext *self, PyObject *out)
{
    if (!PyBytes_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "stamp(out: bytes)");
        return NULL;
    }
    if (!ready(self))
        return NULL;
    if (PyBytes_GET_SIZE(self->message) < FIELD_END) {
        PyErr_SetString(PyExc_RuntimeError, "stamp() before a traced message began");
        return NULL;
    }
    uint64_t id = next_id(self);
    long long at = now_ns();
    Py_ssize_t rest = PyBytes_GET_SIZE(out) > 0 ? PyBytes_GET_SIZE(out) - 1 : 0;
    PyObject *result = PyBytes_FromStringAndSize(NULL, OPEN_LEN + 16 + 5 + rest);
    if (result == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(result);
    memcpy(p, PyBytes_AS_STRING(self->message), OPEN_LEN);
    hex16(p + OPEN_LEN, id);
    memcpy(p + OPEN_LEN + 16, TAIL, 5);
    memcpy(p + OPEN_LEN + 21, PyBytes_AS_STRING(out) + 1, rest);
    PyObject *span = PyLong_FromUnsignedLongLong(id);
    PyObject *time = PyLong_FromLongLong(at);
    if (span == NULL || time == NULL || PyList_Append(self->sends, span) ||
        PyList_Append(self->sends, time) || PyList_Append(self->sends, out)) {
        Py_XDECREF(span);
        Py_XDECREF(time);
        Py_DECREF(result);
        return NULL;
    }
    Py_DECREF(span);
    Py_DECREF(time);
    return result;
}

/* guest() -> bytes: the message without its traceparent field */
static PyObject *
TraceContext_guest(TraceContext *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self))
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(self->message);
    if (n < FIELD_END) {
        PyErr_SetString(PyExc_RuntimeError, "guest() before a traced message began");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, 1 + n - FIELD_END);
    if (result == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(result);
    p[0] = '{';
    memcpy(p + 1, PyBytes_AS_STRING(self->message) + FIELD_END, n - FIELD_END);
    return result;
}

static PyObject *
TraceContext_finish(TraceContext *self, PyObject *Py_UNUSED(ignored))
{
    self->end = now_ns();
    self->active = 0;
    Py_RETURN_NONE;
}

/* -- the record, as msgpack ------------------------------------------------------------- */

/* Sizes and writers of the msgpack items a record holds (what msgspec writes is decoded the
 * same: ints as uint64/int64, str as UTF-8, bytes as bin). */
static Py_ssize_t
str_size(Py_ssize_t n)
{
    return n < 32 ? 1 + n : n < 256 ? 2 + n : n < 65536 ? 3 + n : 5 + n;
}

static Py_ssize_t
bin_size(Py_ssize_t n)
{
    return n < 256 ? 2 + n : n < 65536 ? 3 + n : 5 + n;
}

static char *
put_be(char *p, uint64_t value, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (char)(value & 0xFF);
        value >>= 8;
    }
    return p + bytes;
}

/* A str or bin head: its 8-, 16- or 32-bit length form (``tags``), then the length. */
static char *
put_length(char *p, Py_ssize_t n, const unsigned char tags[3])
{
    int width = n < 256 ? 0 : n < 65536 ? 1 : 2;
    *p++ = (char)tags[width];
    return put_be(p, (uint64_t)n, 1 << width);
}

static char *
put_str(char *p, const char *s, Py_ssize_t n)
{
    static const unsigned char tags[3] = {0xd9, 0xda, 0xdb};
    if (n < 32)
        *p++ = (char)(0xa0 | n);
    else
        p = put_length(p, n, tags);
    memcpy(p, s, n);
    return p + n;
}

static char *
put_bin(char *p, const char *s, Py_ssize_t n)
{
    static const unsigned char tags[3] = {0xc4, 0xc5, 0xc6};
    p = put_length(p, n, tags);
    memcpy(p, s, n);
    return p + n;
}

static char *
put_u64(char *p, uint64_t value)
{
    *p++ = (char)0xcf;
    return put_be(p, value, 8);
}

static char *
put_i64(char *p, int64_t value)
{
    *p++ = (char)0xd3;
    return put_be(p, (uint64_t)value, 8);
}

/* An int that msgpack can carry as int64 (exact ints only); 0 with no error set otherwise. */
static int
as_i64(PyObject *obj, long long *out)
{
    if (!PyLong_CheckExact(obj))
        return 0;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return !overflow;
}

/* The record as msgpack bytes, or NULL without an error set when one of its values is not of
 * a kind written here (the caller makes the tuple instead). Raises only MemoryError. */
static PyObject *
record_msgpack(TraceContext *self, PyObject *version, PyObject *outcome, PyObject *fuel)
{
    Py_ssize_t sends = PyList_GET_SIZE(self->sends);
    Py_ssize_t items = 9 + sends;
    Py_ssize_t agent_n, outcome_n;
    long long version_v, fuel_v = 0;
    if (!PyUnicode_CheckExact(outcome) || !as_i64(version, &version_v) ||
        (fuel != Py_None && !as_i64(fuel, &fuel_v)) || sends % 3 != 0)
        return NULL;
    const char *agent_s = PyUnicode_AsUTF8AndSize(self->agent, &agent_n);
    const char *outcome_s = agent_s ? PyUnicode_AsUTF8AndSize(outcome, &outcome_n) : NULL;
    if (outcome_s == NULL) { /* a str that is not UTF-8 (a lone surrogate) */
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t size = (items < 16 ? 1 : items < 65536 ? 3 : 5) + 7 + 9 + 9 + 9 +
                      str_size(agent_n) + 9 + bin_size(PyBytes_GET_SIZE(self->message)) +
                      str_size(outcome_n) + (fuel == Py_None ? 1 : 9);
    for (Py_ssize_t i = 0; i < sends; i += 3) {
        PyObject *span = PyList_GET_ITEM(self->sends, i);
        PyObject *at = PyList_GET_ITEM(self->sends, i + 1);
        PyObject *out = PyList_GET_ITEM(self->sends, i + 2);
        if (!PyLong_CheckExact(span) || !PyLong_CheckExact(at) || !PyBytes_CheckExact(out))
            return NULL;
        size += 9 + 9 + bin_size(PyBytes_GET_SIZE(out));
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(result);
    if (items < 16) {
        *p++ = (char)(0x90 | items);
    } else if (items < 65536) {
        *p++ = (char)0xdc;
        p = put_be(p, (uint64_t)items, 2);
    } else {
        *p++ = (char)0xdd;
        p = put_be(p, (uint64_t)items, 4);
    }
    p = put_str(p, "handle", 6);
    p = put_u64(p, PyLong_AsUnsignedLongLong(self->span_id));
    p = put_i64(p, self->start);
    p = put_i64(p, self->end);
    p = put_str(p, agent_s, agent_n);
    p = put_i64(p, version_v);
    p = put_bin(p, PyBytes_AS_STRING(self->message), PyBytes_GET_SIZE(self->message));
    p = put_str(p, outcome_s, outcome_n);
    if (fuel == Py_None)
        *p++ = (char)0xc0;
    else
        p = put_i64(p, fuel_v);
    for (Py_ssize_t i = 0; i < sends; i += 3) {
        PyObject *out = PyList_GET_ITEM(self->sends, i + 2);
        p = put_u64(p, PyLong_AsUnsignedLongLong(PyList_GET_ITEM(self->sends, i)));
        p = put_i64(p, PyLong_AsLongLong(PyList_GET_ITEM(self->sends, i + 1)));
        p = put_bin(p, PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out));
    }
    if (PyErr_Occurred()) { /* a span id or time out of range: only a bug could write one */
        PyErr_Clear();
        Py_DECREF(result);
        return NULL;
    }
    assert(p == PyBytes_AS_STRING(result) + size);
    return result;
}

/* record(version, outcome, fuel) -> the "handle" record (caxton.runtime.tracing): msgpack
 * bytes, or the tuple for values msgpack does not carry here */
static PyObject *
TraceContext_record(TraceContext *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "record(version, outcome, fuel) takes 3 arguments");
        return NULL;
    }
    if (!ready(self))
        return NULL;
    PyObject *encoded = record_msgpack(self, args[0], args[1], args[2]);
    if (encoded != NULL || PyErr_Occurred())
        return encoded;
    Py_ssize_t sends = PyList_GET_SIZE(self->sends);
    PyObject *record = PyTuple_New(9 + sends);
    if (record == NULL)
        return NULL;
    PyObject *name = Py_NewRef(HANDLE);
    PyObject *start = PyLong_FromLongLong(self->start);
    PyObject *end = PyLong_FromLongLong(self->end);
    if (start == NULL || end == NULL) {
        Py_DECREF(name);
        Py_XDECREF(start);
        Py_XDECREF(end);
        Py_DECREF(record);
        return NULL;
    }
    PyObject *items[9] = {name, self->span_id, start, end, self->agent, args[0],
                          self->message, args[1], args[2]};
    for (int i = 0; i < 9; i++) {
        if (i != 0 && i != 2 && i != 3)
            Py_INCREF(items[i]);
        PyTuple_SET_ITEM(record, i, items[i]);
    }
    for (Py_ssize_t i = 0; i < sends; i++) {
        PyObject *item = PyList_GET_ITEM(self->sends, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(record, 9 + i, item);
    }
    return record;
}

static PyObject *
TraceContext_get_open(TraceContext *self, void *Py_UNUSED(closure))
{
    if (!ready(self))
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(self->message);
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->message), n < OPEN_LEN ? 0 : OPEN_LEN);
}

static PyObject *
TraceContext_get_trace_id(TraceContext *self, void *Py_UNUSED(closure))
{
    if (!ready(self))
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(self->message);
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->message) + (n < OPEN_LEN ? 0 : TRACE_START),
                                     n < OPEN_LEN ? 0 : 32);
}

#define GETTER(field)                                                                         \
    static PyObject *TraceContext_get_##field(TraceContext *self, void *Py_UNUSED(closure))    \
    {                                                                                         \
        if (!ready(self))                                                                     \
            return NULL;                                                                      \
        Py_INCREF(self->field);                                                               \
        return self->field;                                                                   \
    }
GETTER(message)
GETTER(agent)
GETTER(sends)
GETTER(span_id)

static PyObject *
TraceContext_get_active(TraceContext *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->active);
}

static PyObject *
TraceContext_get_start(TraceContext *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->start);
}

static PyObject *
TraceContext_get_end(TraceContext *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->end);
}

static PyGetSetDef TraceContext_getset[] = {
    {"message", (getter)TraceContext_get_message, NULL, "the traced message", NULL},
    {"agent", (getter)TraceContext_get_agent, NULL, "the agent handling it", NULL},
    {"sends", (getter)TraceContext_get_sends, NULL, "span id, time, bytes per send", NULL},
    {"span_id", (getter)TraceContext_get_span_id, NULL, "the handling's span id", NULL},
    {"active", (getter)TraceContext_get_active, NULL, "between begin and finish", NULL},
    {"start", (getter)TraceContext_get_start, NULL, "when begin started it (ns)", NULL},
    {"end", (getter)TraceContext_get_end, NULL, "when finish ended it (ns)", NULL},
    {"open", (getter)TraceContext_get_open, NULL, "how every stamped message starts", NULL},
    {"trace_id", (getter)TraceContext_get_trace_id, NULL, "the trace (32 hex digits)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef TraceContext_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))TraceContext_begin, METH_FASTCALL,
     "begin(message, agent) -> int | None: start handling a traced message."},
    {"stamp", (PyCFunction)TraceContext_stamp, METH_O,
     "stamp(out) -> bytes: out with a new send span's traceparent first; recorded."},
    {"guest", (PyCFunction)TraceContext_guest, METH_NOARGS,
     "guest() -> bytes: the message without its traceparent field."},
    {"finish", (PyCFunction)TraceContext_finish, METH_NOARGS,
     "finish(): the handling ended (its end time)."},
    {"record", (PyCFunction)(void (*)(void))TraceContext_record, METH_FASTCALL,
     "record(version, outcome, fuel) -> tuple: the handling's record for the span builder."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TraceContextType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caxton.runtime.sandbox._accel.TraceContext",
    .tp_basicsize = sizeof(TraceContext),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A worker's traced message (the C twin of caxton.wire.trace.TraceContext).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TraceContext_init,
    .tp_dealloc = (destructor)TraceContext_dealloc,
    .tp_traverse = (traverseproc)TraceContext_traverse,
    .tp_clear = (inquiry)TraceContext_clear,
    .tp_methods = TraceContext_methods,
    .tp_getset = TraceContext_getset,
};

int
caxton_add_trace_context(PyObject *module)
{
    if (PyType_Ready(&TraceContextType) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "TraceContext", (PyObject *)&TraceContextType) < 0)
        return -1;
    HANDLE = PyUnicode_InternFromString("handle");
    if (HANDLE == NULL)
        return -1;
    PyObject *layout = Py_BuildValue("(y#iiii)", HEAD, (Py_ssize_t)TRACE_START, TRACE_START,
                                     TRACE_END, SPAN_END, FIELD_END);
    if (layout == NULL || PyModule_AddObject(module, "TRACE_LAYOUT", layout) < 0) {
        Py_XDECREF(layout);
        return -1;
    }
    return 0;
}
