# An update computed elsewhere, added to the parameters: Muon's orthogonalised momentum
# (fastopt.engine.matrix).

ctypedef struct axpy_args:
    double decay          # the factor on p first (Muon's 1 − γλ; 1 for a plain axpy)
    double scale          # the factor on the update


cdef void axpy_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """p ← decay·p + scale·g on one piece, no state: torch's ``p.mul_(decay)`` followed by
    ``p.add_(g, alpha=scale)``, each product rounded (no fused multiply-add)."""
    cdef const axpy_args* a = <const axpy_args*>args
    cdef floating decay = <floating>a.decay, scale = <floating>a.scale
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = decay * p[i] + scale * g[i]
