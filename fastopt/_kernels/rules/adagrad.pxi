# Adagrad.

ctypedef struct adagrad_args:
    double lr             # decayed: γ / (1 + (t − 1) η)
    double eps
    double weight_decay
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef void adagrad_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                        const void* args, const double* segment) noexcept nogil:
    """Adagrad on one piece; state = [sum s].

        g ← grad_scale·g + λ p
        s ← s + g²
        p ← p − γₜ g / (√s + ε)
    """
    cdef const adagrad_args* a = <const adagrad_args*>args
    cdef floating* s = state[0]
    cdef floating lr = <floating>a.lr, eps = <floating>a.eps
    cdef floating weight_decay = <floating>a.weight_decay, grad_scale = <floating>a.grad_scale
    cdef floating gi, si
    cdef Py_ssize_t i
    for i in range(n):
        gi = grad_scale * g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * p[i]
        si = s[i] + gi * gi
        s[i] = si
        p[i] = p[i] - lr * gi / (root(si) + eps)
