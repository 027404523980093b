# LARS: SGD whose gradient, weight decay included, is scaled per tensor by the trust ratio
# η ‖p‖ / (‖g‖ + λ ‖p‖), then given momentum.
#
# The two passes. The norms are of p and of the gradient as read, both before anything is
# written, so the reduction pass only reads p and g and the update pass reads them again: no
# state is computed twice. The sums are accumulated lane by lane with lamb.pxi's helpers (the
# same fixed order, see there).

ctypedef struct lars_args:
    double lr
    double momentum       # 0: no buffer
    double dampening
    double weight_decay
    double trust_coefficient
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint nesterov
    bint adapt            # scale by the trust ratio (False: the group steps as plain SGD)


cdef void lars_reduce(const floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, double* acc) noexcept nogil:
    """acc[0] += Σ p², acc[1] += Σ (grad_scale·g)² over the piece (in double, by lanes)."""
    cdef const lars_args* a = <const lars_args*>args
    cdef floating grad_scale = <floating>a.grad_scale
    cdef double weights[TRUST_LANES]
    cdef double grads[TRUST_LANES]
    cdef Py_ssize_t i, j, blocks = n // TRUST_LANES
    if not a.adapt:
        return
    for j in range(TRUST_LANES):
        weights[j] = 0.0
        grads[j] = 0.0
    for i in range(blocks):
        for j in range(TRUST_LANES):
            add_squares(weights, grads, j, p[i * TRUST_LANES + j],
                        grad_scale * g[i * TRUST_LANES + j])
    for i in range(blocks * TRUST_LANES, n):
        add_squares(weights, grads, i - blocks * TRUST_LANES, p[i], grad_scale * g[i])
    acc[0] += lane_total(weights)
    acc[1] += lane_total(grads)


cdef int lars_reduced = 2


cdef double lars_ratio(const lars_args* a, const double* segment) noexcept nogil:
    """The segment's trust ratio from its sums Σ p², Σ g²: with d = ‖g‖ + λ ‖p‖,
    η ‖p‖ / d where ‖p‖ > 0 and d > 0, else 1 (a NaN norm gives 1, as the oracle's where)."""
    cdef double weight_norm, denominator
    if not a.adapt:
        return 1.0
    weight_norm = sqrt(segment[0])
    denominator = sqrt(segment[1]) + a.weight_decay * weight_norm
    if weight_norm > 0 and denominator > 0:
        return a.trust_coefficient * weight_norm / denominator
    return 1.0


cdef void lars_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """LARS on one piece; state = [momentum_buffer b or NULL]; segment = [Σ p², Σ g²].

        g ← (grad_scale·g + λ p) · r,   r the segment's trust ratio (lars_ratio; 1 unadapted)
        b ← μ b + (1 − τ) g;  g ← g + μ b (Nesterov) or g ← b        (if μ ≠ 0; b from 0)
        p ← p − γ g
    """
    cdef const lars_args* a = <const lars_args*>args
    cdef floating* b = state[0]
    cdef floating lr = <floating>a.lr, momentum = <floating>a.momentum
    cdef floating one_minus_dampening = <floating>(1.0 - a.dampening)
    cdef floating weight_decay = <floating>a.weight_decay, grad_scale = <floating>a.grad_scale
    cdef floating ratio = <floating>lars_ratio(a, segment)
    cdef bint nesterov = a.nesterov, heavy_ball = a.momentum != 0
    cdef floating gi, bi
    cdef Py_ssize_t i
    for i in range(n):
        gi = with_l2(grad_scale * g[i], weight_decay, p[i]) * ratio  # r = 1 is exact
        if heavy_ball:
            bi = momentum * b[i] + one_minus_dampening * gi
            b[i] = bi
            gi = gi + momentum * bi if nesterov else bi
        p[i] = p[i] - lr * gi
