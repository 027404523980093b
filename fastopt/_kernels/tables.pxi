# The segment table: the Python-facing class over which every kernel runs.

cdef int regrow(void** array, size_t nbytes) except -1:
    cdef void* grown = realloc(array[0], nbytes)
    if grown == NULL:
        raise MemoryError()
    array[0] = grown
    return 0


cdef int reserve(Pieces* pieces, Py_ssize_t count) except -1:
    """Room for ``count`` pieces (the arrays are kept, and grown when a call needs more)."""
    cdef Py_ssize_t n = max(count, 1)
    if n <= pieces.capacity:
        return 0
    regrow(<void**>&pieces.seg, n * sizeof(Py_ssize_t))
    regrow(<void**>&pieces.start, n * sizeof(Py_ssize_t))
    regrow(<void**>&pieces.grad, n * sizeof(Py_ssize_t))
    regrow(<void**>&pieces.length, n * sizeof(Py_ssize_t))
    regrow(<void**>&pieces.partial, n * MAX_REDUCED * sizeof(double))
    pieces.capacity = n
    return 0


cdef void release(Pieces* pieces) noexcept:
    free(pieces.seg)
    free(pieces.start)
    free(pieces.grad)
    free(pieces.length)
    free(pieces.partial)


cdef inline void add_piece(Pieces* pieces, Py_ssize_t s, Py_ssize_t start, Py_ssize_t grad,
                           Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k = pieces.count
    pieces.seg[k], pieces.start[k], pieces.grad[k], pieces.length[k] = s, start, grad, n
    pieces.count = k + 1
    pieces.total += n


cdef class SegmentTable:
    """Pointers and lengths of segments of memory that one kernel call steps together, and
    their split into pieces.

    A segment is any run of elements: a whole array, a tensor that torch owns, or a slice of a
    flat buffer (a rank's shard). The table is built once over the parameters' segments, of
    one storage type (``STORAGE``: float32, float64, bfloat16 or float16); state pointers (each
    role of its own storage type) are set when state buffers are (re)allocated, and gradient
    pointers at every step (``bind_grads`` validates arrays against the table's reference
    arrays first; ``bind_grad_addresses`` takes addresses its caller has validated). Where
    every buffer is of the compute type (float64 for float64 parameters, else float32) a
    kernel runs on them directly; otherwise it runs a block at a time through float32 copies
    (staging.pxi), the parameters stored back as ``set_rounding`` says.
    """

    cdef Table t
    cdef list references         # arrays the gradients must match, when built over arrays
    cdef bint bound              # gradients bound and no kernel has consumed them yet
    cdef readonly Py_ssize_t size

    def __cinit__(self, addresses, lengths, int dtype, list references=None):
        cdef Py_ssize_t s, start, count
        cdef int r
        self.t.nseg = len(addresses)
        if self.t.nseg == 0 or len(lengths) != self.t.nseg:
            raise ValueError("a segment table needs one length per address, and one at least")
        check_storage(dtype)
        self.t.param_type = self.t.grad_type = dtype
        self.t.dtype = FLOAT64 if dtype == FLOAT64 else FLOAT32
        self.t.itemsize = 8 if dtype == FLOAT64 else 4
        for r in range(MAX_ROLES):
            self.t.state_type[r] = self.t.dtype
        self.t.rounding = NEAREST
        self.t.seed = self.t.step = 0
        self.references = references
        self.t.param = <char**>malloc(self.t.nseg * sizeof(char*))
        self.t.grad = <const char**>malloc(self.t.nseg * sizeof(char*))
        self.t.state = <char**>malloc(MAX_ROLES * self.t.nseg * sizeof(char*))
        self.t.comp = <char**>malloc(self.t.nseg * sizeof(char*))
        self.t.parameter = <uint64_t*>malloc(self.t.nseg * sizeof(uint64_t))
        self.t.length = <Py_ssize_t*>malloc(self.t.nseg * sizeof(Py_ssize_t))
        self.t.segment = <double*>malloc(MAX_REDUCED * self.t.nseg * sizeof(double))
        if (self.t.param == NULL or self.t.grad == NULL or self.t.state == NULL
                or self.t.comp == NULL or self.t.parameter == NULL or self.t.length == NULL
                or self.t.segment == NULL):
            raise MemoryError()
        memset(self.t.state, 0, MAX_ROLES * self.t.nseg * sizeof(char*))
        memset(self.t.comp, 0, self.t.nseg * sizeof(char*))
        self.t.policy = Policy(0.0, 0, 0, MIN_PENALTY)
        self.t.reduce_policy = Policy(0.0, 0, 0, MIN_PENALTY)
        self.t.total = 0
        count = 0
        for s in range(self.t.nseg):
            if lengths[s] < 0:
                raise ValueError(f"segment {s}: negative length {lengths[s]}")
            self.t.param[s] = <char*><uintptr_t>addresses[s]
            self.t.grad[s] = NULL
            self.t.parameter[s] = s
            self.t.length[s] = lengths[s]
            self.t.total += self.t.length[s]
            count += (self.t.length[s] + PIECE - 1) // PIECE
        self.size = self.t.total
        reserve(&self.t.dense, count)
        for s in range(self.t.nseg):
            for start in range(0, self.t.length[s], PIECE):
                add_piece(&self.t.dense, s, start, start, min(PIECE, self.t.length[s] - start))
        self.t.pieces = &self.t.dense

    @staticmethod
    def of_arrays(list arrays):
        """A table over whole C-contiguous arrays of one floating dtype, which the gradients
        given to ``bind_grads`` must then match in shape."""
        cdef cnp.ndarray a
        if not arrays:
            raise ValueError("a segment table needs at least one array")
        typenum = cnp.PyArray_TYPE(<cnp.ndarray?>arrays[0])
        storage = storage_of(typenum)
        if storage < 0:
            raise TypeError(f"expected float32, float64, float16 or bfloat16 arrays, got "
                            f"{arrays[0].dtype}")
        for a in arrays:
            if cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a):
                raise TypeError("segments must be C-contiguous arrays of one dtype")
        return SegmentTable([<uintptr_t>cnp.PyArray_DATA(a) for a in arrays],
                            [cnp.PyArray_SIZE(a) for a in arrays], storage, list(arrays))

    def __dealloc__(self):
        free(self.t.param)
        free(self.t.grad)
        free(self.t.state)
        free(self.t.comp)
        free(self.t.parameter)
        free(self.t.length)
        release(&self.t.dense)
        release(&self.t.sparse)
        free(self.t.segment)

    @property
    def nseg(self):
        return self.t.nseg

    def with_params(self, addresses, int storage):
        """A table over other memory laid out as this one's parameters: one address per
        segment, of ``storage``, this table's compute type; this table's lengths, state,
        bound gradients and thread policy, learnt over as many elements (Muon's element-wise
        pass writes its work buffer there, in place of the parameters: fastopt.engine.matrix)."""
        cdef Py_ssize_t s
        cdef SegmentTable other
        if storage != self.t.dtype:
            raise ValueError("the parameters of a redirected table must be of its compute type")
        other = SegmentTable(addresses, [self.t.length[s] for s in range(self.t.nseg)], storage)
        memcpy(other.t.state, self.t.state, MAX_ROLES * self.t.nseg * sizeof(char*))
        memcpy(other.t.state_type, self.t.state_type, MAX_ROLES * sizeof(int))
        memcpy(other.t.grad, self.t.grad, self.t.nseg * sizeof(char*))
        other.t.grad_type = self.t.grad_type
        other.t.policy = self.t.policy
        other.bound = self.bound
        return other

    def without_state(self):
        """This table's parameters, with their rounding, compensation and stochastic stream,
        and none of its state: for a pass that updates the parameters only (the ``axpy`` of a
        rule of matrices), which must not load and store state it does not use (8-bit state
        requantised from its own codes would drift)."""
        cdef Py_ssize_t s
        cdef SegmentTable other = SegmentTable(
            [<uintptr_t>self.t.param[s] for s in range(self.t.nseg)],
            [self.t.length[s] for s in range(self.t.nseg)], self.t.param_type)
        other.t.rounding = self.t.rounding
        memcpy(other.t.comp, self.t.comp, self.t.nseg * sizeof(char*))
        memcpy(other.t.parameter, self.t.parameter, self.t.nseg * sizeof(uint64_t))
        other.t.seed, other.t.step = self.t.seed, self.t.step
        other.t.policy = self.t.policy
        return other

    def set_state(self, int role, addresses, int storage=-1):
        """Point state role ``role`` at one address per segment (each segment's length of
        elements, of ``storage``: by default the compute type; 8-bit codes are followed by
        their blocks' scales), or unset it with None."""
        cdef Py_ssize_t s
        if not 0 <= role < MAX_ROLES:
            raise ValueError(f"role must be in [0, {MAX_ROLES}), got {role}")
        if addresses is None:
            for s in range(self.t.nseg):
                self.t.state[role * self.t.nseg + s] = NULL
            return
        if len(addresses) != self.t.nseg:
            raise ValueError(f"expected {self.t.nseg} state addresses, got {len(addresses)}")
        storage = self.t.dtype if storage < 0 else check_storage(storage, True)
        if (self.t.dtype == FLOAT64) != (storage == FLOAT64):
            raise ValueError("float64 state goes with float64 parameters, and only with them")
        self.t.state_type[role] = storage
        for s in range(self.t.nseg):
            self.t.state[role * self.t.nseg + s] = <char*><uintptr_t>addresses[s]

    def set_rounding(self, int rounding, compensation=None):
        """How low-precision parameters are stored after an update: NEAREST (even),
        STOCHASTIC (bfloat16 only; see ``set_stream``) or KAHAN, with one compensation buffer
        of the parameters' type per segment."""
        cdef Py_ssize_t s
        if rounding == STOCHASTIC and self.t.param_type != BFLOAT16:
            raise ValueError("stochastic rounding is for bfloat16 parameters")
        if rounding == KAHAN:
            if self.t.param_type != BFLOAT16 and self.t.param_type != FLOAT16:
                raise ValueError("compensated updates are for bfloat16 and float16 parameters")
            if compensation is None or len(compensation) != self.t.nseg:
                raise ValueError(f"expected {self.t.nseg} compensation addresses")
            for s in range(self.t.nseg):
                self.t.comp[s] = <char*><uintptr_t>compensation[s]
        elif rounding != NEAREST and rounding != STOCHASTIC:
            raise ValueError(f"unknown rounding {rounding}")
        self.t.rounding = rounding

    def set_stream(self, uint64_t seed, uint64_t step, parameters=None):
        """The stochastic rounding stream of the next call: its seed and step, and (once) a
        stable id for each segment's parameter."""
        cdef Py_ssize_t s
        self.t.seed, self.t.step = seed, step
        if parameters is not None:
            if len(parameters) != self.t.nseg:
                raise ValueError(f"expected {self.t.nseg} parameter ids")
            for s in range(self.t.nseg):
                self.t.parameter[s] = parameters[s]

    def bind_grads(self, grads, Py_ssize_t first, MemoryGuard guard):
        """Validate ``grads[first:first + nseg]`` against the table's reference arrays (their
        parameters' shapes; the dtype their parameters' or, for float32 parameters, bfloat16
        or float16, the same for all) and point at them. Raises before anything is
        modified; names the gradient by its index in ``grads``."""
        cdef Py_ssize_t s, d, ndim
        cdef cnp.ndarray g, p
        cdef uintptr_t lo
        cdef int storage = -1, this
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
            this = storage_of(cnp.PyArray_TYPE(g))
            if this != self.t.param_type and not (
                    self.t.param_type == FLOAT32 and (this == BFLOAT16 or this == FLOAT16)):
                raise TypeError(
                    f"grads[{first + s}]: expected dtype {param.dtype} (its parameter's"
                    + (", or bfloat16 or float16" if self.t.param_type == FLOAT32 else "")
                    + f"), got {obj.dtype}")
            if storage >= 0 and this != storage:
                raise TypeError(f"grads[{first + s}]: expected dtype {grads[first].dtype} like "
                                f"the other gradients of its group, got {obj.dtype}")
            storage = this
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
            if guard.overlaps(lo, lo + self.t.length[s] * STORAGE_SIZE[this]):
                raise ValueError(
                    f"grads[{first + s}]: expected memory of its own, got an array that "
                    f"shares memory with a parameter or optimizer state")
        for s in range(self.t.nseg):
            self.t.grad[s] = <const char*>cnp.PyArray_DATA(grads[first + s])
        self.t.grad_type = storage
        self.t.pieces = &self.t.dense
        self.bound = True

    def bind_grad_addresses(self, addresses, int storage=-1):
        """Point at one gradient per segment, by address (validated by the caller), of
        ``storage`` (by default the parameters')."""
        cdef Py_ssize_t s
        if len(addresses) != self.t.nseg:
            raise ValueError(f"expected {self.t.nseg} gradient addresses, got {len(addresses)}")
        for s in range(self.t.nseg):
            self.t.grad[s] = <const char*><uintptr_t>addresses[s]
        self.t.grad_type = self.t.param_type if storage < 0 else check_storage(storage)
        self.t.pieces = &self.t.dense
        self.bound = True

    def bind_row_addresses(self, indices, counts, row_lengths, addresses, int storage=-1):
        """Point at row-sparse gradients, by address (validated by the caller): for segment
        s, ``counts[s]`` rows of ``row_lengths[s]`` elements, the int64 row numbers at
        ``indices[s]`` (distinct, each below the segment's length over its row length) and
        their values one row after another at ``addresses[s]``, of ``storage`` (by default
        the parameters'). The next kernel call steps those rows only, each as a piece at its
        place in the parameter and its state (consecutive rows as one piece, up to PIECE
        elements)."""
        cdef Py_ssize_t s, j, k, count, width, row, sub, per_piece, total = 0
        cdef const int64_t* index
        cdef Pieces* pieces = &self.t.sparse
        if not len(indices) == len(counts) == len(row_lengths) == len(addresses) == self.t.nseg:
            raise ValueError(f"expected {self.t.nseg} row indices, counts, row lengths and "
                             "gradient addresses")
        for s in range(self.t.nseg):
            if row_lengths[s] < 0 or counts[s] < 0:
                raise ValueError(f"segment {s}: negative row length or count")
            total += counts[s] * ((row_lengths[s] + PIECE - 1) // PIECE)
        reserve(pieces, total)
        pieces.count = pieces.total = 0
        for s in range(self.t.nseg):
            index = <const int64_t*><uintptr_t>indices[s]
            count, width = counts[s], row_lengths[s]
            self.t.grad[s] = <const char*><uintptr_t>addresses[s]
            per_piece = PIECE // width if width else 0
            j = 0
            while j < count and width:
                row = index[j]
                if per_piece > 1:  # this row and the next ones in both, while they fit
                    k = j + 1
                    while k < count and k - j < per_piece and index[k] == index[k - 1] + 1:
                        k += 1
                    add_piece(pieces, s, row * width, j * width, (k - j) * width)
                    j = k
                    continue
                for sub in range(0, width, PIECE):
                    add_piece(pieces, s, row * width + sub, j * width + sub,
                              min(PIECE, width - sub))
                j += 1
        self.t.grad_type = self.t.param_type if storage < 0 else check_storage(storage)
        self.t.pieces = pieces
        self.bound = True

    def unbind(self):
        """Forget the bound gradients (a step skipped after its norm pass): the next kernel
        call must bind them again."""
        self.bound = False

    def bind_self(self):
        """Let the next kernel read the parameters' own memory as the gradient (a kernel
        that reads no gradient: scaling and clamping of the arrays themselves)."""
        cdef Py_ssize_t s
        for s in range(self.t.nseg):
            self.t.grad[s] = self.t.param[s]
        self.t.grad_type = self.t.param_type
        self.t.pieces = &self.t.dense
        self.bound = True

    cdef void find_native(self) noexcept:
        """Whether every buffer a kernel will touch is of the compute type."""
        cdef int r
        cdef bint native = self.t.param_type == self.t.dtype and self.t.grad_type == self.t.dtype
        for r in range(MAX_ROLES):
            if self.t.state[r * self.t.nseg] != NULL and self.t.state_type[r] != self.t.dtype:
                native = False
        self.t.native = native

    cdef int start_kernel(self, unsigned roles) except -1:
        """Check that a kernel may run (gradients bound for this call, every state role whose
        bit is set in ``roles`` pointed at memory) and whether it runs on the buffers
        themselves."""
        cdef int r
        if not self.bound:
            raise RuntimeError("gradients must be bound before every kernel call")
        for r in range(MAX_ROLES):
            if roles >> r & 1 and self.t.state[r * self.t.nseg] == NULL:
                raise RuntimeError(f"state role {r} is not set")
        self.find_native()
        self.bound = False
        return 0

    def segment_values(self, int reduced):
        """The values the last reduction pass left per segment: a list of ``reduced``-tuples."""
        if not 0 < reduced <= MAX_REDUCED:
            raise ValueError(f"reduced must be in [1, {MAX_REDUCED}], got {reduced}")
        return [tuple(self.t.segment[s * MAX_REDUCED + j] for j in range(reduced))
                for s in range(self.t.nseg)]
