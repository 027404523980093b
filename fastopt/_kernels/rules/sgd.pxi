# SGD with momentum, dampening and Nesterov.

ctypedef struct sgd_args:
    double lr
    double momentum       # 0: plain (mini-batch) gradient descent, no buffer
    double dampening
    double weight_decay
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint nesterov
    bint first            # the buffer starts as the gradient on its first step


cdef void sgd_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                    const void* args, const double* segment) noexcept nogil:
    """SGD on one piece; state = [momentum_buffer b or NULL].

        g ← grad_scale·g + λ p
        b ← g  (first step)  or  b ← μ b + (1 − τ) g          (if μ ≠ 0)
        g ← g + μ b  (Nesterov)  or  g ← b                      (if μ ≠ 0)
        p ← p − γ g
    """
    cdef const sgd_args* a = <const sgd_args*>args
    cdef floating* b = state[0]
    cdef floating lr = <floating>a.lr, momentum = <floating>a.momentum
    cdef floating one_minus_dampening = <floating>(1.0 - a.dampening)
    cdef floating weight_decay = <floating>a.weight_decay, grad_scale = <floating>a.grad_scale
    cdef bint nesterov = a.nesterov, first = a.first, heavy_ball = a.momentum != 0
    cdef floating gi, bi
    cdef Py_ssize_t i
    for i in range(n):
        gi = grad_scale * g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * p[i]
        if heavy_ball:
            if first:
                bi = gi
            else:
                bi = momentum * b[i] + one_minus_dampening * gi
            b[i] = bi
            if nesterov:
                gi = gi + momentum * bi
            else:
                gi = bi
        p[i] = p[i] - lr * gi
