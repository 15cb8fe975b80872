/*
 * caxton.runtime.sandbox._accel: the wasm message hot path in C (optional).
 *
 * Three pieces, all used only when this extension was built (a C compiler at install time);
 * the pure-Python path in `_ffi.py` / `host.py` (and `caxton.wire.trace`) does the same work:
 *
 *  - `Reactor(ctx, alloc, handle, memory, base)`: one agent instance's entry points.
 *    `Reactor.deliver(data)` calls ``caxton_alloc(len)``, copies the bytes into linear memory
 *    and calls ``caxton_handle(ptr, len)``: both through ``wasmtime_func_call_unchecked``,
 *    with the GIL released once for the whole sequence (a spinning guest never blocks the
 *    other threads). It returns the handler's i32 result, or FAILED (the call trapped or
 *    errored: `take_failure()` hands over the wasmtime pointers) or BAD_POINTER (the
 *    allocator's pointer is outside linear memory). `Reactor.arm(ticks)` sets the store's epoch
 *    deadline (a direct C call: through ctypes it released and re-took the GIL).
 *
 *  - `HostFunction(fn, kinds, returns)` and `trampoline_address()`: a raw unchecked wasmtime
 *    host callback that takes the GIL and calls ``fn`` with the call's arguments as Python ints
 *    (i32 as unsigned, i64 as signed), storing an int result as the call's i32 result.
 *
 *  - `TraceContext`: a worker's traced message (in `_accel_trace.c`).
 *
 * The wasmtime C functions are not linked: `setup()` receives their addresses from ctypes
 * (the library that wasmtime-py loaded), so this module builds with the Python headers only.
 *
 * Safety rules (the same as `_ffi.py`): exports are called unchecked only after their
 * signatures were verified; ``memory_may_move`` is off, so ``base`` stays valid; a Reactor is
 * dropped before its store is closed; HostFunction objects outlive every linker using them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_accel_trace.h"

typedef union {
    int32_t i32;
    int64_t i64;
    unsigned char bytes[16];
} val_raw;

typedef void *(*call_unchecked_fn)(void *ctx, const void *func, val_raw *args, size_t n,
                                   void **trap);
typedef size_t (*memory_size_fn)(void *ctx, const void *memory);
typedef void (*set_deadline_fn)(void *ctx, uint64_t ticks);

static call_unchecked_fn call_unchecked = NULL;
static memory_size_fn memory_data_size = NULL;
static set_deadline_fn set_epoch_deadline = NULL;

#define FAILED ((long long)1 << 32)
#define BAD_POINTER (((long long)1 << 32) + 1)

/* -- Reactor ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    void *ctx;
    void *alloc;
    void *handle;
    void *memory;
    unsigned char *base;
    size_t size;
    void *error; /* wasmtime_error_t* of the last failed call, owned until taken */
    void *trap;  /* wasm_trap_t* of the last trapped call, owned until taken */
} Reactor;

static int
pointer_arg(PyObject *obj, void **out, const char *what)
{
    void *p = PyLong_AsVoidPtr(obj);
    if (p == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "%s must be a non-null address", what);
        return -1;
    }
    *out = p;
    return 0;
}

static int
Reactor_init(Reactor *self, PyObject *args, PyObject *kwds)
{
    PyObject *ctx, *alloc, *handle, *memory, *base;
    static char *kwlist[] = {"ctx", "alloc", "handle", "memory", "base", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO", kwlist, &ctx, &alloc, &handle,
                                     &memory, &base))
        return -1;
    if (call_unchecked == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "caxton.runtime.sandbox._accel.setup() was not called");
        return -1;
    }
    void *b;
    if (pointer_arg(ctx, &self->ctx, "ctx") || pointer_arg(alloc, &self->alloc, "alloc") ||
        pointer_arg(handle, &self->handle, "handle") ||
        pointer_arg(memory, &self->memory, "memory") || pointer_arg(base, &b, "base"))
        return -1;
    self->base = (unsigned char *)b;
    self->size = memory_data_size(self->ctx, self->memory);
    return 0;
}

static void
Reactor_dealloc(Reactor *self)
{
    /* Pointers not taken by `take_failure` are leaked rather than freed here: freeing needs
     * the wasmtime delete functions, and a failure is always taken right after it happens. */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static long long
deliver_bytes(Reactor *self, const char *src, size_t n)
{
    val_raw args[2];
    void *trap = NULL;
    void *error;
    long long result;
    Py_BEGIN_ALLOW_THREADS
    memset(args, 0, sizeof args);
    args[0].i32 = (int32_t)(uint32_t)n;
    error = call_unchecked(self->ctx, self->alloc, args, 2, &trap);
    if (error != NULL || trap != NULL) {
        result = FAILED;
    } else {
        uint32_t ptr = (uint32_t)args[0].i32;
        size_t end = (size_t)ptr + n;
        if (end > self->size)
            self->size = memory_data_size(self->ctx, self->memory);
        if (end > self->size) {
            result = BAD_POINTER;
        } else {
            memcpy(self->base + ptr, src, n);
            args[0].i32 = (int32_t)ptr;
            args[1].i32 = (int32_t)(uint32_t)n;
            error = call_unchecked(self->ctx, self->handle, args, 2, &trap);
            result = (error != NULL || trap != NULL) ? FAILED : (long long)args[0].i32;
        }
    }
    Py_END_ALLOW_THREADS
    if (result == FAILED) {
        self->error = error;
        self->trap = trap;
    }
    return result;
}

static PyObject *
Reactor_deliver(Reactor *self, PyObject *data)
{
    long long result;
    if (PyBytes_CheckExact(data)) {
        /* The caller holds a reference, and bytes never change: safe to read without the GIL. */
        Py_ssize_t n = PyBytes_GET_SIZE(data);
        if (n > (Py_ssize_t)UINT32_MAX)
            goto too_large;
        result = deliver_bytes(self, PyBytes_AS_STRING(data), (size_t)n);
    } else {
        /* Any other buffer is copied first: it could change while the GIL is released. */
        PyObject *copy = PyBytes_FromObject(data);
        if (copy == NULL)
            return NULL;
        Py_ssize_t n = PyBytes_GET_SIZE(copy);
        if (n > (Py_ssize_t)UINT32_MAX) {
            Py_DECREF(copy);
            goto too_large;
        }
        result = deliver_bytes(self, PyBytes_AS_STRING(copy), (size_t)n);
        Py_DECREF(copy);
    }
    return PyLong_FromLongLong(result);
too_large:
    PyErr_SetString(PyExc_ValueError, "message larger than 4 GiB");
    return NULL;
}

static PyObject *
Reactor_arm(Reactor *self, PyObject *ticks)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(ticks);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    set_epoch_deadline(self->ctx, (uint64_t)n); /* cheap: no GIL release around it */
    Py_RETURN_NONE;
}

static PyObject *
Reactor_take_failure(Reactor *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)self->error,
                                  (unsigned long long)(uintptr_t)self->trap);
    self->error = NULL;
    self->trap = NULL;
    return out;
}

static PyMethodDef Reactor_methods[] = {
    {"deliver", (PyCFunction)Reactor_deliver, METH_O,
     "deliver(data) -> int: alloc, copy and handle one message (see the module docs)."},
    {"arm", (PyCFunction)Reactor_arm, METH_O,
     "arm(ticks): the store's epoch deadline, ticks from the current epoch."},
    {"take_failure", (PyCFunction)Reactor_take_failure, METH_NOARGS,
     "take_failure() -> (error, trap): the owned pointers of the last failed call."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReactorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caxton.runtime.sandbox._accel.Reactor",
    .tp_basicsize = sizeof(Reactor),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One reactor instance's caxton_alloc/caxton_handle, called from C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reactor_init,
    .tp_dealloc = (destructor)Reactor_dealloc,
    .tp_methods = Reactor_methods,
};

/* -- HostFunction ------------------------------------------------------------------------- */

#define MAX_PARAMS 8

typedef struct {
    PyObject_HEAD
    PyObject *fn;
    int nparams;
    int returns;
    int32_t on_error;
    char kinds[MAX_PARAMS]; /* 'i' (i32, passed unsigned) or 'I' (i64, passed signed) */
} HostFunction;

static int
HostFunction_init(HostFunction *self, PyObject *args, PyObject *kwds)
{
    PyObject *fn;
    const char *kinds;
    Py_ssize_t nkinds;
    int returns, on_error = -1;
    static char *kwlist[] = {"fn", "kinds", "returns", "on_error", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Os#p|i", kwlist, &fn, &kinds, &nkinds,
                                     &returns, &on_error))
        return -1;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "fn must be callable");
        return -1;
    }
    if (nkinds > MAX_PARAMS) {
        PyErr_Format(PyExc_ValueError, "at most %d parameters", MAX_PARAMS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nkinds; i++) {
        if (kinds[i] != 'i' && kinds[i] != 'I') {
            PyErr_SetString(PyExc_ValueError, "kinds: 'i' (i32) or 'I' (i64) per parameter");
            return -1;
        }
        self->kinds[i] = kinds[i];
    }
    Py_INCREF(fn);
    Py_XSETREF(self->fn, fn);
    self->nparams = (int)nkinds;
    self->returns = returns;
    self->on_error = on_error;
    return 0;
}

static void
HostFunction_dealloc(HostFunction *self)
{
    Py_XDECREF(self->fn);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
HostFunction_env(HostFunction *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromVoidPtr(self);
}

static PyMethodDef HostFunction_methods[] = {
    {"env", (PyCFunction)HostFunction_env, METH_NOARGS,
     "env() -> int: the env pointer to register with trampoline_address()."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HostFunctionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caxton.runtime.sandbox._accel.HostFunction",
    .tp_basicsize = sizeof(HostFunction),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A Python function called by the raw host-callback trampoline.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HostFunction_init,
    .tp_dealloc = (destructor)HostFunction_dealloc,
    .tp_methods = HostFunction_methods,
};

/* wasmtime_func_unchecked_callback_t: never traps; errors become the function's on_error. */
static void *
trampoline(void *env, void *caller, val_raw *ar, size_t n)
{
    (void)caller;
    (void)n;
    HostFunction *hf = (HostFunction *)env;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *argv[MAX_PARAMS];
    int made = 0;
    PyObject *result = NULL;
    for (; made < hf->nparams; made++) {
        argv[made] = hf->kinds[made] == 'i'
                         ? PyLong_FromUnsignedLong((uint32_t)ar[made].i32)
                         : PyLong_FromLongLong(ar[made].i64);
        if (argv[made] == NULL)
            break;
    }
    if (made == hf->nparams)
        result = PyObject_Vectorcall(hf->fn, argv, (size_t)made, NULL);
    for (int i = 0; i < made; i++)
        Py_DECREF(argv[i]);
    if (hf->returns) {
        int32_t value = hf->on_error;
        if (result != NULL && PyLong_Check(result)) {
            long v = PyLong_AsLong(result);
            if (!(v == -1 && PyErr_Occurred()) && v >= INT32_MIN && v <= INT32_MAX)
                value = (int32_t)v;
        }
        ar[0].i32 = value;
    }
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(hf->fn);
    Py_XDECREF(result);
    PyGILState_Release(gil);
    return NULL;
}

/* -- module ------------------------------------------------------------------------------- */

static PyObject *
accel_setup(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *call, *size, *deadline;
    Py_ssize_t raw_size;
    if (!PyArg_ParseTuple(args, "OOnO", &call, &size, &raw_size, &deadline))
        return NULL;
    if (raw_size != (Py_ssize_t)sizeof(val_raw)) {
        PyErr_Format(PyExc_RuntimeError,
                     "wasmtime_val_raw_t is %zd bytes, this module was built for %zu",
                     raw_size, sizeof(val_raw));
        return NULL;
    }
    void *c, *s, *d;
    if (pointer_arg(call, &c, "wasmtime_func_call_unchecked") ||
        pointer_arg(size, &s, "wasmtime_memory_data_size") ||
        pointer_arg(deadline, &d, "wasmtime_context_set_epoch_deadline"))
        return NULL;
    call_unchecked = (call_unchecked_fn)c;
    memory_data_size = (memory_size_fn)s;
    set_epoch_deadline = (set_deadline_fn)d;
    Py_RETURN_NONE;
}

static PyObject *
accel_trampoline_address(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromVoidPtr((void *)trampoline);
}

static PyMethodDef accel_methods[] = {
    {"setup", accel_setup, METH_VARARGS,
     "setup(call_unchecked, memory_data_size, val_raw_size, set_epoch_deadline): the wasmtime C "
     "functions."},
    {"trampoline_address", accel_trampoline_address, METH_NOARGS,
     "trampoline_address() -> int: the raw host callback that calls a HostFunction."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "caxton.runtime.sandbox._accel",
    .m_doc = "The wasm message hot path in C (optional; see _accel.c).",
    .m_size = -1,
    .m_methods = accel_methods,
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    if (PyType_Ready(&ReactorType) < 0 || PyType_Ready(&HostFunctionType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&accel_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Reactor", (PyObject *)&ReactorType) < 0 ||
        PyModule_AddObjectRef(m, "HostFunction", (PyObject *)&HostFunctionType) < 0 ||
        PyModule_AddObject(m, "FAILED", PyLong_FromLongLong(FAILED)) < 0 ||
        PyModule_AddObject(m, "BAD_POINTER", PyLong_FromLongLong(BAD_POINTER)) < 0 ||
        caxton_add_trace_context(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
