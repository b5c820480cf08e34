"""Package metadata comes from settings.ini (the nbdev 2 convention)."""
from configparser import ConfigParser
from pathlib import Path

import contextlib
import importlib.util
import json
import os
import shutil

import setuptools
from setuptools.command.build_py import build_py

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["Planning", "Pre-Alpha", "Alpha", "Beta", "Production/Stable", "Mature", "Inactive"]
lic = licenses[cfg["license"]]
readme = Path(__file__).parent / "README.md"

# Files `frpo-nb` runs that live outside the package folder: copied into frpo_nb/_shipped/ when a wheel is
# built, so an installed package has them (frpo_nb.core.shipped finds them; a checkout uses its own folders).
SHIPPED = {"experiments": ("nbs/experiments", "*.ipynb"), "figures": ("nbs/figures", "*.ipynb"),
           "data": ("data", "*.csv"), "judges": ("data/judges", "*")}


class BuildPyWithShipped(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False): return
        root = Path(__file__).parent
        for name, (folder, pattern) in SHIPPED.items():
            dest = Path(self.build_lib) / cfg["lib_name"] / "_shipped" / name
            dest.mkdir(parents=True, exist_ok=True)
            for f in sorted((root / folder).glob(pattern)): shutil.copy2(f, dest / f.name)
        # the build stamp: which commit (and uncommitted diff) this wheel was built from (frpo_nb.provenance)
        spec = importlib.util.spec_from_file_location("_frpo_provenance", root / cfg["lib_name"] / "provenance.py")
        provenance = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(provenance)
        stamp = Path(self.build_lib) / cfg["lib_name"] / provenance.BUILD_STAMP
        stamp.write_text(json.dumps(provenance.build_stamp(root), indent=1) + "\n")


@contextlib.contextmanager
def one_build_at_a_time():
    "pip builds a local tree in place (build/, *.egg-info): two builds of one checkout at once (the slow tests run side by side) write and remove the same files, and one fails. Each run of this file holds a lock on build/ (POSIX)."
    if os.name != "posix": yield; return
    import fcntl
    folder = Path(__file__).parent / "build"
    folder.mkdir(exist_ok=True)
    with open(folder / ".setup.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


with one_build_at_a_time(): setuptools.setup(
    cmdclass={"build_py": BuildPyWithShipped},
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=readme.read_text(encoding="utf-8") if readme.exists() else "",
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    license=lic[0],
    url=cfg["git_url"],
    keywords=cfg["keywords"].split(),
    classifiers=[
        f"Development Status :: {cfg['status']} - {statuses[int(cfg['status'])]}",
        f"Intended Audience :: {cfg['audience']}",
        f"License :: {lic[1]}",
        f"Natural Language :: {cfg['language']}",
        "Programming Language :: Python :: 3",
    ],
    packages=setuptools.find_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".*"]),
    include_package_data=True,
    python_requires=">=" + cfg["min_python"],
    install_requires=cfg.get("requirements", "").split(),
    extras_require={"dev": cfg.get("dev_requirements", "").split(), "slurm": cfg.get("slurm_requirements", "").split(),
                    "eval": cfg.get("eval_requirements", "").split(), "docs": cfg.get("docs_requirements", "").split(),
                    "gpu": cfg.get("gpu_requirements", "").split()},
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"],
    },
    zip_safe=False,
)
