# Pieces of a table whose buffers are not all of the compute type: loaded a block at a time
# into float32, stepped by the rule's float32 kernel, stored back. A buffer that is float32
# already is stepped where it is; the others are converted (storage.h) on the way in and out,
# the parameter rounded as the table says (to nearest even, stochastically, or compensated).

cdef extern from "storage.h" nogil:
    uint32_t fastopt_stream_key(uint64_t seed, uint64_t step, uint64_t parameter)
    float fastopt_from_bf16(uint16_t h)
    uint16_t fastopt_to_bf16(float x)
    void fastopt_load_bf16(const uint16_t* src, float* dst, Py_ssize_t n)
    void fastopt_load_f16(const uint16_t* src, float* dst, Py_ssize_t n)
    void fastopt_store_bf16(const float* src, uint16_t* dst, Py_ssize_t n)
    void fastopt_store_f16(const float* src, uint16_t* dst, Py_ssize_t n)
    uint16_t fastopt_to_bf16_stochastic(float x, uint32_t random)
    uint32_t fastopt_random(uint32_t key, uint32_t index)
    void fastopt_store_bf16_stochastic(const float* src, uint16_t* dst, Py_ssize_t n,
                                       uint32_t key, uint32_t first)
    void fastopt_store_kahan(const float* old, const float* new_, uint16_t* p, uint16_t* c,
                             Py_ssize_t n, int half)

    ctypedef struct fastopt_book:
        pass
    int fastopt_book_init(fastopt_book* book, const float* code)
    void fastopt_load_q8(const uint8_t* codes, float absmax, const fastopt_book* book,
                         float* dst, Py_ssize_t n)
    float fastopt_store_q8(const float* src, Py_ssize_t n, const fastopt_book* book,
                           uint8_t* codes)

cdef Py_ssize_t STORAGE_SIZE[6]
STORAGE_SIZE[FLOAT32] = 4
STORAGE_SIZE[FLOAT64] = 8
STORAGE_SIZE[BFLOAT16] = 2
STORAGE_SIZE[FLOAT16] = 2
STORAGE_SIZE[Q8_SIGNED] = 1
STORAGE_SIZE[Q8_UNSIGNED] = 1

# The dynamic codes of 8-bit state, signed (Q8_SIGNED) and unsigned, set at import.
cdef fastopt_book BOOKS[2]


cdef inline float* q8_scales(const Table* t, int r, Py_ssize_t s) noexcept nogil:
    """Segment s's block scales of 8-bit role r: after its codes, on a 4-byte boundary."""
    return <float*>(t.state[r * t.nseg + s] + ((t.length[s] + 3) & ~(<Py_ssize_t>3)))


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


cdef inline float* load_state(const Table* t, int r, Py_ssize_t s, Py_ssize_t e, float* block,
                              Py_ssize_t m) noexcept nogil:
    """Role r of segment s's elements e .. e + m − 1 as float32 (e a multiple of STAGE)."""
    cdef int storage = t.state_type[r]
    cdef char* where = t.state[r * t.nseg + s] + e * STORAGE_SIZE[storage]
    if storage >= Q8_SIGNED:
        fastopt_load_q8(<const uint8_t*>where, q8_scales(t, r, s)[e // STAGE],
                        &BOOKS[storage - Q8_SIGNED], block, m)
        return block
    return load(storage, where, block, m)


cdef inline void store_state(const Table* t, int r, Py_ssize_t s, Py_ssize_t e,
                             const float* block, Py_ssize_t m) noexcept nogil:
    cdef int storage = t.state_type[r]
    cdef char* where = t.state[r * t.nseg + s] + e * STORAGE_SIZE[storage]
    if storage >= Q8_SIGNED:
        q8_scales(t, r, s)[e // STAGE] = fastopt_store_q8(block, m, &BOOKS[storage - Q8_SIGNED],
                                                          <uint8_t*>where)
    else:
        store(storage, block, where, m)


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
    cdef Py_ssize_t s = t.pieces.seg[k], start = t.pieces.start[k], n = t.pieces.length[k]
    cdef Py_ssize_t grad = t.pieces.grad[k] - start  # the gradient's offset from the parameter's
    cdef Py_ssize_t off, m, e
    cdef int r
    cdef uint32_t key = 0
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
        g = load(t.grad_type, t.grad[s] + (grad + e) * STORAGE_SIZE[t.grad_type], g_block, m)
        for r in range(MAX_ROLES):
            state[r] = NULL
            if t.state[r * t.nseg + s] != NULL:
                state[r] = load_state(t, r, s, e, s_block + r * STAGE, m)
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
                store_state(t, r, s, e, state[r], m)


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
    cdef Py_ssize_t s = t.pieces.seg[k], start = t.pieces.start[k], n = t.pieces.length[k]
    cdef Py_ssize_t grad = t.pieces.grad[k] - start
    cdef Py_ssize_t off, m, e
    cdef int r
    off = 0
    while off < n:
        m = n - off if n - off < STAGE else STAGE
        e = start + off
        off += m
        p = load(t.param_type, t.param[s] + e * STORAGE_SIZE[t.param_type], p_block, m)
        g = load(t.grad_type, t.grad[s] + (grad + e) * STORAGE_SIZE[t.grad_type], g_block, m)
        for r in range(MAX_ROLES):
            state[r] = NULL
            if t.state[r * t.nseg + s] != NULL:
                state[r] = load_state(t, r, s, e, s_block + r * STAGE, m)
        f32(p, g, state, m, args, acc)


def round_to_bfloat16(float[::1] values):
    """Round every element of a contiguous float32 array to the nearest bfloat16 (ties to
    even; NaN and ±Inf stay what they are), in place, keeping it float32: the matrix products
    of Muon's Newton–Schulz iteration run in bfloat16, as torch's do, through float32 BLAS
    (fastopt.newton_schulz)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(values.shape[0]):
            values[i] = fastopt_from_bf16(fastopt_to_bf16(values[i]))


# What convert_piece does to a piece: widen low-precision values to float32, or store float32
# ones rounded as a parameter's rounding says.
cdef enum:
    FROM_LOW, TO_NEAREST, TO_STOCHASTIC, TO_KAHAN


cdef void convert_piece(int op, const float* new, float* wide, uint16_t* p, uint16_t* c,
                        Py_ssize_t start, Py_ssize_t n, uint32_t key, bint half) noexcept nogil:
    """Elements [start, start + n) of widen_bits or store_rounded, n at most STAGE."""
    cdef float old[STAGE]
    cdef int storage = FLOAT16 if half else BFLOAT16
    if op == FROM_LOW:
        load(storage, <const char*>(p + start), wide + start, n)
    elif op == TO_NEAREST:
        store(storage, new + start, <char*>(p + start), n)
    elif op == TO_STOCHASTIC:
        fastopt_store_bf16_stochastic(new + start, p + start, n, key, <uint32_t>start)
    else:
        load(storage, <const char*>(p + start), old, n)
        fastopt_store_kahan(old, new + start, p + start, c + start, n, half)


cdef void convert(int op, const float* new, float* wide, uint16_t* p, uint16_t* c,
                  Py_ssize_t n, uint32_t key, bint half) noexcept nogil:
    """convert_piece over n elements in pieces of STAGE, in parallel from the serial
    threshold on: each element's result is the same for any thread count."""
    cdef Py_ssize_t pieces = (n + STAGE - 1) // STAGE, k
    if n >= serial_threshold and team_size() > 1:
        for k in prange(pieces, schedule="static", num_threads=team_size()):
            convert_piece(op, new, wide, p, c, k * STAGE, min(n - k * STAGE, <Py_ssize_t>STAGE),
                          key, half)
    else:
        for k in range(pieces):
            convert_piece(op, new, wide, p, c, k * STAGE, min(n - k * STAGE, <Py_ssize_t>STAGE),
                          key, half)


def stream_key(uint64_t seed, uint64_t step, uint64_t parameter):
    """The 32-bit key of a parameter's stochastic rounding stream at a step (the one the
    tables' kernels draw from: ``parameter`` is ``group << 32 | index in the group``)."""
    return fastopt_stream_key(seed, step, parameter)


def widen_bits(const uint16_t[::1] bits, float[::1] out, bint half=False):
    """``out`` ← the values of ``bits`` (a bfloat16 or, with ``half``, float16 array's) in
    float32, as a step's kernel loads them. For a rule stepped outside the segment tables
    (Adafactor)."""
    cdef Py_ssize_t n = bits.shape[0]
    if out.shape[0] != n:
        raise ValueError(f"widen_bits: expected {n} elements in out, got {out.shape[0]}")
    if n:
        with nogil:
            convert(FROM_LOW, NULL, &out[0], <uint16_t*>&bits[0], NULL, n, 0, half)


def store_rounded(const float[::1] new, uint16_t[::1] param, str rounding, uint32_t key=0,
                  uint16_t[::1] comp=None, bint half=False):
    """Store float32 ``new`` into ``param`` (the bits of a bfloat16 or, with ``half``, float16
    array of its length) as a step's kernel stores its parameter: ``rounding`` "nearest"
    (even), "stochastic" (bfloat16 only: element i drawing the i-th number of the stream
    ``key``), or "kahan" (the compensated update from param's current values, ``comp`` the
    compensation, of param's type). For a rule stepped outside the segment tables."""
    cdef Py_ssize_t n = new.shape[0]
    cdef int op = {"nearest": TO_NEAREST, "stochastic": TO_STOCHASTIC, "kahan": TO_KAHAN}[rounding]
    if param.shape[0] != n or (op == TO_KAHAN and (comp is None or comp.shape[0] != n)):
        raise ValueError(f"store_rounded: expected {n} elements in param (and comp, for kahan)")
    if op == TO_STOCHASTIC and half:
        raise ValueError("store_rounded: stochastic rounding is to bfloat16")
    if n:
        with nogil:
            convert(op, &new[0], NULL, &param[0], &comp[0] if op == TO_KAHAN else NULL, n, key,
                    half)
