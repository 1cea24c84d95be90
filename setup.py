"""Build the compiled impairment core (lab/impairment/_core.c); metadata is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lab.impairment._core",
            sources=["lab/impairment/_core.c"],
            # no fused multiply-add: the core must round exactly as numpy does (model.py)
            # -pthread: the forwarding loop runs a reader and a writer thread per direction
            extra_compile_args=[
                "-O2",
                "-std=gnu11",
                "-ffp-contract=off",
                "-fno-fast-math",
                "-Wall",
                "-Wextra",
                "-pthread",
            ],
            extra_link_args=["-pthread"],
            libraries=["m"],
        )
    ]
)
