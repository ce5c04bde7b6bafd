"""The compiled extension list; everything else is in pyproject.toml.

The Cython engine is an accelerator, not a requirement: when it cannot be
generated or compiled, the build still succeeds without it and the package
runs on the pure-Python twin (msgpack's setup.py does the same). Set
POINTSLEDGER_PURE_PYTHON_BUILD=1 to skip the extension on purpose.
CI catches a silent miss by setting POINTSLEDGER_REQUIRE_EXTENSION=1 at run time.
"""

import glob
import os
import re
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ENGINE_SOURCE = "src/pointsledger/engine/_engine_c.pyx"
# The what-if's journal walk (issue 13): compiled beside the engine, same fallback.
WALK_SOURCE = "src/pointsledger/simulate/_walk.pyx"
# A flush's puts with one GIL release, through py-lmdb 3.0.0's own LMDB (issue 15): same fallback,
# and without it writer.py hands LMDB the same records with putmulti.
BATCH_SOURCE = "src/pointsledger/store/_lmdb_batch.pyx"

# The one place the engine's Cython directives are set.
COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}


def warn(message):
    print(f"WARNING: {message}; pointsledger will use the pure-Python engine", file=sys.stderr)


# Left in the installed package when the engine could not be built, so that the
# runtime warning can say why (pointsledger/engine.py reads it).
BUILD_NOTE = "_engine_c.build-error.txt"


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into a warning instead of a failed install."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # no compiler at all (DistutilsPlatformError and kin)
            warn(f"could not build C extensions: {error}")
            self.note_failure(f"could not build C extensions: {error}")

    def build_extension(self, extension):
        try:
            super().build_extension(extension)
        except Exception as error:  # CCompilerError, CompileError, LinkError...
            warn(f"could not compile {extension.name}: {error}")
            self.note_failure(f"could not compile {extension.name}: {error}")
        else:
            if extension.name == "pointsledger.engine._engine_c":  # the note is about the engine
                self.note_failure(None)

    def note_failure(self, text):
        """Write (or, after a good build, remove) the note beside where the extension goes."""
        try:
            note = os.path.join(os.path.dirname(self.get_ext_fullpath("pointsledger.engine._engine_c")), BUILD_NOTE)
            if text is None:
                if os.path.exists(note):
                    os.remove(note)
                return
            os.makedirs(os.path.dirname(note), exist_ok=True)
            # "Command '['/bin/false', ...200 flags...]' returned non-zero exit status 1." says less in fewer words:
            text = re.sub(r"Command '\['([^']*)'.*?\]' returned non-zero exit status (-?[0-9]+)\.?",
                          r"the C compiler \1 exited with status \2", " ".join(text.split()))
            with open(note, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except OSError:
            pass  # the note is a courtesy; the build goes on without it


def engine_extensions():
    if os.environ.get("POINTSLEDGER_PURE_PYTHON_BUILD") == "1":
        print("POINTSLEDGER_PURE_PYTHON_BUILD=1: building without the Cython engine", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize

        extensions = [
            # The engine's .pyx includes one .pxi per concern; cythonize follows them, `depends` says so.
            Extension("pointsledger.engine._engine_c", [ENGINE_SOURCE], extra_compile_args=["-O3"],
                      depends=sorted(glob.glob("src/pointsledger/engine/_c_*.pxi"))),
            Extension("pointsledger.simulate._walk", [WALK_SOURCE], extra_compile_args=["-O3"]),
            Extension("pointsledger.store._lmdb_batch", [BATCH_SOURCE], extra_compile_args=["-O3"],
                      include_dirs=["src/pointsledger/store"], depends=["src/pointsledger/store/pylmdb_abi.h"],
                      libraries=["dl"]),
        ]
        return cythonize(extensions, compiler_directives=COMPILER_DIRECTIVES)
    except Exception as error:  # Cython missing, or a .pyx does not translate
        warn(f"could not cythonize {ENGINE_SOURCE}, {WALK_SOURCE} and {BATCH_SOURCE}: {error}")
        return []


setup(ext_modules=engine_extensions(), cmdclass={"build_ext": OptionalBuildExt})
