"""Reliability: bad inputs fail clearly and write nothing, writes are atomic, runs are deterministic, loads are safe.

The catalogue below (:data:`CASES`) re-asserts every bad input through the public
API (``open_dataset``, ``run_one``, ``book.build``, the CLIs) in one place: each case
checks that the error names the culprit and that nothing was written. The
loader-level details of many of them are tested more finely elsewhere:

* profiles and papermill parameters: ``tests/test_book.py``;
* CSV columns, label values, duplicated ids, escaping paths, missing/corrupt images,
  empty filters: ``tests/test_data_chexpert.py``, ``test_data_nih.py``,
  ``test_data_retina.py``, ``test_data_medmnist.py``, ``test_data_io.py``;
* cache markers and failed builds: ``tests/test_data_cache.py``;
* checkpoints (not a checkpoint, wrong class count, wrong arch): ``tests/test_models.py``;
* NaN stop and in-process resume: ``tests/test_train.py``; stale results: ``tests/test_runner.py``.

Crash safety under SIGKILL is ``tests/test_resume_kill.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import inspect
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_data import make_chexpert_root, make_medmnist_root, make_nih_root, truncate_file

from kdmed import utils
from kdmed.data import open_dataset
from kdmed.data._io import DataError, MissingDataError
from kdmed.data.cache import CacheBuildError
from kdmed.config import DataSpec, RunConfig, TrainSpec, replace, run_key
from kdmed.runner import run_one
from kdmed.store import ResultStore, StaleResultError

pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

SRC = Path(__file__).resolve().parents[1] / "src" / "kdmed"
BOOK = Path(__file__).resolve().parents[1] / "book"
SMALL = "CheXpert-v1.0-small"
TINY = DataSpec("synthetic-chest", image_size=32, options={"institution": "C", "n": 64}, val_n=32, test_n=32)
TRAIN = TrainSpec(epochs=2, batch_size=16, lr=1e-3, patience=5, plateau_patience=1, augment=False, device="cpu")
SCRATCH = RunConfig(name="tiny", data=TINY, train=TRAIN)


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative paths), hidden temporary files included."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ============================================================================ the catalogue of bad inputs
CASES = {}


def case(fn):
    """Register a bad-input case: ``fn(tmp_path)`` triggers it and checks the message and the disk."""
    CASES[fn.__name__] = fn
    return fn


def _build_refused(tmp_path, match, **kw):
    from kdmed.book import BookLayout, build
    from kdmed.profiles import ProfileError

    layout = BookLayout.default(build_dir=tmp_path / "_build")
    with pytest.raises(ProfileError, match=match):
        build(kw.pop("profile", "smoke"), layout=layout, **kw)
    assert not (tmp_path / "_build").exists()  # refused before any chapter ran


@case
def unknown_profile(tmp_path):
    _build_refused(tmp_path, r"unknown profile 'nope': .*nope\.yml does not exist; known profiles: default, full, gpu, medmnist, realformat, smoke",
                   profile="nope")


@case
def unknown_papermill_parameter(tmp_path):
    _build_refused(tmp_path, r"chapter '01_data': unknown parameter 'epoch' \(not in the chapter's parameters cell; "
                   r"it declares: \(none\); study parameters: .*epochs", overrides={"01_data": {"epoch": 3}})


@case
def wrong_parameter_type(tmp_path):
    _build_refused(tmp_path, r"with --param for 01_data: image_size expects an int, got str 'big'",
                   overrides={"01_data": {"image_size": "big"}})


@case
def missing_data_root(tmp_path):
    store = ResultStore(tmp_path / "results")
    cfg = replace(SCRATCH, data=DataSpec("chexpert", root=str(tmp_path / "nowhere"), image_size=32))
    with pytest.raises(MissingDataError, match=r"chexpert: root folder .*nowhere does not exist; expected a folder "
                                                r"holding CheXpert-v1\.0-small/"):
        run_one(cfg, store, quiet=True)
    assert _files(store.root) == []


def _edit_chexpert(tmp_path, edit) -> Path:
    root = make_chexpert_root(tmp_path)
    csv = root / SMALL / "train.csv"
    edit(pd.read_csv(csv, dtype=str)).to_csv(csv, index=False)
    return root


def _chexpert_run(root) -> RunConfig:
    return replace(SCRATCH, data=DataSpec("chexpert", root=str(root), image_size=16, options={"val_fraction": 0.25}))


@case
def csv_renamed_column(tmp_path):
    root = _edit_chexpert(tmp_path, lambda d: d.rename(columns={"Edema": "edema"}))
    store = ResultStore(tmp_path / "results")
    with pytest.raises(DataError, match=r"chexpert: table .*train\.csv has no column 'Edema'; its columns are \[.*'edema'"):
        run_one(_chexpert_run(root), store, quiet=True)
    assert _files(store.root) == []


@case
def label_value_outside_its_set(tmp_path):
    root = _edit_chexpert(tmp_path, lambda d: d.assign(Pneumonia=d["Pneumonia"].where(d.index != 3, "2.0")))
    with pytest.raises(DataError, match=r"train\.csv, row 4 \(line 5\), column 'Pneumonia': value 2 is not allowed "
                                        r"\(expected one of -1, 0, 1, blank"):
        open_dataset("chexpert", root, "train", 16)


@case
def duplicated_image_ids(tmp_path):
    root = make_nih_root(tmp_path)
    table = root / "Data_Entry_2017.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join([*lines, lines[2]]) + "\n")
    first = lines[2].split(",")[0]
    with pytest.raises(DataError, match=rf"nih: .*Data_Entry_2017\.csv, column 'Image Index': '{first}' appears more "
                                        rf"than once \(rows 2, {len(lines)}\)"):
        open_dataset("nih", root, "train", 16)


@case
def path_escaping_the_dataset_root(tmp_path):
    root = _edit_chexpert(tmp_path, lambda d: d.assign(Path=d["Path"].where(d.index != 1, "../../etc/passwd")))
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'Path': path '\.\./\.\./etc/passwd' points outside "
                                        r"the dataset root"):
        open_dataset("chexpert", root, "train", 16)


@case
def image_listed_but_missing(tmp_path):
    root = make_chexpert_root(tmp_path)
    gone = pd.read_csv(root / SMALL / "train.csv")["Path"][0]
    (root / gone).unlink()
    store = ResultStore(tmp_path / "results")
    with pytest.raises(MissingDataError, match=rf"chexpert: 1 of \d+ images listed in .*train\.csv are missing, "
                                               rf"e\.g\. .*{gone}; pass missing='skip'"):
        run_one(_chexpert_run(root), store, quiet=True)
    assert _files(store.root) == []


def _cache_build_fails(ds, tmp_path, match: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(CacheBuildError, match=match):
        ds.image_array(cache_dir=cache, progress=False)
    assert _files(cache) == []  # no entry, no marker, no temporary file


@case
def truncated_jpeg(tmp_path):
    root = make_chexpert_root(tmp_path)
    ds = open_dataset("chexpert", root, "train", 16, val_fraction=0.25)
    bad = ds.table["Path"][2]
    truncate_file(root / bad)
    _cache_build_fails(ds, tmp_path, rf"chexpert: loading source row {ds.source_rows[2]} failed: chexpert: cannot decode image "
                                          rf".*{bad} \(corrupt, truncated or not an image\)")


@case
def truncated_png(tmp_path):
    root = make_nih_root(tmp_path)
    ds = open_dataset("nih", root, "test", 16)
    bad = ds.table["Image Index"][1]
    truncate_file(root / "images" / bad)
    _cache_build_fails(ds, tmp_path, rf"nih: loading source row {ds.source_rows[1]} failed: nih: cannot decode image .*{bad}")


@case
def image_of_wrong_size_or_mode(tmp_path):
    # fixed-size formats refuse wrong shapes, naming the array and what was expected
    root = make_medmnist_root(tmp_path, sizes=(28,))
    with np.load(root / "chestmnist.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for images, shown in ((np.zeros((8, 30, 30), np.uint8), r"\[8, 30, 30\]"),
                          (np.zeros((8, 28, 28, 3), np.uint8), r"\[8, 28, 28, 3\]")):
        np.savez(root / "chestmnist.npz", **{**arrays, "train_images": images})
        with pytest.raises(DataError, match=rf"chestmnist\.npz, array 'train_images' is uint8 {shown}; expected uint8 "
                                            r"\[N, 28, 28\]"):
            open_dataset("medmnist-chest", root, "train", 28)
    # a loader handing back the wrong shape is stopped at the cache, naming the row; nothing is kept
    ds = open_dataset("synthetic-chest", None, "val", 16, n=8)
    ds._load_batch_uint8 = lambda rows: np.zeros((len(rows), 3, 16, 16), np.uint8)  # colour where grey is due
    _cache_build_fails(ds, tmp_path, r"synthetic-chest: batch for source rows 0\.\.7 is uint8 \(8, 3, 16, 16\), "
                                         r"expected uint8 \(8, 1, 16, 16\)")


@case
def empty_subset_after_filtering(tmp_path):
    root = make_chexpert_root(tmp_path)
    valid = root / SMALL / "valid.csv"
    frame = pd.read_csv(valid, dtype=str)
    frame[frame["Frontal/Lateral"] == "Frontal"].to_csv(valid, index=False)
    with pytest.raises(DataError, match=r"chexpert: split 'test' of .*valid\.csv, views=\('lateral',\), leaves zero images"):
        open_dataset("chexpert", root, "test", 16, views=("lateral",))


@case
def subset_larger_than_the_dataset(tmp_path):
    store = ResultStore(tmp_path / "results")
    cfg = replace(SCRATCH, **{"data.train_n": 100})
    with pytest.raises(ValueError, match=r"synthetic-chest/train: asked for 100 images but the split has only 64"):
        run_one(cfg, store, quiet=True)
    assert _files(store.root) == []


@case
def unknown_dataset_option(tmp_path):
    store = ResultStore(tmp_path / "results")
    cfg = replace(SCRATCH, **{"data.options": {"institution": "C", "colour": True}})
    with pytest.raises(TypeError, match=r"synthetic-chest: unknown option\(s\) \['colour'\]; accepted options: "
                                        r"\['institution', 'n', 'seed'\]"):
        run_one(cfg, store, quiet=True)
    assert _files(store.root) == []


def _fake_complete_run(store: ResultStore, cfg: RunConfig, classes: list[str], model_classes: list[str]) -> None:
    """A finished run folder whose model.pt has ``model_classes`` while result.json lists ``classes``."""
    from kdmed.models import build_model, save_model

    folder = store.run_dir(cfg)
    save_model(build_model(cfg.arch, len(model_classes)), folder / "model.pt", cfg.arch, model_classes)
    utils.atomic_write_json(folder / "config.json", store.header(cfg))
    utils.atomic_write_json(folder / "result.json", {**store.header(cfg), "classes": classes})


@case
def teacher_checkpoint_for_other_classes(tmp_path):
    from kdmed.data.synthetic import CHEXPERT_CLASSES
    from kdmed.models import build_model, save_model

    # the model API: a 14-class checkpoint does not load into a 3-class head unless asked to re-initialise it
    ckpt = tmp_path / "teacher14.pt"
    save_model(build_model("small_cnn", 14), ckpt, "small_cnn", list(CHEXPERT_CLASSES))
    with pytest.raises(ValueError, match=rf"{ckpt.name} has a head for 14 classes but the model has 3 classes; "
                                         r"use head='reinit'"):
        build_model("small_cnn", 3, init=str(ckpt), head="match")
    # a run: the teacher's folder says 14 classes but its checkpoint has 5 outputs
    store = ResultStore(tmp_path / "results")
    teacher = replace(SCRATCH, name="teacher")
    _fake_complete_run(store, teacher, list(CHEXPERT_CLASSES), [f"grade {g}" for g in range(5)])
    kd = RunConfig(name="kd", data=TINY, strategy="kd", teacher=teacher, train=TRAIN)
    with pytest.raises(StaleResultError, match=r"run 'kd': the teacher checkpoint .*model\.pt has a head for 5 classes "
                                               r".* but its result\.json lists 14 classes; .* delete it"):
        run_one(kd, store, quiet=True)
    assert not store.run_dir(kd).exists()


@case
def checkpoint_file_that_is_not_a_checkpoint(tmp_path):
    from kdmed.models import read_checkpoint

    # a pickle that would run code when unpickled: refused by weights_only, and the code never ran
    class Payload:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "pwned", "ran"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    with pytest.raises(ValueError, match=rf"{evil.name} is not a kdmed/torch checkpoint: torch\.load\(weights_only=True\) failed"):
        read_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    pickle.loads(evil.read_bytes())  # the control: a plain unpickler does run it
    assert (tmp_path / "pwned").read_text() == "ran"
    # a run whose last.pt is garbage: refused naming the file and the fix; no result is written
    store = ResultStore(tmp_path / "results")
    utils.atomic_write_bytes(store.run_dir(SCRATCH) / "last.pt", b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"(?s)last\.pt: cannot read the training checkpoint \(UnpicklingError: .*\); delete it to restart the run"):
        run_one(SCRATCH, store, quiet=True)
    assert sorted(_files(store.run_dir(SCRATCH))) == ["config.json", "last.pt"]


@case
def disk_full_while_writing(tmp_path, monkeypatch):
    target = tmp_path / "results" / "result.json"
    utils.atomic_write_json(target, {"old": True})
    real = Path.write_bytes

    def full(self, data):  # half the bytes reach the disk, then the device is full
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match=rf"No space left on device while writing {target}; nothing was written") as err:
        utils.atomic_write_json(target, {"new": list(range(1000))})
    monkeypatch.setattr(Path, "write_bytes", real)
    assert err.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"old": True} and _files(target.parent) == ["result.json"]


@case
def disk_full_while_checkpointing(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "results")
    real = torch.save
    calls = []

    def full_at_epoch_two(obj, f, *args, **kwargs):
        calls.append(Path(f).name)
        if Path(f).name.startswith(".last.pt.") and sum(c.startswith(".last.pt.") for c in calls) == 2:
            Path(f).write_bytes(b"\x80" * 100)  # a partial checkpoint
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_epoch_two)
    with pytest.raises(OSError, match=r"No space left on device while writing .*last\.pt; nothing was written \(a previous "
                                      r"last\.pt is unchanged\)"):
        run_one(SCRATCH, store, quiet=True)
    monkeypatch.setattr(torch, "save", real)
    folder = store.run_dir(SCRATCH)
    assert sorted(_files(folder)) == ["config.json", "last.pt"]
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 1  # the epoch-1 checkpoint is intact
    assert run_one(SCRATCH, store, quiet=True)["resumed_from_epoch"] == 1  # once space is back, it resumes


@case
def nan_loss_during_training(tmp_path, monkeypatch):
    from kdmed.strategies import Strategy

    store = ResultStore(tmp_path / "results")
    real_step = Strategy.step
    poisoned = {"on": False}

    def step(self, *args, **kwargs):
        loss, *rest = real_step(self, *args, **kwargs)
        return (loss * float("nan") if poisoned["on"] else loss, *rest)

    def poison(epoch, record):
        poisoned["on"] = True  # from the second epoch on

    monkeypatch.setattr(Strategy, "step", step)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \(nan\) at epoch 2, batch 1 of 4: training "
                                                 r"stopped; the last good checkpoint .*last\.pt is kept"):
        run_one(SCRATCH, store, quiet=True, callbacks=[poison])
    folder = store.run_dir(SCRATCH)
    assert sorted(_files(folder)) == ["config.json", "last.pt"]
    saved = torch.load(folder / "last.pt", weights_only=True)
    assert saved["epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    poisoned["on"] = False
    assert run_one(SCRATCH, store, quiet=True)["resumed_from_epoch"] == 1


@case
def invalid_grid_file(tmp_path):
    grid = tmp_path / "grid.yml"
    grid.write_text("runs:\n  a:\n    strategy: scratch\n    trian: {epochs: 1}\n")
    proc = subprocess.run([sys.executable, "-m", "kdmed.cli", "run-grid", "--config", str(grid), "--results",
                           str(tmp_path / "results")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {grid}: runs.a: unknown field(s) ['trian']; valid fields: name, data" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_clearly_and_writes_nothing(name, tmp_path, monkeypatch):
    fn = CASES[name]
    fn(tmp_path, monkeypatch) if "monkeypatch" in inspect.signature(fn).parameters else fn(tmp_path)


def test_the_catalogue_covers_the_issue_list():
    assert len(CASES) >= 15
    for needed in ("unknown_profile", "unknown_papermill_parameter", "wrong_parameter_type", "missing_data_root",
                   "csv_renamed_column", "label_value_outside_its_set", "duplicated_image_ids", "image_listed_but_missing",
                   "truncated_jpeg", "truncated_png", "image_of_wrong_size_or_mode", "empty_subset_after_filtering",
                   "subset_larger_than_the_dataset", "teacher_checkpoint_for_other_classes",
                   "checkpoint_file_that_is_not_a_checkpoint", "disk_full_while_writing", "nan_loss_during_training"):
        assert needed in CASES


# ============================================================================ handled, not refused
def test_colour_sixteen_bit_and_odd_sized_files_are_converted_for_a_grey_dataset(tmp_path):
    """A chest X-ray stored as RGBA, 16-bit or at an odd size is converted, as torchvision would (not an error)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    root = make_chexpert_root(tmp_path)
    ds = open_dataset("chexpert", root, "test", 16, views=("frontal", "lateral"))
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (23, 57), dtype=np.uint8)
    variants = {
        0: Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), "RGBA"),
        1: Image.fromarray(grey.astype(np.uint16) * 257),  # 16-bit, full range
        2: Image.fromarray(grey),
    }
    for i, img in variants.items():
        img.save(root / ds.table["Path"][i], format="PNG")  # the wrong format under a .jpg name, too
    ref = np.asarray(TF.center_crop(TF.resize(Image.fromarray(grey), 16, antialias=True), 16))
    arr = ds.image_array(cache_dir=tmp_path / "cache", progress=False)
    for i in variants:
        assert arr[i].shape == (1, 16, 16)
        np.testing.assert_array_equal(arr[i, 0], ref)


# ============================================================================ atomic writes
def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out" / "table.csv"
    utils.atomic_write_text(target, "old\n")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with utils.atomic_path(target) as tmp:
            pd.DataFrame({"a": range(5)}).to_csv(tmp)
            raise Boom
    assert target.read_text() == "old\n" and _files(target.parent) == ["table.csv"]
    # other OSErrors pass through unchanged
    with pytest.raises(PermissionError) as err:
        with utils.atomic_path(target):
            raise PermissionError(errno.EACCES, "denied", "somewhere")
    assert err.value.filename == "somewhere"


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    utils.atomic_write_text(tmp_path / "atomic.txt", "x")
    utils.atomic_torch_save({"a": torch.zeros(1)}, tmp_path / "atomic.pt")
    mode = plain.stat().st_mode & 0o777
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "atomic.pt").stat().st_mode & 0o777 == mode


#: (file, function) of the writes allowed outside ``atomic_path``, with the reason
ALLOWED_RAW_WRITES = {
    # _build/stage/<profile>/ is a scratch copy rebuilt from nothing by every build; the renderer's
    # output is swapped in only when complete
    ("book/render.py", "stage"): "scratch folder",
    ("book/render.py", "_write_for_reading"): "scratch folder (the staged copy of an executed notebook)",
    ("book/render.py", "_drop_findings"): "scratch folder (a staged page of a partial build)",
    # a probe copy of a rendered page for the browser check, deleted right after
    ("book/browser.py", "view_page"): "scratch copy",
    # an append-only log of progress lines (one short O_APPEND write each): a kill leaves at most a
    # partial last line, which kdmed.progress.Tail never emits; no result is read from it
    ("progress.py", "report"): "append-only log",
    # an empty file that only carries a lock (fcntl.flock); nothing is written to it or read from it
    ("teacher_views.py", "_locked"): "lock file",
}
#: method/function names that write a file given as an argument
_WRITERS = {"write_text", "write_bytes", "to_csv", "to_parquet", "to_json", "to_excel", "savefig", "save", "savez",
            "savez_compressed", "tofile"}
_SHUTIL = {"shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree", "shutil.copyfileobj", "shutil.move"}


def _mode(node: ast.Call, position: int) -> str:
    value = next((k.value for k in node.keywords if k.arg == "mode"), node.args[position] if len(node.args) > position else None)
    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else ""


def _writes(node: ast.Call) -> bool:
    name = ast.unparse(node.func)
    attr = name.rsplit(".", 1)[-1]
    if attr in ("to_csv", "to_json") and not node.args and not node.keywords:
        return False  # returns the text
    if attr in _WRITERS or name in _SHUTIL or name == "nbformat.write":
        return True
    if attr in ("dump", "safe_dump"):  # json.dump(obj, fh) / yaml.safe_dump(obj, stream); one argument returns text
        return len(node.args) >= 2 or any(k.arg == "stream" for k in node.keywords)
    if name in ("open", "io.open", "os.fdopen"):
        return any(c in _mode(node, 1) for c in "wax+")
    if name in ("np.memmap", "numpy.memmap"):
        return any(c in _mode(node, 2) for c in "w+")
    return False


def _raw_writes(tree: ast.AST, path: str) -> list[tuple[str, int, str]]:
    """Calls that write a file outside a ``with atomic_path(...)`` block: (function, line, call)."""
    found = []

    def visit(node: ast.AST, func: str, guarded: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        if isinstance(node, ast.With) and any(
                isinstance(item.context_expr, ast.Call) and ast.unparse(item.context_expr.func).endswith("atomic_path")
                for item in node.items):
            guarded = True
        if isinstance(node, ast.Call) and not guarded and _writes(node) and (path, func) not in ALLOWED_RAW_WRITES:
            found.append((func, node.lineno, ast.unparse(node.func)))
        for child in ast.iter_child_nodes(node):
            visit(child, func, guarded)

    visit(tree, "<module>", False)
    return found


def test_every_file_write_in_src_and_book_goes_through_atomic_path():
    offenders = []
    for path in [*sorted(SRC.rglob("*.py")), *sorted(BOOK.glob("*.py"))]:
        rel = path.name if path.parent == SRC else str(path.relative_to(path.parents[1]))
        if path.name == "utils.py" and path.parent == SRC:
            continue  # the atomic helpers themselves
        offenders += [f"{rel}:{line} {func}(): {call}" for func, line, call in _raw_writes(ast.parse(path.read_text()), rel)]
    assert offenders == [], "non-atomic writes (use kdmed.utils.atomic_path & friends):\n" + "\n".join(offenders)
    # the scan does find raw writes
    sample = ast.parse("def f(p, df):\n    p.write_text('x')\n    df.to_csv(p)\n    open(p, 'w')\n"
                       "    with atomic_path(p) as tmp:\n        df.to_csv(tmp)\n")
    assert [(f, line) for f, line, _ in _raw_writes(sample, "x.py")] == [("f", 2), ("f", 3), ("f", 4)]


# ============================================================================ safe loading
def _unsafe_loads(source: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal") for n in names):
                problems.append(f"line {node.lineno}: imports {names}")
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        const = lambda k: isinstance(kw.get(k), ast.Constant) and kw[k].value  # noqa: E731
        if name.endswith("torch.load") and const("weights_only") is not True:
            problems.append(f"line {node.lineno}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load") and not (isinstance(kw.get("allow_pickle"), ast.Constant)
                                                       and kw["allow_pickle"].value is False):
            problems.append(f"line {node.lineno}: np.load without allow_pickle=False")
        if name.endswith(("yaml.load", "yaml.unsafe_load", "yaml.full_load")):
            problems.append(f"line {node.lineno}: {name} (use yaml.safe_load)")
        if name.endswith(("pickle.load", "pickle.loads", "torch.jit.load")) or name in ("eval", "exec"):
            problems.append(f"line {node.lineno}: {name}")
    return problems


def test_nothing_is_unpickled_or_evaluated_from_files():
    problems = []
    for path in [*sorted(SRC.rglob("*.py")), *sorted(BOOK.glob("*.py"))]:
        problems += [f"{path.name}: {p}" for p in _unsafe_loads(path.read_text())]
    assert problems == []
    bad = ("import pickle\nimport torch, numpy as np, yaml\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
           "np.load(p)\nnp.load(p, allow_pickle=True)\nyaml.load(s)\ntorch.load(p, weights_only=True)\n"
           "np.load(p, allow_pickle=False)\n")
    assert [p.split(":")[0] for p in _unsafe_loads(bad)] == [f"line {i}" for i in (1, 3, 4, 5, 6, 7)]


# ============================================================================ determinism
def test_same_config_twice_gives_bitwise_equal_results(tmp_path):
    from kdmed.train import TIMING_COLUMNS

    teacher = replace(SCRATCH, name="teacher", **{"data.options": {"institution": "B", "n": 64}})
    cfg = RunConfig(name="kd+at", data=dataclasses.replace(TINY, train_n=48), strategy="kd+at", teacher=teacher,
                    taps=("block3",), train=dataclasses.replace(TRAIN, augment=True))
    results = []
    for k, where in enumerate(("a", "b")):
        # the ambient RNG state must not matter: every run seeds what it draws from
        torch.manual_seed(1000 + k)
        np.random.seed(2000 + k)
        store = ResultStore(tmp_path / where)
        results.append((run_one(cfg, store, quiet=True), store))
    (a, store_a), (b, store_b) = results
    assert store_a.trained == store_b.trained == [run_key(teacher), run_key(cfg)]
    assert a["metrics"] == b["metrics"] and a["teacher_mode"] == "shared"
    strip = lambda h: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) and len(a["history"]) == 2
    for run in (teacher, cfg):
        za, zb = (np.load(s.run_dir(run) / "scores.npz", allow_pickle=False) for s in (store_a, store_b))
        assert all(za[k].tobytes() == zb[k].tobytes() for k in za.files)
        ma, mb = (torch.load(s.run_dir(run) / "model.pt", weights_only=True)["model"] for s in (store_a, store_b))
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
    # and a different seed does give different numbers (the comparison above can fail)
    other = run_one(replace(cfg, seed=1), ResultStore(tmp_path / "a"), quiet=True)
    assert other["history"][0]["train_loss"] != a["history"][0]["train_loss"]
