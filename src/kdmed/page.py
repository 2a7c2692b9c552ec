"""A chapter's frame: its study and opening box (:func:`open_chapter`), its tables as CSV downloads, the command that rebuilds it.

The book builder sets ``KDMED_TABLES_DIR`` for the chapters it runs and copies that
folder into the book, so a chapter's markdown links its tables as
``{download}`name.csv <tables/<chapter>/name.csv>``` (check-html verifies the links).
"""

from __future__ import annotations

import os
from pathlib import Path
import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

import pandas as pd

from kdmed.utils import atomic_path, repo_root

if TYPE_CHECKING:
    from kdmed.study import Study

TABLES_ENV = "KDMED_TABLES_DIR"


def tables_dir(profile: str) -> Path:
    """Where the chapters of ``profile`` write their tables: ``$KDMED_TABLES_DIR`` or ``_build/tables/<profile>``."""
    env = os.environ.get(TABLES_ENV)
    return Path(env) if env else repo_root() / "_build" / "tables" / profile


def save_table(table: pd.DataFrame, chapter: str, name: str, profile: str) -> Path:
    """Write ``table`` (index included when it is named) as ``<tables dir>/<chapter>/<name>.csv``; return the path."""
    path = tables_dir(profile) / chapter / f"{name}.csv"
    keep_index = any(n is not None for n in table.index.names)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=keep_index)
    return path


def save_figure(fig: Any, chapter: str, name: str, profile: str) -> Path:
    """Write ``fig`` as ``<tables dir>/<chapter>/<name>.png`` (a page other than the chapter's can show it)."""
    path = tables_dir(profile) / chapter / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def reproduce_command(profile: str, chapter: str, overrides: Mapping[str, Any]) -> str:
    """The command that rebuilds ``chapter`` of ``profile`` with ``overrides`` (study parameters)."""
    import yaml

    def flow(value: Any) -> str:
        text = yaml.safe_dump(list(value) if isinstance(value, tuple) else value, default_flow_style=True)
        # a plain scalar is dumped as a document ("2.0\n...\n"): keep the value, drop the end marker
        return text.strip().removesuffix("...").strip().replace(" ", "")

    params = " ".join(f"{k}={flow(v)}" for k, v in overrides.items())
    cmd = f"make book PROFILE={profile} CHAPTERS={chapter}"
    return cmd + (f' PARAMS="{params}"' if params else "")


def open_chapter(namespace: Mapping[str, Any], chapter: str) -> "Study":
    """Build the chapter's :class:`Study` from its namespace and glue the opening box's values.

    Glued names: ``box_<key>`` for every entry of :meth:`Study.describe`, with the
    key's spaces and slashes turned into underscores (``box_image_size``...), and
    ``box_reproduce``: the command that rebuilds this page with its parameters.
    A setting on real data whose folders are missing stops here, listing them.
    """
    from myst_nb import glue

    from kdmed.study import Study

    study = Study.from_namespace(namespace)
    base = Study.from_profile(study.profile)
    changed = {f.name: getattr(study, f.name) for f in dataclasses.fields(Study)
               if getattr(study, f.name) != getattr(base, f.name)}
    glue("box_reproduce", reproduce_command(study.profile, chapter, changed), display=False)
    missing = study.missing_roots()
    if missing:
        raise FileNotFoundError(
            f"profile {study.profile!r} (setting {study.setting!r}) needs these dataset folders, which are "
            f"missing: {'; '.join(missing)}. Set them in book/profiles/{study.profile}.yml or with "
            "--param NAME=PATH"
        )
    for key, value in study.describe().items():
        glue(box_name(key), value, display=False)
    for key, value in words(study).items():
        glue(f"words_{key}", value, display=False)
    return study


def words(study: "Study") -> dict[str, str]:
    """The phrases a page uses for its data, so that no real-data page speaks of the synthetic stand-in.

    Glued by :func:`open_chapter` as ``words_<key>``.
    """
    near, far = study.role_dataset("near"), study.role_dataset("far")
    if not study.real_data:
        return {
            "where": "on the stand-in",
            "verdicts": "holds, is opposite, or is unresolved on the stand-in (only real data can reproduce a claim)",
            "near": "another chest institution (synthetic institution A, in the role of the authors' NIH network)",
            "far": "a distant domain (synthetic fundus photographs, the stand-in for ImageNet)",
            "roles": ("Chest-like images are rendered from label vectors drawn from the real CheXpert rows, each "
                      "finding drawn as its own visual sign with a random strength (so some positives are faint). "
                      "Three synthetic institutions differ in label mix and acquisition style: C plays CheXpert "
                      "(the target: its training split is cut, by patient, into the teachers' pool and the part "
                      "the small target subsets come from), A plays NIH (the near transfer-learning init) and B "
                      "plays MIMIC-CXR (another institution's network, in the cross-domain chapter). Fundus-like "
                      "images with five retinopathy grades are the distant domain (the far init)."),
        }
    far_init = ("torchvision's ImageNet weights (as the authors)" if study.far_init == "imagenet"
                else f"a network trained on {far} (a distant domain)")
    target = study.role_dataset("target")
    return {
        "where": f"on {target} (real images, profile {study.profile})",
        "verdicts": "is reproduced or not reproduced",
        "near": f"another chest dataset ({near}), scored and distilled over the findings both share",
        "far": far_init,
        "roles": (f"{target} is the target: its training split is cut, by patient, into the teachers' pool and "
                  f"the part the small target subsets come from. {near} is the near transfer-learning init (its "
                  f"network is scored and distils over the findings it shares with {target}, matched by name). "
                  f"{far} is the distant domain (the far-domain network; the far init is {far_init}). This "
                  "setting has no third chest dataset: the cross-domain chapter's other-institution row is not "
                  "run."),
    }


def box_name(key: str) -> str:
    return "box_" + key.replace(" / ", "_").replace(" ", "_").replace("/", "_")


def run_grids(study: "Study", *grids: Any) -> None:
    """Train (or read) every run of ``grids`` and glue ``box_computed``: what the stored runs were computed with."""
    from myst_nb import glue

    from kdmed.analysis import compute_line

    configs = [c for g in grids for c in g.configs]
    study.run(configs)
    glue("box_computed", compute_line(study.store(), configs), display=False)
