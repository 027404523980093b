"""Extension modules, compiler flags, the OpenMP probe and the rules' kernel glue (rendered
from a Tempita template); all metadata lives in pyproject.toml.

Environment switches:
  FASTOPT_OPENMP=0          build serial even where the compiler has OpenMP.
  FASTOPT_REQUIRE_OPENMP=1  fail the build if the OpenMP probe fails (CI: never ship a serial
                            wheel by accident).
  FASTOPT_LIBOMP_PREFIX     where LLVM's libomp lives, for Apple clang (default: Homebrew's).

Flags are chosen per compiler when the build starts, because only then is the compiler known:
`build_ext` below puts the common flags first and each extension's own extra_compile_args
after them, so an extension built for a particular instruction set only adds its ISA flags.
"""

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy
from Cython import Tempita
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# gcc and clang: -fno-math-errno lets sqrt vectorise; -fno-trapping-math lets gcc turn a
# branch around float arithmetic (a rule's `if weight_decay != 0`) into a select on CPUs
# without masked arithmetic (SSE2, AVX2), as clang does by default: without it gcc left the
# direct bfloat16 Adam loop of the serial AVX2 build scalar, 2.5x slower. Neither changes a
# result; they only tell the compiler that nobody reads errno or floating-point exception
# flags. -ffp-contract=off keeps every build bitwise equal to NumPy's rounding (no FMA
# contraction; clang contracts by default); -g0 keeps debug information out of the wheel.
# Never -ffast-math (changes results, breaks NaN) and never -march=native (the wheel runs on
# other machines).
# MSVC: /fp:precise neither contracts (VS 2022) nor assumes finite maths; the x64 baseline
# (SSE2) has no FMA anyway. /O2 is its -O3.
COMPILE_FLAGS = {
    "unix": ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-g0"],
    "msvc": ["/O2", "/fp:precise"],
}


def openmp_candidates(compiler_type):
    """(compile flags, link flags, include dirs, library dirs) to try, best first."""
    if compiler_type == "msvc":
        # MSVC's OpenMP 2.0 runtime, vcomp140.dll; the wheel repair step vendors it.
        return [(["/openmp"], [], [], [])]
    candidates = [(["-fopenmp"], ["-fopenmp"], [], [])]
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag: the preprocessor understands the pragmas and
        # LLVM's libomp (`brew install libomp`, keg-only) provides omp.h and the runtime.
        for prefix in libomp_prefixes():
            candidates.append((
                ["-Xpreprocessor", "-fopenmp"], ["-lomp"],
                [os.path.join(prefix, "include")], [os.path.join(prefix, "lib")],
            ))
    return candidates


def libomp_prefixes():
    prefixes = [os.environ.get("FASTOPT_LIBOMP_PREFIX", "")]
    if shutil.which("brew"):
        try:
            prefixes.append(subprocess.run(
                ["brew", "--prefix", "libomp"], capture_output=True, text=True, check=True
            ).stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            pass
    prefixes += ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
    return [p for p in dict.fromkeys(prefixes) if p and os.path.isdir(p)]


PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += omp_get_num_threads() > 0;
        return n > 0 ? 0 : 1;
    }
    """
)


def probe(compiler, candidate) -> bool:
    """Compile and link a tiny OpenMP program with the compiler and flags the build will use."""
    cflags, lflags, include_dirs, library_dirs = candidate
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(PROBE)
        try:
            objects = compiler.compile(
                [source], output_dir=tmp, include_dirs=include_dirs, extra_postargs=cflags
            )
            compiler.link_executable(
                objects, os.path.join(tmp, "probe"), library_dirs=library_dirs,
                extra_postargs=lflags,
            )
        except Exception:
            return False
    return True


def choose_openmp(compiler):
    if os.environ.get("FASTOPT_OPENMP", "1") == "0":
        print("fastopt: FASTOPT_OPENMP=0, building without OpenMP (serial)", file=sys.stderr)
        return None
    for candidate in openmp_candidates(compiler.compiler_type):
        if probe(compiler, candidate):
            print(f"fastopt: building with OpenMP ({' '.join(candidate[0])})", file=sys.stderr)
            return candidate
    if os.environ.get("FASTOPT_REQUIRE_OPENMP") == "1":
        sys.exit("fastopt: the compiler has no working OpenMP and FASTOPT_REQUIRE_OPENMP=1")
    print(
        "WARNING: fastopt: the compiler has no working OpenMP; building serial kernels "
        "(correct, one thread). On macOS: `brew install libomp`.",
        file=sys.stderr,
    )
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        family = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        openmp = choose_openmp(self.compiler)
        # A serial build still honours `omp simd` loops (the 8-bit quantiser's), where the
        # compiler can without the OpenMP runtime.
        simd = ["-fopenmp-simd"] if not openmp and family == "unix" and accepts(
            self.compiler, ["-fopenmp-simd"]) else []
        self.extensions = [ext for ext in self.extensions if self.can_build(ext, family)]
        for ext in self.extensions:
            ext.extra_compile_args = COMPILE_FLAGS[family] + simd + ext.extra_compile_args
            if openmp:
                cflags, lflags, include_dirs, library_dirs = openmp
                ext.extra_compile_args += cflags
                ext.extra_link_args += lflags
                ext.include_dirs += include_dirs
                ext.library_dirs += library_dirs
        super().build_extensions()

    def can_build(self, ext, family) -> bool:
        isa = ext.extra_compile_args
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        if not isa or (family == "unix" and x86 and accepts(self.compiler, isa)):
            return True
        print(f"fastopt: not building {ext.name} ({' '.join(isa)}) here", file=sys.stderr)
        return False


# The kernels are compiled once per SIMD level and fastopt._kernels picks the widest the CPU
# runs; every variant computes bitwise the same results (-ffp-contract=off, same source).
# A variant carries only its ISA flags; BuildExt adds the compiler's own and drops a variant
# the compiler or platform cannot build (MSVC, non-x86, a compiler without that -march).
SIMD_VARIANTS = {"baseline": [], "avx2": ["-march=x86-64-v3"], "avx512": ["-march=x86-64-v4"]}


def accepts(compiler, flags) -> bool:
    """Whether ``compiler`` compiles a trivial program with ``flags``."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "flags.c")
        with open(source, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            compiler.compile([source], output_dir=tmp, extra_postargs=flags)
        except Exception:
            return False
    return True


KERNELS = os.path.join("fastopt", "_kernels")


def render_rules():
    """Write fastopt/_kernels/rules.pxi from rules.pxi.tp: one entry per rule kernel file in
    rules/, with a reduction pass where the file defines ``<name>_reduce`` and a direct loop
    where it defines ``<name>_direct_piece``."""
    folder = os.path.join(KERNELS, "rules")
    kernels = []
    for file in sorted(os.listdir(folder)):
        name, ext = os.path.splitext(file)
        if ext == ".pxi":
            with open(os.path.join(folder, file), encoding="utf-8") as f:
                text = f.read()
                kernels.append((name, f"{name}_reduce(" in text, f"{name}_direct_piece(" in text))
    with open(os.path.join(KERNELS, "rules.pxi.tp"), encoding="utf-8") as f:
        text = Tempita.sub(f.read(), kernels=kernels)
    target = os.path.join(KERNELS, "rules.pxi")
    if not os.path.exists(target) or open(target, encoding="utf-8").read() != text:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)


render_rules()
extensions = [
    Extension(
        f"fastopt._kernels.{name}",
        [f"fastopt/_kernels/{name}.pyx"],
        include_dirs=[numpy.get_include(), "fastopt/_kernels"],
        # The oldest NumPy the wheel may meet at run time: pyproject.toml's dependency floor.
        define_macros=[
            ("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
            ("NPY_TARGET_VERSION", "NPY_2_0_API_VERSION"),
        ],
        extra_compile_args=list(isa),
    )
    for name, isa in SIMD_VARIANTS.items()
]

setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
