"""Maps the top-level folders the project asked for (flows/, connectors/, ...) onto the `orderhub.*` package."""
from setuptools import find_packages, setup

TOP = ["flows", "connectors", "transforms", "schedules", "infra"]
packages, package_dir = [], {}
for top in TOP:
    package_dir[f"orderhub.{top}"] = top
    packages.append(f"orderhub.{top}")
    packages += [f"orderhub.{top}.{sub}" for sub in find_packages(top)]

setup(packages=packages, package_dir=package_dir)
