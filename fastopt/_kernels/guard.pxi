# The memory guard: whether an array overlaps memory that a step writes.

cdef class MemoryGuard:
    """Byte ranges that a gradient must not overlap: every parameter and state buffer."""

    cdef Py_ssize_t n
    cdef uintptr_t* start
    cdef uintptr_t* end

    def __cinit__(self, ranges):
        """``ranges``: (start address, end address) pairs, or arrays (their memory)."""
        pairs = sorted(
            (<uintptr_t>cnp.PyArray_DATA(r), <uintptr_t>cnp.PyArray_DATA(r) + r.nbytes)
            if cnp.PyArray_Check(r) else (<uintptr_t>r[0], <uintptr_t>r[1])
            for r in ranges)
        merged = []
        for lo, hi in pairs:
            if lo == hi:
                continue
            if merged and lo < merged[len(merged) - 1][1]:
                last = merged[len(merged) - 1]
                last[1] = max(last[1], hi)
            else:
                merged.append([lo, hi])
        self.n = len(merged)
        self.start = <uintptr_t*>malloc(max(self.n, 1) * sizeof(uintptr_t))
        self.end = <uintptr_t*>malloc(max(self.n, 1) * sizeof(uintptr_t))
        if self.start == NULL or self.end == NULL:
            raise MemoryError()
        for i, (lo, hi) in enumerate(merged):
            self.start[i] = lo
            self.end[i] = hi

    def __dealloc__(self):
        free(self.start)
        free(self.end)

    def shares_memory(self, cnp.ndarray a):
        """Whether array ``a``'s memory overlaps any of the ranges."""
        cdef uintptr_t lo = <uintptr_t>cnp.PyArray_DATA(a)
        return self.overlaps(lo, lo + <uintptr_t>a.nbytes)

    cdef bint overlaps(self, uintptr_t lo, uintptr_t hi) noexcept nogil:
        # Ranges are disjoint and sorted, so their ends are sorted too: find the first range
        # ending after lo; [lo, hi) overlaps it iff it starts before hi.
        cdef Py_ssize_t a = 0, b = self.n, mid
        if lo == hi:
            return False
        while a < b:
            mid = (a + b) // 2
            if self.end[mid] <= lo:
                a = mid + 1
            else:
                b = mid
        return a < self.n and self.start[a] < hi
