# Thread policy: how many threads, and the size below which a step runs serially.

cdef extern from "omp_shim.h":
    int omp_get_max_threads() noexcept nogil
    void omp_set_num_threads(int n) noexcept nogil
    double omp_get_wtime() noexcept nogil
    int FASTOPT_OPENMP
    int fastopt_last_team_size
    void fastopt_note_team_size() noexcept nogil

OPENMP = bool(FASTOPT_OPENMP)

# Below this many elements a step runs on the calling thread: starting the team costs more
# than splitting saves. Measured by bench/serial_threshold.py on the 2-core CI machine (see
# the docstring there); settable for measurement and for machines that differ.
cdef Py_ssize_t serial_threshold = 32768


# The most threads a step uses while nobody asked for a count: a rank's share of the cores
# where several ranks share the machine (fastopt.threads decides it at import), so that they
# do not each start a full team; 0: OpenMP's count alone. Process-wide, unlike OpenMP's count
# (a thread's own), so that steps run from other threads (a DDP communication hook's) keep to
# it too. set_num_threads lifts it: a count asked for is obeyed.
cdef int default_cap = 0


cdef inline int team_size() noexcept nogil:
    cdef int n = omp_get_max_threads()
    if 0 < default_cap < n:
        return default_cap
    return n


def get_num_threads():
    """Threads the next parallel step may use: OpenMP's count (which honours OMP_NUM_THREADS,
    set_num_threads and threadpoolctl), at most the default cap while one is set."""
    return team_size()


def set_num_threads(int n):
    global default_cap
    default_cap = 0
    omp_set_num_threads(n)


def get_default_cap():
    return default_cap


def set_default_cap(int n):
    """The most threads a step uses until set_num_threads is called (0: no cap)."""
    global default_cap
    default_cap = max(n, 0)


def get_serial_threshold():
    return serial_threshold


def set_serial_threshold(Py_ssize_t n):
    global serial_threshold
    serial_threshold = n


# Contention: on a shared machine another process may hold a core; a parallel step then waits
# for a thread the scheduler has not run yet, and one step can take milliseconds instead of
# microseconds (measured here: Adam over 10^6 elements, 2 threads, a busy neighbour: median
# 0.63 ms but 16.6 ms at the 90th percentile, against 0.9 ms on one thread). Each segment table
# therefore keeps the time of a serial step over it, and a parallel step slower than
# CONTENDED times that sends the next steps back to one thread: `penalty` steps, doubling
# while contention lasts (up to MAX_PENALTY) and shrinking once a parallel step pays again.
# The serial time is measured on a table's second step and refreshed every REFRESH steps.
# Every element is computed by the same instructions either way: results do not change.

ctypedef struct Policy:
    double serial_seconds      # smoothed time of a serial step over the table; 0: not yet
    Py_ssize_t since_serial    # steps since the last serial one
    Py_ssize_t backoff         # serial steps left before the next parallel attempt
    Py_ssize_t penalty         # length of the next backoff

cdef enum:
    MIN_PENALTY = 4
    MAX_PENALTY = 4096
    REFRESH = 256

cdef double CONTENDED = 1.25
cdef bint adaptive = True


cdef inline bint go_parallel(Policy* policy) noexcept nogil:
    if not adaptive or policy.serial_seconds < 0:  # < 0: a table that must not adapt
        return True
    if policy.backoff > 0:
        policy.backoff -= 1
        return False
    if policy.serial_seconds == 0.0:
        return policy.since_serial == 0  # first step parallel (pages first touched in the
                                          # threads that will use them), second step serial
    return policy.since_serial < REFRESH


cdef inline void record(Policy* policy, bint parallel, double seconds) noexcept nogil:
    if policy.serial_seconds < 0:
        return
    if not parallel:
        policy.since_serial = 0
        if policy.serial_seconds == 0.0:
            policy.serial_seconds = seconds
        else:
            policy.serial_seconds = 0.75 * policy.serial_seconds + 0.25 * seconds
        return
    policy.since_serial += 1
    if policy.serial_seconds == 0.0:
        return
    if seconds > CONTENDED * policy.serial_seconds:
        policy.backoff = policy.penalty
        policy.penalty = min(2 * policy.penalty, MAX_PENALTY)
    else:
        policy.penalty = max(policy.penalty // 2, MIN_PENALTY)


cdef inline bint use_threads(Py_ssize_t total, Policy* policy) noexcept nogil:
    return total >= serial_threshold and team_size() > 1 and go_parallel(policy)


cdef inline void account(Py_ssize_t total, Policy* policy, bint parallel, double start) noexcept nogil:
    if total >= serial_threshold:
        record(policy, parallel, omp_get_wtime() - start)


def get_adaptive():
    return adaptive


def set_adaptive(bint on):
    """Whether steps fall back to one thread under contention (off: measure raw threads)."""
    global adaptive
    adaptive = on


def get_last_team_size():
    """Threads that ran the last step's parallel region (0 before the first step)."""
    return fastopt_last_team_size
