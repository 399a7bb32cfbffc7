from setuptools import find_packages, setup

setup(
    name="unitconv",
    version="2.3.1",
    description="Unit conversions (length, temperature)",
    package_dir={"": "src"},
    packages=find_packages(where="src"),
    entry_points={"console_scripts": ["unitconv = unitconv.cli:main"]},
    python_requires=">=3.8",
)
