/* The traced-message half of caxton.runtime.sandbox._accel (see _accel_trace.c). */
#ifndef CAXTON_ACCEL_TRACE_H
#define CAXTON_ACCEL_TRACE_H
#include <Python.h>

/* Add the TraceContext type and TRACE_LAYOUT to the module; -1 with an exception set. */
int caxton_add_trace_context(PyObject *module);

#endif
