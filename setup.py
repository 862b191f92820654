from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def shared(folder: str) -> tuple[str, list[str]]:
    """A data directory installed under <prefix>/share/hpcctl (found there by hpcctl.resources.data_dir)."""
    files = sorted(str(p.relative_to(HERE)) for p in (HERE / folder).iterdir()
                   if p.is_file() and (p.suffix in (".j2", ".yaml", ".c", ".h") or p.name == "Makefile"))
    return f"share/hpcctl/{folder}", files


setup(
    name="hpcctl",
    version="0.1.0",
    description="Containerized GPU/MPI jobs on Slurm: a SPANK plugin, a CLI and site configs",
    python_requires=">=3.11",
    packages=find_packages(include=["hpcctl", "hpcctl.*"]),
    package_data={"hpcctl.container": ["container.schema.json"]},
    data_files=[shared("templates"), shared("site-configs"), shared("spank")],
    install_requires=["pyyaml>=6", "jinja2>=3.1", "docker>=6", "spython>=0.3"],
    extras_require={"test": ["pytest>=7", "pytest-mock>=3", "jsonschema>=4"]},
    entry_points={"console_scripts": ["hpcctl=hpcctl.cli:main"]},
)
