"""The packages the wheel installs: `automator`, and the `connectors/` folder under the project's own name,
`automator_connectors` (a top-level `connectors` is a name any other distribution may take too). Everything else
about the distribution is in pyproject.toml; this file only maps the folder, which pyproject's `packages.find`
cannot rename."""
from setuptools import find_packages, setup

CONNECTORS = ["automator_connectors", *(f"automator_connectors.{name}" for name in find_packages("connectors"))]

setup(packages=[*find_packages(include=["automator", "automator.*"]), *CONNECTORS],
      package_dir={"automator_connectors": "connectors"})
