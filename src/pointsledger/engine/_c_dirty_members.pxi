# Part of _engine_c.pyx (included there): DirtyMembers, the Cython engine's writer.dirty_members.

cdef int64_t _dirty_serial = 0


@cython.final
cdef class DirtyMembers:
    """writer.dirty_members for the Cython engine: the members whose records the writer writes.

    The twin's dict {member key: state}, as C arrays in the order marked: the
    engine's mark is an append, where a dict insert costs a probe of a large,
    cold table per member. A state is listed once per writer (its
    MemberState._dirty_batch stamp holds this object's serial), however many
    batches of the writer mark it (the service's group commit runs several).
    A mark through `d[key] = state` (the twin's writer.mark_dirty) may list a
    key again; then, as in a dict, the last state marked for a key is the one
    written (as_dict). pack_members and member_items read it.
    """
    cdef PyObject** keys  # owned references
    cdef PyObject** states  # owned references
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity
    cdef int64_t stamp
    cdef bint maybe_duplicates  # a key may be listed twice (marked through __setitem__)

    def __cinit__(self):
        global _dirty_serial
        _dirty_serial += 1
        self.stamp = _dirty_serial

    def __dealloc__(self):
        cdef Py_ssize_t index
        for index in range(self.size):
            Py_XDECREF(self.keys[index])
            Py_XDECREF(self.states[index])
        free(self.keys)
        free(self.states)

    cdef int reserve(self, Py_ssize_t capacity) except -1:
        if capacity <= self.capacity:
            return 0
        cdef PyObject** keys = <PyObject**>realloc(self.keys, capacity * sizeof(PyObject*))
        if keys == NULL:
            raise MemoryError()
        self.keys = keys
        cdef PyObject** states = <PyObject**>realloc(self.states, capacity * sizeof(PyObject*))
        if states == NULL:
            raise MemoryError()
        self.states = states
        self.capacity = capacity
        return 0

    cdef int append(self, bytes key, object state) except -1:
        if self.size == self.capacity:
            self.reserve(self.capacity * 2 if self.capacity else 64)
        Py_INCREF(key)
        Py_INCREF(state)
        self.keys[self.size] = <PyObject*>key
        self.states[self.size] = <PyObject*>state
        self.size += 1
        return 0

    cdef inline int mark(self, bytes key, MemberState state) except -1:
        """The engine's mark of a state from the member cache (one state object per key)."""
        if state._dirty_batch != self.stamp:
            state._dirty_batch = self.stamp
            self.append(key, state)
        return 0

    def __setitem__(self, key, state):
        if type(key) is not bytes:
            raise TypeError(f"keys must be bytes, not {type(key).__name__}")
        if type(state) is MemberState:
            if (<MemberState>state)._dirty_batch == self.stamp:
                return  # listed already, this very state
            (<MemberState>state)._dirty_batch = self.stamp
        self.append(key, state)
        self.maybe_duplicates = True

    cdef dict as_dict(self):
        """{key: state}, the last state marked for each key."""
        cdef dict result = _PyDict_NewPresized(self.size)
        cdef Py_ssize_t index
        for index in range(self.size):
            PyDict_SetItem(result, <object>self.keys[index], <object>self.states[index])
        return result

    def __len__(self):
        return len(self.as_dict()) if self.maybe_duplicates else self.size

    def __bool__(self):
        return self.size > 0

    def __contains__(self, key):
        cdef Py_ssize_t index
        for index in range(self.size):
            if <object>self.keys[index] == key:
                return True
        return False

    def __getitem__(self, key):
        cdef Py_ssize_t index
        for index in range(self.size - 1, -1, -1):  # the last marked
            if <object>self.keys[index] == key:
                return <object>self.states[index]
        raise KeyError(key)

    def __iter__(self):
        return iter(self.as_dict())

    def items(self):
        return self.as_dict().items()


cdef DirtyMembers _dirty_members_of(writer, Py_ssize_t count):
    """writer.dirty_members as a DirtyMembers with room for `count` more (made from the writer's
    dict on its first batch, holding what the twin's code marked before); None stays None."""
    dirty = writer.dirty_members
    if dirty is None:
        return None
    cdef DirtyMembers made
    if type(dirty) is DirtyMembers:
        made = <DirtyMembers>dirty
        made.reserve(made.size + count)
        return made
    made = DirtyMembers.__new__(DirtyMembers)
    made.reserve(len(dirty) + count)
    for key, state in (<dict?>dirty).items():  # distinct keys
        if type(key) is not bytes:
            raise TypeError(f"keys must be bytes, not {type(key).__name__}")
        if type(state) is MemberState:
            (<MemberState>state)._dirty_batch = made.stamp
        made.append(key, state)
    writer.dirty_members = made
    return made
