# Arrays rounded to bfloat16 values in place: the matrix products of Muon's Newton–Schulz
# iteration run in bfloat16, as torch's do, through float32 BLAS (fastopt.newton_schulz).

cdef extern from "storage.h" nogil:
    float fastopt_from_bf16(uint16_t h)
    uint16_t fastopt_to_bf16(float x)


def round_to_bfloat16(float[::1] values):
    """Round every element of a contiguous float32 array to the nearest bfloat16 (ties to
    even; NaN and ±Inf stay what they are), in place, keeping it float32."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(values.shape[0]):
            values[i] = fastopt_from_bf16(fastopt_to_bf16(values[i]))
