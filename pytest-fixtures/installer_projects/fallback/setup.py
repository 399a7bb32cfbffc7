# A setup.py-only project (no pyproject.toml), installed in place by requirements.txt's `-e .`.
from setuptools import find_packages, setup

setup(
    name="legacy-setup",
    version="0.1",
    package_dir={"": "src"},
    packages=find_packages("src"),
    install_requires=["alpha"],
)
