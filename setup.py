"""Maps the top-level folders the project asked for (flows/, connectors/, ...) onto the `orderhub.*` package, and
builds the columnar engine's optional C extension (orderhub.transforms._native: per-order raw-record JSON and
BLAKE2b). Without a C compiler the build skips it and the engine uses its Polars expressions and hashlib."""
from setuptools import Extension, find_packages, setup

TOP = ["flows", "connectors", "transforms", "schedules", "infra"]
packages, package_dir = [], {}
for top in TOP:
    package_dir[f"orderhub.{top}"] = top
    packages.append(f"orderhub.{top}")
    packages += [f"orderhub.{top}.{sub}" for sub in find_packages(top)]

native = Extension("orderhub.transforms._native", ["transforms/_native.c"], optional=True,
                   extra_compile_args=["-O3", "-std=gnu11"])

setup(packages=packages, package_dir=package_dir, ext_modules=[native])
