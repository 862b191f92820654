from setuptools import find_packages, setup

setup(
    name="hpcctl",
    version="0.1.0",
    description="Containerized GPU/MPI jobs on Slurm: a SPANK plugin, a CLI and site configs",
    python_requires=">=3.11",
    packages=find_packages(include=["hpcctl", "hpcctl.*"]),
    install_requires=["pyyaml>=6", "jinja2>=3.1", "docker>=6", "spython>=0.3"],
    extras_require={"test": ["pytest>=7", "pytest-mock>=3"]},
    entry_points={"console_scripts": ["hpcctl=hpcctl.cli:main"]},
)
