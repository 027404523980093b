# Thread policy: how many threads, and the size below which a step runs serially.

cdef extern from "omp_shim.h":
    int omp_get_max_threads() noexcept nogil
    void omp_set_num_threads(int n) noexcept nogil
    int FASTOPT_OPENMP
    int fastopt_last_team_size
    void fastopt_note_team_size() noexcept nogil

OPENMP = bool(FASTOPT_OPENMP)

# Below this many elements a step runs on the calling thread: starting the team costs more
# than splitting saves. Measured by bench/serial_threshold.py on the 2-core CI machine (see
# the docstring there); settable for measurement and for machines that differ.
cdef Py_ssize_t serial_threshold = 32768


def get_num_threads():
    """Threads the next parallel step may use (OpenMP's default honours OMP_NUM_THREADS)."""
    return omp_get_max_threads()


def set_num_threads(int n):
    omp_set_num_threads(n)


def get_serial_threshold():
    return serial_threshold


def set_serial_threshold(Py_ssize_t n):
    global serial_threshold
    serial_threshold = n


def get_last_team_size():
    """Threads that ran the last step's parallel region (0 before the first step)."""
    return fastopt_last_team_size
