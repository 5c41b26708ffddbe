"""Build script for the compiled part of flowjax_fm (everything else is in pyproject.toml).

The exact assignment solver behind ``flowjax_fm.couplings`` is a small C extension
(``flowjax_fm/couplings/_csrc/lap.c``, Python C-API with the buffer protocol, no numpy headers),
compiled by ``pip install -e .`` or ``pip install .``.
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args = ["/O2"]
else:
    compile_args = ["-O3", "-fno-math-errno", "-std=c99"]

setup(
    ext_modules=[
        Extension(
            "flowjax_fm.couplings._lap",
            sources=["flowjax_fm/couplings/_csrc/lap.c"],
            extra_compile_args=compile_args,
        )
    ]
)
