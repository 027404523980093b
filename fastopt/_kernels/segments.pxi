# Segment tables and the driver every rule runs under: pieces, threads, the reduction pass.

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
    # Values a rule's reduction pass keeps per segment at most (norms for LAMB's trust ratio).
    MAX_REDUCED = 4
    # Storage types of a table's buffers.
    FLOAT32 = 0
    FLOAT64 = 1

# A rule's element-wise pass over one piece: n elements of the parameter, the gradient and
# the state roles (state[r] NULL where role r is unused), the rule's argument struct, and the
# values its reduction pass left for the piece's segment (NULL for a rule without one).
ctypedef void (*chunk_f32)(float* p, const float* g, float** state, Py_ssize_t n,
                           const void* args, const double* segment) noexcept nogil
ctypedef void (*chunk_f64)(double* p, const double* g, double** state, Py_ssize_t n,
                           const void* args, const double* segment) noexcept nogil
# A reduction pass over one piece: adds its contributions to acc[0..reduced).
ctypedef void (*reduce_f32)(const float* p, const float* g, float** state, Py_ssize_t n,
                            const void* args, double* acc) noexcept nogil
ctypedef void (*reduce_f64)(const double* p, const double* g, double** state, Py_ssize_t n,
                            const void* args, double* acc) noexcept nogil

ctypedef struct Table:
    Py_ssize_t nseg
    Py_ssize_t total
    Py_ssize_t npieces
    Py_ssize_t itemsize
    int dtype                 # FLOAT32 or FLOAT64: parameters, gradients and state alike
    char** param
    const char** grad
    char** state              # MAX_ROLES rows of nseg pointers; NULL where a role is unused
    Py_ssize_t* length
    Py_ssize_t* piece_seg
    Py_ssize_t* piece_start
    double* partial           # MAX_REDUCED values per piece: the reduction pass's partial sums
    double* segment           # MAX_REDUCED values per segment, combined in order
    Policy policy             # serial or parallel for updates, learnt per table (threads.pxi)
    Policy reduce_policy      # the same for reductions, a lighter pass


cdef inline void piece_pointers(const Table* t, Py_ssize_t k, char** param, const char** grad,
                                char** state, Py_ssize_t* n) noexcept nogil:
    """Where piece ``k`` starts in every buffer, and its length."""
    cdef Py_ssize_t s = t.piece_seg[k]
    cdef Py_ssize_t start = t.piece_start[k]
    cdef Py_ssize_t offset = start * t.itemsize
    cdef int r
    n[0] = t.length[s] - start
    if n[0] > PIECE:
        n[0] = PIECE
    param[0] = t.param[s] + offset
    grad[0] = t.grad[s] + offset if t.grad[s] != NULL else NULL
    for r in range(MAX_ROLES):
        state[r] = t.state[r * t.nseg + s]
        if state[r] != NULL:
            state[r] += offset


cdef inline void run_piece(const Table* t, Py_ssize_t k, chunk_f32 f32, chunk_f64 f64,
                           const void* args, bint with_segments) noexcept nogil:
    # A function of its own: its locals are private to the thread that runs the piece.
    cdef Py_ssize_t n
    cdef char* param
    cdef const char* grad
    cdef char* state[MAX_ROLES]
    cdef const double* segment = NULL
    piece_pointers(t, k, &param, &grad, state, &n)
    if with_segments:
        segment = t.segment + t.piece_seg[k] * MAX_REDUCED
    if t.dtype == FLOAT32:
        f32(<float*>param, <const float*>grad, <float**>state, n, args, segment)
    else:
        f64(<double*>param, <const double*>grad, <double**>state, n, args, segment)


cdef inline void reduce_piece(Table* t, Py_ssize_t k, reduce_f32 f32, reduce_f64 f64,
                              const void* args) noexcept nogil:
    cdef Py_ssize_t n, j
    cdef char* param
    cdef const char* grad
    cdef char* state[MAX_ROLES]
    cdef double* acc = t.partial + k * MAX_REDUCED
    piece_pointers(t, k, &param, &grad, state, &n)
    for j in range(MAX_REDUCED):
        acc[j] = 0.0
    if t.dtype == FLOAT32:
        f32(<const float*>param, <const float*>grad, <float**>state, n, args, acc)
    else:
        f64(<const double*>param, <const double*>grad, <double**>state, n, args, acc)


cdef void drive(Table* t, chunk_f32 f32, chunk_f64 f64, const void* args,
                bint with_segments) noexcept nogil:
    """Apply one rule's element-wise pass to every element of the table: one parallel region,
    static schedule, unless the table is small or the machine is contended (threads.pxi)."""
    cdef Py_ssize_t k
    cdef bint parallel = use_threads(t.total, &t.policy)
    cdef double start = omp_get_wtime() if t.total >= serial_threshold else 0.0
    if parallel:
        for k in prange(t.npieces, schedule="static"):
            if k == 0:
                fastopt_note_team_size()
            run_piece(t, k, f32, f64, args, with_segments)
    else:  # no OpenMP region at all: entering even a one-thread one costs a microsecond
        fastopt_note_team_size()
        for k in range(t.npieces):
            run_piece(t, k, f32, f64, args, with_segments)
    account(t.total, &t.policy, parallel, start)


cdef inline double combine(double acc, double x, bint maximum) noexcept nogil:
    """acc + x, or max(acc, x) where NaN, once met, stays."""
    if maximum:
        return acc if acc > x or acc != acc else x
    return acc + x


cdef void reduce_pass(Table* t, reduce_f32 f32, reduce_f64 f64, const void* args,
                      int reduced, bint maximum) noexcept nogil:
    """A rule's first pass: each piece reduced into its own partial results (the same split
    whatever the thread count), then the pieces of each segment combined in order (added, or
    their maximum taken), so the result is bitwise the same for any number of threads."""
    cdef Py_ssize_t k, s, j
    cdef bint parallel = use_threads(t.total, &t.reduce_policy)
    cdef double start = omp_get_wtime() if t.total >= serial_threshold else 0.0
    if parallel:
        for k in prange(t.npieces, schedule="static"):
            reduce_piece(t, k, f32, f64, args)
    else:
        for k in range(t.npieces):
            reduce_piece(t, k, f32, f64, args)
    account(t.total, &t.reduce_policy, parallel, start)
    for s in range(t.nseg * MAX_REDUCED):
        t.segment[s] = 0.0
    for k in range(t.npieces):
        s = t.piece_seg[k]
        for j in range(reduced):
            t.segment[s * MAX_REDUCED + j] = combine(t.segment[s * MAX_REDUCED + j],
                                                     t.partial[k * MAX_REDUCED + j], maximum)


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
    """Pointers and lengths of segments of memory that one kernel call steps together, and
    their split into pieces.

    A segment is any run of elements: a whole array, a tensor that torch owns, or a slice of a
    flat buffer (a rank's shard). The table is built once over the parameters' segments; state
    pointers are set when state buffers are (re)allocated, and gradient pointers at every step
    (``bind_grads`` validates arrays against the table's reference arrays first;
    ``bind_grad_addresses`` takes addresses its caller has validated).
    """

    cdef Table t
    cdef list references         # arrays the gradients must match, when built over arrays
    cdef bint bound              # gradients bound and no kernel has consumed them yet
    cdef readonly Py_ssize_t size

    def __cinit__(self, addresses, lengths, int dtype, list references=None):
        cdef Py_ssize_t s, k, start
        self.t.nseg = len(addresses)
        if self.t.nseg == 0 or len(lengths) != self.t.nseg:
            raise ValueError("a segment table needs one length per address, and one at least")
        if dtype != FLOAT32 and dtype != FLOAT64:
            raise ValueError(f"dtype must be FLOAT32 ({FLOAT32}) or FLOAT64 ({FLOAT64})")
        self.t.dtype = dtype
        self.t.itemsize = 4 if dtype == FLOAT32 else 8
        self.references = references
        self.t.param = <char**>malloc(self.t.nseg * sizeof(char*))
        self.t.grad = <const char**>malloc(self.t.nseg * sizeof(char*))
        self.t.state = <char**>malloc(MAX_ROLES * self.t.nseg * sizeof(char*))
        self.t.length = <Py_ssize_t*>malloc(self.t.nseg * sizeof(Py_ssize_t))
        self.t.segment = <double*>malloc(MAX_REDUCED * self.t.nseg * sizeof(double))
        if (self.t.param == NULL or self.t.grad == NULL or self.t.state == NULL
                or self.t.length == NULL or self.t.segment == NULL):
            raise MemoryError()
        memset(self.t.state, 0, MAX_ROLES * self.t.nseg * sizeof(char*))
        self.t.policy = Policy(0.0, 0, 0, MIN_PENALTY)
        self.t.reduce_policy = Policy(0.0, 0, 0, MIN_PENALTY)
        self.t.total = 0
        self.t.npieces = 0
        for s in range(self.t.nseg):
            if lengths[s] < 0:
                raise ValueError(f"segment {s}: negative length {lengths[s]}")
            self.t.param[s] = <char*><uintptr_t>addresses[s]
            self.t.grad[s] = NULL
            self.t.length[s] = lengths[s]
            self.t.total += self.t.length[s]
            self.t.npieces += (self.t.length[s] + PIECE - 1) // PIECE
        self.size = self.t.total
        self.t.piece_seg = <Py_ssize_t*>malloc(max(self.t.npieces, 1) * sizeof(Py_ssize_t))
        self.t.piece_start = <Py_ssize_t*>malloc(max(self.t.npieces, 1) * sizeof(Py_ssize_t))
        self.t.partial = <double*>malloc(max(self.t.npieces, 1) * MAX_REDUCED * sizeof(double))
        if self.t.piece_seg == NULL or self.t.piece_start == NULL or self.t.partial == NULL:
            raise MemoryError()
        k = 0
        for s in range(self.t.nseg):
            for start in range(0, self.t.length[s], PIECE):
                self.t.piece_seg[k] = s
                self.t.piece_start[k] = start
                k += 1

    @staticmethod
    def of_arrays(list arrays):
        """A table over whole C-contiguous float32/float64 arrays of one dtype, which the
        gradients given to ``bind_grads`` must then match in dtype and shape."""
        cdef cnp.ndarray a
        if not arrays:
            raise ValueError("a segment table needs at least one array")
        typenum = cnp.PyArray_TYPE(<cnp.ndarray?>arrays[0])
        if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
            raise TypeError(f"expected float32 or float64 arrays, got {arrays[0].dtype}")
        for a in arrays:
            if cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a):
                raise TypeError("segments must be C-contiguous arrays of one dtype")
        return SegmentTable([<uintptr_t>cnp.PyArray_DATA(a) for a in arrays],
                            [cnp.PyArray_SIZE(a) for a in arrays],
                            FLOAT32 if typenum == cnp.NPY_FLOAT32 else FLOAT64, list(arrays))

    def __dealloc__(self):
        free(self.t.param)
        free(self.t.grad)
        free(self.t.state)
        free(self.t.length)
        free(self.t.piece_seg)
        free(self.t.piece_start)
        free(self.t.partial)
        free(self.t.segment)

    @property
    def nseg(self):
        return self.t.nseg

    def set_state(self, int role, addresses):
        """Point state role ``role`` at one address per segment (each segment's length of
        elements, the table's dtype), or unset it with None."""
        cdef Py_ssize_t s
        if not 0 <= role < MAX_ROLES:
            raise ValueError(f"role must be in [0, {MAX_ROLES}), got {role}")
        if addresses is None:
            for s in range(self.t.nseg):
                self.t.state[role * self.t.nseg + s] = NULL
            return
        if len(addresses) != self.t.nseg:
            raise ValueError(f"expected {self.t.nseg} state addresses, got {len(addresses)}")
        for s in range(self.t.nseg):
            self.t.state[role * self.t.nseg + s] = <char*><uintptr_t>addresses[s]

    def bind_grads(self, grads, Py_ssize_t first, MemoryGuard guard):
        """Validate ``grads[first:first + nseg]`` against the table's reference arrays and
        point at them. Raises before anything is modified; names the gradient by its index in
        ``grads``."""
        cdef Py_ssize_t s, d, ndim
        cdef cnp.ndarray g, p
        cdef uintptr_t lo
        if self.references is None:
            raise RuntimeError("bind_grads needs a table built over arrays (of_arrays)")
        for s in range(self.t.nseg):
            obj = grads[first + s]
            if not cnp.PyArray_Check(obj):
                raise TypeError(
                    f"grads[{first + s}]: expected a numpy.ndarray, got {type(obj).__name__}")
            g = <cnp.ndarray>obj
            param = self.references[s]
            p = <cnp.ndarray>param
            if cnp.PyArray_TYPE(g) != cnp.PyArray_TYPE(p):
                raise TypeError(
                    f"grads[{first + s}]: expected dtype {param.dtype} (its parameter's), "
                    f"got {obj.dtype}")
            ndim = cnp.PyArray_NDIM(g)
            if ndim != cnp.PyArray_NDIM(p):
                raise ValueError(
                    f"grads[{first + s}]: expected shape {param.shape} (its parameter's), "
                    f"got {obj.shape}")
            for d in range(ndim):
                if cnp.PyArray_DIMS(g)[d] != cnp.PyArray_DIMS(p)[d]:
                    raise ValueError(
                        f"grads[{first + s}]: expected shape {param.shape} (its parameter's), "
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

    def bind_grad_addresses(self, addresses):
        """Point at one gradient per segment, by address (validated by the caller)."""
        cdef Py_ssize_t s
        if len(addresses) != self.t.nseg:
            raise ValueError(f"expected {self.t.nseg} gradient addresses, got {len(addresses)}")
        for s in range(self.t.nseg):
            self.t.grad[s] = <const char*><uintptr_t>addresses[s]
        self.bound = True

    def bind_self(self):
        """Let the next kernel read the parameters' own memory as the gradient (a kernel
        that reads no gradient: scaling and clamping of the arrays themselves)."""
        cdef Py_ssize_t s
        for s in range(self.t.nseg):
            self.t.grad[s] = self.t.param[s]
        self.bound = True

    cdef int start_kernel(self, unsigned roles) except -1:
        """Check that a kernel may run: gradients bound for this call and every state role
        whose bit is set in ``roles`` pointed at memory."""
        cdef int r
        if not self.bound:
            raise RuntimeError("gradients must be bound before every kernel call")
        for r in range(MAX_ROLES):
            if roles >> r & 1 and self.t.state[r * self.t.nseg] == NULL:
                raise RuntimeError(f"state role {r} is not set")
        self.bound = False
        return 0

    def segment_values(self, int reduced):
        """The values the last reduction pass left per segment: a list of ``reduced``-tuples."""
        if not 0 < reduced <= MAX_REDUCED:
            raise ValueError(f"reduced must be in [1, {MAX_REDUCED}], got {reduced}")
        return [tuple(self.t.segment[s * MAX_REDUCED + j] for j in range(reduced))
                for s in range(self.t.nseg)]
