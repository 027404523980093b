# Storage types: which NumPy arrays the kernels take, and the 8-bit state's codes (storage.h).

# NumPy's type number of ml_dtypes.bfloat16 (a dtype NumPy does not have), once registered.
cdef int bfloat16_typenum = -1


def register_bfloat16(int typenum):
    """Tell the kernels which NumPy type number is bfloat16 (fastopt does, at import, when
    ml_dtypes is installed)."""
    global bfloat16_typenum
    bfloat16_typenum = typenum


cdef int storage_of(int typenum) noexcept:
    """The storage type of NumPy type ``typenum``, or -1."""
    if typenum == cnp.NPY_FLOAT32:
        return FLOAT32
    if typenum == cnp.NPY_FLOAT64:
        return FLOAT64
    if typenum == cnp.NPY_FLOAT16:
        return FLOAT16
    if typenum == bfloat16_typenum and typenum >= 0:
        return BFLOAT16
    return -1


cdef int check_storage(int storage, bint state=False) except -1:
    if not FLOAT32 <= storage <= (Q8_UNSIGNED if state else FLOAT16):
        raise ValueError(f"unknown storage type {storage}")
    return storage


def set_codes(signed_code, unsigned_code):
    """The 256 sorted values of the signed and of the unsigned dynamic code of 8-bit state
    (fastopt.rules.storage makes them; fastopt sets them at import)."""
    cdef float code[256]
    cdef int b, i
    for b, values in enumerate((signed_code, unsigned_code)):
        if len(values) != 256 or any(values[i] > values[i + 1] for i in range(255)):
            raise ValueError("a code is 256 sorted values")
        for i in range(256):
            code[i] = values[i]
        if fastopt_book_init(&BOOKS[b], code) != 0:
            raise ValueError("the code is too fine for the quantiser's buckets")


def quantize(float[::1] values, uint8_t[::1] codes, float[::1] scales, bint on_signed):
    """8-bit codes and block scales of float32 ``values``, as 8-bit state stores them (on
    the signed code, or the unsigned)."""
    cdef Py_ssize_t n = values.shape[0], e, m, k
    if codes.shape[0] != n or scales.shape[0] != (n + STAGE - 1) // STAGE:
        raise ValueError("expected one code per value and one scale per block of them")
    with nogil:
        for k in range((n + STAGE - 1) // STAGE):
            e = k * STAGE
            m = n - e if n - e < STAGE else STAGE
            scales[k] = fastopt_store_q8(&values[e], m, &BOOKS[0 if on_signed else 1], &codes[e])
    return codes, scales


def dequantize(const uint8_t[::1] codes, const float[::1] scales, float[::1] out,
               bint on_signed):
    """The float32 values that 8-bit codes and block scales stand for."""
    cdef Py_ssize_t n = codes.shape[0], e, m, k
    if out.shape[0] != n or scales.shape[0] != (n + STAGE - 1) // STAGE:
        raise ValueError("expected one value per code and one scale per block of them")
    with nogil:
        for k in range((n + STAGE - 1) // STAGE):
            e = k * STAGE
            m = n - e if n - e < STAGE else STAGE
            fastopt_load_q8(&codes[e], scales[k], &BOOKS[0 if on_signed else 1], &out[e], m)
    return out
