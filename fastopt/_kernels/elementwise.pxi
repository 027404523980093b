# Element-wise pieces that several rules share. Each is inlined into its caller's loop, where
# any flag it tests is loop-invariant, so the caller's loop still vectorises.

cdef extern from "<math.h>" nogil:
    float sqrtf(float x)
    double sqrt(double x)
    float fabsf(float x)
    double fabs(double x)


cdef inline floating root(floating x) noexcept nogil:
    """Square root in the buffer's precision (libm's sqrt would drag float32 into double)."""
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating magnitude(floating x) noexcept nogil:
    """|x| in the buffer's precision."""
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating with_l2(floating g, floating weight_decay, floating p) noexcept nogil:
    """g + λ p, or g unchanged when λ = 0 (as torch: 0 · p would turn an infinite p into NaN)."""
    if weight_decay != 0:
        return g + weight_decay * p
    return g


cdef inline floating running_avg(floating* avg, Py_ssize_t i, floating x, floating decay,
                                 floating one_minus_decay) noexcept nogil:
    """avg ← β avg + (1 − β) x; stores and returns the new value."""
    cdef floating a = decay * avg[i] + one_minus_decay * x
    avg[i] = a
    return a


cdef inline floating running_avg_sq(floating* avg, Py_ssize_t i, floating x, floating decay,
                                    floating one_minus_decay) noexcept nogil:
    """avg ← β avg + (1 − β) x², as torch's addcmul rounds it: ((1 − β) x) x; stores and
    returns the new value."""
    cdef floating a = decay * avg[i] + one_minus_decay * x * x
    avg[i] = a
    return a


cdef inline floating lerp(floating start, floating end, floating weight,
                          floating one_minus_weight) noexcept nogil:
    """torch's lerp(start, end, w): start + w (end − start) while |w| < 0.5, else
    end − (end − start)(1 − w), exact at both ends. ``one_minus_weight`` is 1 − w in the
    compute type (rounded as torch rounds it; a literal 1 would make the product double); w is
    loop-invariant in every caller, so the branch is hoisted."""
    if magnitude(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight
