from setuptools import find_packages, setup

setup(
    name="inventory",
    version="1.4.0",
    description="Warehouse inventory: items, stock levels and a JSON store",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author="Example Maintainers",
    license="MIT",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.8",
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
    ],
)
