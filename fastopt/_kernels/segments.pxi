# The segment table of one parameter group and the parallel driver shared by every rule.

from cython.parallel cimport prange
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

ctypedef fused floating:
    float
    double

cdef enum:
    # Elements per work item. A multiple of 16, so pieces of a 64-byte-aligned segment start on
    # cache lines and no two threads write the same line; large enough that a function call
    # per piece is noise, small enough to balance a few hundred thousand elements over threads.
    PIECE = 4096
    # State arrays per rule at most (Adam with AMSGrad: exp_avg, exp_avg_sq, max_exp_avg_sq).
    MAX_ROLES = 4

ctypedef void (*chunk_f32)(float* p, const float* g, float** state, Py_ssize_t n,
                           const void* args) noexcept nogil
ctypedef void (*chunk_f64)(double* p, const double* g, double** state, Py_ssize_t n,
                           const void* args) noexcept nogil

ctypedef struct Table:
    Py_ssize_t nseg
    Py_ssize_t total
    Py_ssize_t npieces
    Py_ssize_t itemsize
    char** param
    const char** grad
    char** state              # MAX_ROLES rows of nseg pointers; NULL where a role is unused
    Py_ssize_t* length
    Py_ssize_t* piece_seg
    Py_ssize_t* piece_start
    double* partial           # one reduction result per piece (gradient norms)
    Policy policy             # serial or parallel for updates, learnt per table (threads.pxi)
    Policy norm_policy        # the same for gradient norms, a lighter pass


cdef inline void run_piece(const Table* t, Py_ssize_t k, chunk_f32 f32, chunk_f64 f64,
                           const void* args) noexcept nogil:
    cdef Py_ssize_t s = t.piece_seg[k]
    cdef Py_ssize_t start = t.piece_start[k]
    cdef Py_ssize_t n = t.length[s] - start
    cdef Py_ssize_t offset = start * t.itemsize
    cdef char* state[MAX_ROLES]
    cdef int r
    if n > PIECE:
        n = PIECE
    for r in range(MAX_ROLES):
        state[r] = t.state[r * t.nseg + s]
        if state[r] != NULL:
            state[r] += offset
    if t.itemsize == 4:
        f32(<float*>(t.param[s] + offset), <const float*>(t.grad[s] + offset),
            <float**>state, n, args)
    else:
        f64(<double*>(t.param[s] + offset), <const double*>(t.grad[s] + offset),
            <double**>state, n, args)


cdef void drive(Table* t, chunk_f32 f32, chunk_f64 f64, const void* args) noexcept nogil:
    """Apply one rule to every element of the table: one parallel region, static schedule,
    unless the table is small or the machine is contended (see ``threads.pxi``)."""
    cdef Py_ssize_t k
    cdef bint parallel = use_threads(t.total, &t.policy)
    cdef double start = omp_get_wtime()
    for k in prange(t.npieces, schedule="static", use_threads_if=parallel):
        if k == 0:
            fastopt_note_team_size()
        run_piece(t, k, f32, f64, args)
    account(t.total, &t.policy, parallel, start)


cdef class MemoryGuard:
    """Byte ranges that a gradient must not overlap: every parameter and state buffer."""

    cdef Py_ssize_t n
    cdef uintptr_t* start
    cdef uintptr_t* end

    def __cinit__(self, arrays):
        ranges = sorted(
            (<uintptr_t>cnp.PyArray_DATA(a), <uintptr_t>cnp.PyArray_DATA(a) + a.nbytes)
            for a in arrays if a.nbytes
        )
        merged = []
        for lo, hi in ranges:
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


cdef class SegmentTable:
    """Pointers and lengths of one parameter group's segments, and their split into pieces.

    Built once per group; state pointers are set when state buffers are (re)allocated and
    gradient pointers at every step by ``bind_grads``, which validates each gradient first.
    """

    cdef Table t
    cdef list params
    cdef int typenum
    cdef bint bound              # bind_grads succeeded and no kernel has consumed it yet
    cdef readonly Py_ssize_t size

    def __cinit__(self, list params):
        cdef Py_ssize_t s, k, start
        cdef cnp.ndarray a
        self.params = list(params)
        self.t.nseg = len(params)
        if self.t.nseg == 0:
            raise ValueError("a segment table needs at least one array")
        a = <cnp.ndarray?>params[0]
        self.typenum = cnp.PyArray_TYPE(a)
        self.t.itemsize = cnp.PyArray_ITEMSIZE(a)
        if self.typenum not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
            raise TypeError(f"expected float32 or float64 arrays, got {params[0].dtype}")
        self.t.param = <char**>malloc(self.t.nseg * sizeof(char*))
        self.t.grad = <const char**>malloc(self.t.nseg * sizeof(char*))
        self.t.state = <char**>malloc(MAX_ROLES * self.t.nseg * sizeof(char*))
        self.t.length = <Py_ssize_t*>malloc(self.t.nseg * sizeof(Py_ssize_t))
        if (self.t.param == NULL or self.t.grad == NULL or self.t.state == NULL
                or self.t.length == NULL):
            raise MemoryError()
        memset(self.t.state, 0, MAX_ROLES * self.t.nseg * sizeof(char*))
        self.t.policy = Policy(0.0, 0, 0, MIN_PENALTY)
        self.t.norm_policy = Policy(0.0, 0, 0, MIN_PENALTY)
        self.t.total = 0
        self.t.npieces = 0
        for s in range(self.t.nseg):
            a = <cnp.ndarray?>params[s]
            if cnp.PyArray_TYPE(a) != self.typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a):
                raise TypeError("segments must be C-contiguous arrays of one dtype")
            self.t.param[s] = <char*>cnp.PyArray_DATA(a)
            self.t.grad[s] = NULL
            self.t.length[s] = cnp.PyArray_SIZE(a)
            self.t.total += self.t.length[s]
            self.t.npieces += (self.t.length[s] + PIECE - 1) // PIECE
        self.size = self.t.total
        self.t.piece_seg = <Py_ssize_t*>malloc(max(self.t.npieces, 1) * sizeof(Py_ssize_t))
        self.t.piece_start = <Py_ssize_t*>malloc(max(self.t.npieces, 1) * sizeof(Py_ssize_t))
        self.t.partial = <double*>malloc(max(self.t.npieces, 1) * sizeof(double))
        if self.t.piece_seg == NULL or self.t.piece_start == NULL or self.t.partial == NULL:
            raise MemoryError()
        k = 0
        for s in range(self.t.nseg):
            for start in range(0, self.t.length[s], PIECE):
                self.t.piece_seg[k] = s
                self.t.piece_start[k] = start
                k += 1

    def __dealloc__(self):
        free(self.t.param)
        free(self.t.grad)
        free(self.t.state)
        free(self.t.length)
        free(self.t.piece_seg)
        free(self.t.piece_start)
        free(self.t.partial)

    def set_state(self, int role, list arrays):
        """Point state role ``role`` at ``arrays`` (one per segment), or unset it with []."""
        cdef Py_ssize_t s
        cdef cnp.ndarray a
        if not 0 <= role < MAX_ROLES:
            raise ValueError(f"role must be in [0, {MAX_ROLES}), got {role}")
        if not arrays:
            for s in range(self.t.nseg):
                self.t.state[role * self.t.nseg + s] = NULL
            return
        if len(arrays) != self.t.nseg:
            raise ValueError(f"expected {self.t.nseg} state arrays, got {len(arrays)}")
        for s in range(self.t.nseg):
            a = <cnp.ndarray?>arrays[s]
            if (cnp.PyArray_TYPE(a) != self.typenum or cnp.PyArray_SIZE(a) != self.t.length[s]
                    or not cnp.PyArray_IS_C_CONTIGUOUS(a)):
                raise ValueError("state arrays must match their segments")
        for s in range(self.t.nseg):
            self.t.state[role * self.t.nseg + s] = <char*>cnp.PyArray_DATA(arrays[s])

    def bind_grads(self, grads, Py_ssize_t first, MemoryGuard guard):
        """Validate ``grads[first:first + nseg]`` against the segments and point at them.

        Raises before anything is modified; names the gradient by its index in ``grads``.
        """
        cdef Py_ssize_t s, d, ndim
        cdef cnp.ndarray g, p
        cdef uintptr_t lo
        for s in range(self.t.nseg):
            obj = grads[first + s]
            if not cnp.PyArray_Check(obj):
                raise TypeError(
                    f"grads[{first + s}]: expected a numpy.ndarray, got {type(obj).__name__}")
            g = <cnp.ndarray>obj
            p = <cnp.ndarray>self.params[s]
            if cnp.PyArray_TYPE(g) != self.typenum:
                raise TypeError(
                    f"grads[{first + s}]: expected dtype {self.params[s].dtype} (its parameter's), "
                    f"got {obj.dtype}")
            ndim = cnp.PyArray_NDIM(g)
            if ndim != cnp.PyArray_NDIM(p):
                raise ValueError(
                    f"grads[{first + s}]: expected shape {self.params[s].shape} (its parameter's), "
                    f"got {obj.shape}")
            for d in range(ndim):
                if cnp.PyArray_DIMS(g)[d] != cnp.PyArray_DIMS(p)[d]:
                    raise ValueError(
                        f"grads[{first + s}]: expected shape {self.params[s].shape} (its parameter's), "
                        f"got {obj.shape}")
            if not cnp.PyArray_IS_C_CONTIGUOUS(g) or not cnp.PyArray_ISALIGNED(g):
                raise ValueError(
                    f"grads[{first + s}]: expected a C-contiguous, aligned array, got strides "
                    f"{obj.strides}")
            lo = <uintptr_t>cnp.PyArray_DATA(g)
            if guard.overlaps(lo, lo + self.t.length[s] * self.t.itemsize):
                raise ValueError(
                    f"grads[{first + s}]: expected memory of its own, got an array that "
                    f"shares memory with a parameter or optimizer state")
        for s in range(self.t.nseg):
            self.t.grad[s] = <const char*>cnp.PyArray_DATA(grads[first + s])
        self.bound = True

    cdef int start_kernel(self, unsigned roles) except -1:
        """Check that a kernel may run: gradients bound for this call and every state role
        whose bit is set in ``roles`` pointed at arrays."""
        cdef int r
        if not self.bound:
            raise RuntimeError("bind_grads must precede every kernel call")
        for r in range(MAX_ROLES):
            if roles >> r & 1 and self.t.state[r * self.t.nseg] == NULL:
                raise RuntimeError(f"state role {r} is not set")
        self.bound = False
        return 0
