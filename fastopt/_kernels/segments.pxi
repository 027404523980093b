# Tables and the driver's types: the segment table a kernel call runs over.

from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

ctypedef fused floating:
    float
    double

cdef enum:
    # Elements per work item. A multiple of 16, so pieces of a 64-byte-aligned segment start on
    # cache lines and no two threads write the same line; large enough that a function call
    # per piece is noise, small enough to balance a few hundred thousand elements over threads.
    PIECE = 4096
    # Elements a piece of a table with storage other than the compute type is converted in at
    # a time (staging.pxi): in L1 cache, and one block of 8-bit quantisation.
    STAGE = 256
    # State arrays per rule at most (Adam with AMSGrad: exp_avg, exp_avg_sq, max_exp_avg_sq).
    MAX_ROLES = 4
    # Values a rule's reduction pass keeps per segment at most (norms for LAMB's trust ratio).
    MAX_REDUCED = 4
    # Storage types of a table's buffers. The compute type is float64 for float64 parameters
    # (whose gradients and state are float64 too), float32 for every other.
    FLOAT32 = 0
    FLOAT64 = 1
    BFLOAT16 = 2
    FLOAT16 = 3
    # State only: 8-bit block-quantised codes, on the signed or the unsigned dynamic code
    # (storage.h), each segment's codes followed (at its length rounded up to 4 bytes) by one
    # float32 scale per STAGE elements.
    Q8_SIGNED = 4
    Q8_UNSIGNED = 5
    # How a low-precision parameter is stored after its update.
    NEAREST = 0
    STOCHASTIC = 1
    KAHAN = 2

# A rule's element-wise pass over one piece: n elements of the parameter, the gradient and
# the state roles (state[r] NULL where role r is unused), the rule's argument struct, and the
# values its reduction pass left for the piece's segment (NULL for a rule without one).
ctypedef void (*chunk_f32)(float* p, const float* g, float** state, Py_ssize_t n,
                           const void* args, const double* segment) noexcept nogil
ctypedef void (*chunk_f64)(double* p, const double* g, double** state, Py_ssize_t n,
                           const void* args, const double* segment) noexcept nogil
# A reduction pass over one piece: adds its contributions to acc[0..reduced).
ctypedef void (*reduce_f32)(const float* p, const float* g, float** state, Py_ssize_t n,
                            const void* args, double* acc) noexcept nogil
ctypedef void (*reduce_f64)(const double* p, const double* g, double** state, Py_ssize_t n,
                            const void* args, double* acc) noexcept nogil

ctypedef struct Table:
    Py_ssize_t nseg
    Py_ssize_t total
    Py_ssize_t npieces
    Py_ssize_t itemsize       # of the compute type
    int dtype                 # the compute type, FLOAT32 or FLOAT64
    int param_type            # storage types: of the parameters,
    int grad_type             # of the gradients (bound with them),
    int state_type[MAX_ROLES] # and of each state role
    bint native               # every buffer in use is of the compute type (the fast path)
    int rounding              # NEAREST, STOCHASTIC or KAHAN, for low-precision parameters
    char** comp               # nseg compensation buffers (KAHAN), of the parameters' type
    uint64_t* parameter       # nseg ids, the stochastic rounding stream of each segment
    uint64_t seed             # the stochastic rounding seed, and the step it rounds for
    uint64_t step
    char** param
    const char** grad
    char** state              # MAX_ROLES rows of nseg pointers; NULL where a role is unused
    Py_ssize_t* length
    Py_ssize_t* piece_seg
    Py_ssize_t* piece_start
    double* partial           # MAX_REDUCED values per piece: the reduction pass's partial sums
    double* segment           # MAX_REDUCED values per segment, combined in order
    Policy policy             # serial or parallel for updates, learnt per table (threads.pxi)
    Policy reduce_policy      # the same for reductions, a lighter pass


cdef inline void piece_pointers(const Table* t, Py_ssize_t k, char** param, const char** grad,
                                char** state, Py_ssize_t* n) noexcept nogil:
    """Where piece ``k`` starts in every buffer, and its length."""
    cdef Py_ssize_t s = t.piece_seg[k]
    cdef Py_ssize_t start = t.piece_start[k]
    cdef Py_ssize_t offset = start * t.itemsize
    cdef int r
    n[0] = t.length[s] - start
    if n[0] > PIECE:
        n[0] = PIECE
    param[0] = t.param[s] + offset
    grad[0] = t.grad[s] + offset if t.grad[s] != NULL else NULL
    for r in range(MAX_ROLES):
        state[r] = t.state[r * t.nseg + s]
        if state[r] != NULL:
            state[r] += offset
