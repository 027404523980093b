# Rprop: a step size per element that grows while its gradient keeps its sign and shrinks when
# the sign flips; the parameter moves by that size against the gradient's sign.

ctypedef struct rprop_args:
    double etaminus       # η₋, the factor of a step size whose gradient flipped sign
    double etaplus        # η₊, the factor of one whose gradient kept it
    double step_size_min
    double step_size_max
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef void rprop_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, const double* segment) noexcept nogil:
    """Rprop on one piece; state = [prev, step_size].

        g ← grad_scale·g
        s = sign(g · prev)                          (0 where g · prev is 0 or NaN, as torch)
        s ← η₊ where s > 0;   s ← η₋ where s < 0;   s ← 1 where s = 0
        step_size ← min(max(step_size · s, step_size_min), step_size_max)
        g ← 0 where s = η₋
        p ← p − sign(g) · step_size
        prev ← g

    in that order, as torch's single-tensor Rprop (three replacements of s in turn, so that
    an η rounded to 0 or 1 in float32 acts as it does in torch).
    """
    cdef const rprop_args* a = <const rprop_args*>args
    cdef floating* prev = state[0]
    cdef floating* step_size = state[1]
    cdef floating etaminus = <floating>a.etaminus, etaplus = <floating>a.etaplus
    cdef floating low = <floating>a.step_size_min, high = <floating>a.step_size_max
    cdef floating grad_scale = <floating>a.grad_scale
    cdef floating zero = 0, one = 1
    cdef floating gi, product, s, size
    cdef Py_ssize_t i
    for i in range(n):
        gi = grad_scale * g[i]
        product = gi * prev[i]
        s = <floating>(product > zero) - <floating>(product < zero)
        s = etaplus if s > zero else s
        s = etaminus if s < zero else s
        s = one if s == zero else s
        # Written so that NaN passes through both bounds, as torch.clamp lets it.
        size = step_size[i] * s
        size = low if size < low else size
        size = high if size > high else size
        step_size[i] = size
        gi = zero if s == etaminus else gi
        p[i] = p[i] - (<floating>(gi > zero) - <floating>(gi < zero)) * size
        prev[i] = gi
