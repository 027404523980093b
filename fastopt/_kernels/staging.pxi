# Pieces of a table whose buffers are not all of the compute type: loaded a block at a time
# into float32, stepped by the rule's float32 kernel, stored back. A buffer that is float32
# already is stepped where it is; the others are converted (storage.h) on the way in and out,
# the parameter rounded as the table says (to nearest even, stochastically, or compensated).

cdef extern from "storage.h" nogil:
    uint32_t fastopt_stream_key(uint64_t seed, uint64_t step, uint64_t parameter)
    void fastopt_load_bf16(const uint16_t* src, float* dst, Py_ssize_t n)
    void fastopt_load_f16(const uint16_t* src, float* dst, Py_ssize_t n)
    void fastopt_store_bf16(const float* src, uint16_t* dst, Py_ssize_t n)
    void fastopt_store_f16(const float* src, uint16_t* dst, Py_ssize_t n)
    void fastopt_store_bf16_stochastic(const float* src, uint16_t* dst, Py_ssize_t n,
                                       uint32_t key, uint32_t first)
    void fastopt_store_kahan(const float* old, const float* new_, uint16_t* p, uint16_t* c,
                             Py_ssize_t n, int half)

cdef Py_ssize_t STORAGE_SIZE[4]
STORAGE_SIZE[FLOAT32] = 4
STORAGE_SIZE[FLOAT64] = 8
STORAGE_SIZE[BFLOAT16] = 2
STORAGE_SIZE[FLOAT16] = 2


cdef inline float* load(int storage, const char* src, float* block, Py_ssize_t n) noexcept nogil:
    """``src``'s n elements as float32: the storage itself when it is float32, else ``block``
    filled with them."""
    if storage == FLOAT32:
        return <float*>src
    if storage == BFLOAT16:
        fastopt_load_bf16(<const uint16_t*>src, block, n)
    else:
        fastopt_load_f16(<const uint16_t*>src, block, n)
    return block


cdef inline void store(int storage, const float* block, char* dst, Py_ssize_t n) noexcept nogil:
    """``block`` back into ``dst``, rounded to nearest even (nothing to do for float32: the
    kernel wrote the storage itself)."""
    if storage == BFLOAT16:
        fastopt_store_bf16(block, <uint16_t*>dst, n)
    elif storage == FLOAT16:
        fastopt_store_f16(block, <uint16_t*>dst, n)


cdef void staged_piece(const Table* t, Py_ssize_t k, chunk_f32 f32, const void* args,
                       const double* segment) noexcept nogil:
    cdef float p_block[STAGE]
    cdef float g_block[STAGE]
    cdef float old[STAGE]
    cdef float s_block[MAX_ROLES * STAGE]
    cdef float* p
    cdef float* g
    cdef float* state[MAX_ROLES]
    cdef char* where
    cdef Py_ssize_t s = t.piece_seg[k], start = t.piece_start[k], n, off, m, e
    cdef int r
    cdef uint32_t key = 0
    n = t.length[s] - start
    if n > PIECE:
        n = PIECE
    if t.rounding == STOCHASTIC:
        key = fastopt_stream_key(t.seed, t.step, t.parameter[s])
    off = 0
    while off < n:
        m = n - off if n - off < STAGE else STAGE
        e = start + off  # the block's first element, counted in its parameter
        off += m
        where = t.param[s] + e * STORAGE_SIZE[t.param_type]
        p = load(t.param_type, where, p_block, m)
        if t.rounding == KAHAN:
            memcpy(old, p, m * sizeof(float))
        g = load(t.grad_type, t.grad[s] + e * STORAGE_SIZE[t.grad_type], g_block, m)
        for r in range(MAX_ROLES):
            state[r] = NULL
            if t.state[r * t.nseg + s] != NULL:
                state[r] = load(t.state_type[r], t.state[r * t.nseg + s]
                                + e * STORAGE_SIZE[t.state_type[r]], s_block + r * STAGE, m)
        f32(p, g, state, m, args, segment)
        if t.param_type != FLOAT32:
            if t.rounding == STOCHASTIC:
                fastopt_store_bf16_stochastic(p, <uint16_t*>where, m, key, <uint32_t>e)
            elif t.rounding == KAHAN:
                fastopt_store_kahan(old, p, <uint16_t*>where,
                                    <uint16_t*>(t.comp[s] + e * 2), m, t.param_type == FLOAT16)
            else:
                store(t.param_type, p, where, m)
        for r in range(MAX_ROLES):
            if state[r] != NULL:
                store(t.state_type[r], state[r],
                      t.state[r * t.nseg + s] + e * STORAGE_SIZE[t.state_type[r]], m)


cdef void staged_reduce_piece(const Table* t, Py_ssize_t k, reduce_f32 f32, const void* args,
                              double* acc) noexcept nogil:
    """The reduction pass of a staged piece: its blocks loaded as above, each reduced into
    ``acc`` in order."""
    cdef float p_block[STAGE]
    cdef float g_block[STAGE]
    cdef float s_block[MAX_ROLES * STAGE]
    cdef float* state[MAX_ROLES]
    cdef const float* p
    cdef const float* g
    cdef Py_ssize_t s = t.piece_seg[k], start = t.piece_start[k], n, off, m, e
    cdef int r
    n = t.length[s] - start
    if n > PIECE:
        n = PIECE
    off = 0
    while off < n:
        m = n - off if n - off < STAGE else STAGE
        e = start + off
        off += m
        p = load(t.param_type, t.param[s] + e * STORAGE_SIZE[t.param_type], p_block, m)
        g = load(t.grad_type, t.grad[s] + e * STORAGE_SIZE[t.grad_type], g_block, m)
        for r in range(MAX_ROLES):
            state[r] = NULL
            if t.state[r * t.nseg + s] != NULL:
                state[r] = load(t.state_type[r], t.state[r * t.nseg + s]
                                + e * STORAGE_SIZE[t.state_type[r]], s_block + r * STAGE, m)
        f32(p, g, state, m, args, acc)
