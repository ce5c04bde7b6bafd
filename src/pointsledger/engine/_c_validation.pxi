# Part of _engine_c.pyx (included there): validation of ids and integers in C.
# It shares the module's cimports, constants and C helpers, declared in _engine_c.pyx.

# --- validation in C -----------------------------------------------------------------


cdef inline bint _clean_id(const char* data, Py_ssize_t size, Py_ssize_t max_bytes) noexcept:
    cdef Py_ssize_t index
    cdef unsigned char byte
    if size < 1 or size > max_bytes:
        return False
    for index in range(size):
        byte = <unsigned char>data[index]
        if byte < 0x20 or byte == 0x7F:
            return False
    return True


cdef bytes _id_key(object value, str field, Py_ssize_t max_bytes):
    """validate_id for an exact str in C; anything else (and every refusal) goes to the twin."""
    cdef Py_ssize_t size
    cdef const char* data
    if PyUnicode_CheckExact(value):
        data = PyUnicode_AsUTF8AndSize(value, &size)
        if data == NULL:
            PyErr_Clear()
        elif _clean_id(data, size, max_bytes):
            return PyBytes_FromStringAndSize(data, size)
    return validate_id(field, value, max_bytes)


cdef int64_t _int_of(object value, str field, int64_t low, int64_t high) except? -1:
    """validate_int: exact ints in C; numpy scalars, bools, floats and refusals via the twin."""
    cdef int overflow = 0
    cdef long long number
    if PyLong_CheckExact(value):
        number = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0 and low <= number <= high:
            return number
    return validate_int(field, value, low, high)
