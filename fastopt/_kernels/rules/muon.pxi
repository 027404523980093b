# Muon's element-wise pass: its momentum, and the matrix the orthogonalisation starts from.

ctypedef struct muon_args:
    double momentum       # μ
    double grad_scale     # g is read as grad_scale·g: a clipping factor
    bint nesterov


cdef void muon_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """Muon's momentum on one piece; state = [momentum_buffer b]. ``p`` is the work buffer
    that the Newton–Schulz iteration then orthogonalises (fastopt.engine.matrix), not the
    parameter, which this pass leaves alone.

        g ← grad_scale·g
        b ← lerp(b, g, 1 − μ)
        p ← lerp(g, b, μ)  (Nesterov)   or   p ← b

    with torch's lerp (elementwise.pxi), as torch's single-tensor Muon.
    """
    cdef const muon_args* a = <const muon_args*>args
    cdef floating* b = state[0]
    cdef floating grad_scale = <floating>a.grad_scale
    cdef floating toward_grad = <floating>(1.0 - a.momentum), momentum = <floating>a.momentum
    cdef floating keep_buffer = 1 - toward_grad, keep_grad = 1 - momentum
    cdef bint nesterov = a.nesterov
    cdef floating gi, bi
    cdef Py_ssize_t i
    for i in range(n):
        gi = grad_scale * g[i]
        bi = lerp(b[i], gi, toward_grad, keep_buffer)
        b[i] = bi
        if nesterov:
            p[i] = lerp(gi, bi, momentum, keep_grad)
        else:
            p[i] = bi
