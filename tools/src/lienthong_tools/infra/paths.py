"""Where the provisioning assets, the download/build cache and the servers' state live."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path("deploy") / "local"


def repo_root() -> Path:
    """The checkout holding deploy/local (LIENTHONG_REPO, else found upwards from the cwd or this file)."""
    if env := os.environ.get("LIENTHONG_REPO"):
        return Path(env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (start, *start.parents):
            if (candidate / ASSETS / "kafka" / "pom.xml").is_file():
                return candidate
    raise FileNotFoundError(
        "cannot find deploy/local/kafka/pom.xml: run from a Liên Thông checkout or set LIENTHONG_REPO"
    )


def assets_dir() -> Path:
    return repo_root() / ASSETS


def cache_dir() -> Path:
    """Downloads and builds, shared by every checkout on the machine (LIENTHONG_CACHE)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lienthong"
    path = Path(os.environ.get("LIENTHONG_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir(name: str = "dev") -> Path:
    """Data, logs and pid files of one local environment (LIENTHONG_STATE, else .lienthong/<name> in the repo)."""
    base = Path(os.environ["LIENTHONG_STATE"]) if "LIENTHONG_STATE" in os.environ else repo_root() / ".lienthong"
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path
