"""``meta-ood``: one command with subcommands for the runtime and the offline tools.

Training subcommands import the offline package ``meta_ood_training`` (and torch, scikit-learn, matplotlib)
only when they run, and say what to install when it is missing. ``meta-ood --help`` lists the subcommands in
:func:`command_groups` order (running a bundle first); each one's ``--help`` gives its description (the first
paragraph of its ``cmd_*`` docstring, so no reStructuredText there), its options with their defaults and an example.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .backends import BACKENDS
from .bundle import DEFAULT_MAX_P_FALSE_POSITIVE
from .errors import MetaOodError
from .reports import first_line, write_json
from .ros.bag_compression import COMPRESSIONS, DEFAULT_COMPRESSION
from .scores import DEFAULT_THRESHOLD

LOG = logging.getLogger("meta_ood")
#: Frame size (H, W) of synthetic data sets and drives when no size is given (the synthetic world's default).
SYNTHETIC_SIZE = (256, 512)
#: Frames of ``--dataset synthetic`` when ``--frames`` is not given.
SYNTHETIC_FRAMES = 100
TRAINING_HINT = "pip install 'meta_ood_perception[training]' (torch==2.13.0, scikit-learn, matplotlib, tqdm)"


class CLIError(MetaOodError):
    """A one-line error of a command (options that do not go together, a missing optional package); exit status 2."""


def _training() -> Any:
    try:
        import meta_ood_training.meta_cv as meta_cv  # lazy: the runtime never needs the offline package

        return meta_cv
    except ModuleNotFoundError as err:
        raise CLIError(f"this subcommand needs the offline package ({err.name} is missing): {TRAINING_HINT}") from err


def _mlp_config(args: argparse.Namespace) -> Any:
    import torch

    from meta_ood_training.meta_models import MLPConfig

    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")

    return MLPConfig(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=args.device, precision=args.precision
    )


def _load(path: Path) -> Any:
    _training()
    from meta_ood_training.meta_data import load_features

    return load_features(path)


def cmd_meta_cv(args: argparse.Namespace) -> None:
    """Cross-validate a meta classifier on a features file and write a JSON report (and ROC / PR plots)."""
    meta_cv = _training()
    data = _load(args.features)
    config = meta_cv.CVConfig(
        classifier=args.classifier, cv=args.cv, folds=args.folds, standardize=args.standardize,
        mlp=_mlp_config(args),
    )  # fmt: skip
    result = meta_cv.cross_validate(data, config, progress=True)
    report = result.report()
    if args.plots:
        from meta_ood_training.meta_report import plot_roc_pr

        report["plots"] = [str(p) for p in plot_roc_pr(result.y, {args.classifier: result.proba}, args.plots)]
    write_json(report, args.report)
    LOG.info("AUROC %.4f  AUPRC %.4f  accuracy %.4f  (n=%d, %.1f s) -> %s",
             result.auroc, result.auprc, result.accuracy, len(result.y), result.wall_s, args.report)  # fmt: skip


def cmd_meta_train(args: argparse.Namespace) -> None:
    """Train a meta classifier on all components of a features file and write the runtime artifact (JSON + npz)."""
    _training()
    from meta_ood_training.meta_train import train_meta_classifier

    data = _load(args.features)
    source = {k: v for k, v in (data.metadata or {}).items() if k in ("data", "extraction")}
    if not source:
        LOG.warning("%s does not record where its components come from (not written by this meta-ood's "
                    "extract-metrics): make-bundle cannot check the classifier's regime", args.features)  # fmt: skip
    model = train_meta_classifier(
        data, args.classifier, mlp_config=_mlp_config(args), metadata={"features_file": args.features.name, **source}
    )
    path = model.save(args.out)
    LOG.info("%s meta classifier (%d parameters, %d features) -> %s", model.kind, model.n_parameters,
             model.n_features, path)  # fmt: skip


def cmd_lars(args: argparse.Namespace) -> None:
    """Order the metrics by LARS, plot its path, and run Algorithm 1 (both classifiers on the top-N metrics)."""
    meta_cv = _training()
    from meta_ood_training.lars import incremental_evaluation, lars_order
    from meta_ood_training.meta_report import plot_incremental, plot_lars_path

    data = _load(args.features)
    result = lars_order(data)
    args.out.mkdir(parents=True, exist_ok=True)
    config = meta_cv.CVConfig(cv=args.cv, folds=args.folds, standardize=args.standardize, mlp=_mlp_config(args))
    limit = min(args.max_metrics or len(result.order), len(result.order))
    table = incremental_evaluation(data, result.order, config, list(range(1, limit + 1)))
    summary = {"order": result.names, "algorithm1": table}
    (args.out / "lars.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot_lars_path(result.coefs, list(data.names), result.order, args.out / "lars_path.png")
    plot_incremental(table, args.out / "algorithm1.png")
    LOG.info("LARS order (first 10): %s -> %s", ", ".join(result.names[:10]), args.out)


def cmd_train_ood(args: argparse.Namespace) -> None:
    """Fine-tune a segmentation network by entropy maximization on Cityscapes and COCO-OoD, set up by a YAML file."""
    _training()
    from meta_ood_training.datasets import CityscapesSegmentation, CocoOoD, informative_subset
    from meta_ood_training.ood_training import OoDTrainConfig, train_ood

    config = OoDTrainConfig.from_yaml(args.config)
    if not config.cityscapes_root or not config.coco_ood_root:
        raise CLIError(f"{args.config}: cityscapes_root and coco_ood_root must be set (coco_ood_root: the folder "
                       "`meta-ood build-coco-ood --coco-root COCO --out DIR` writes)")  # fmt: skip
    cityscapes = CityscapesSegmentation(config.cityscapes_root, "train")
    coco = CocoOoD.from_folder(config.coco_ood_root)
    entries = informative_subset(
        coco.entries, max_fraction=config.max_ood_fraction, min_fraction=config.min_ood_fraction
    )
    LOG.info("training on %d Cityscapes and %d COCO-OoD images", len(cityscapes), len(entries))
    result = train_ood(config, cityscapes, CocoOoD(coco.root, entries))
    LOG.info("done: %s", result["checkpoint"])


def cmd_build_coco_ood(args: argparse.Namespace) -> None:
    """Build COCO-OoD from the official COCO layout: masks of the images without Cityscapes-like objects, and
    index.json."""
    _training()
    from meta_ood_training.datasets import build_coco_ood, informative_subset

    index = build_coco_ood(args.coco_root, args.out, args.split, min_side=args.min_side, progress=True)
    if not index:
        raise CLIError(f"no {args.split} image of {args.coco_root} is free of the excluded categories: nothing "
                       "to train entropy maximization on")  # fmt: skip
    informative = len(informative_subset(index, max_fraction=0.2))
    LOG.info("COCO-OoD: %d images (%d informative: OoD pixels <= 20 %%) -> %s (coco_ood_root of train-ood)",
             len(index), informative, args.out)  # fmt: skip


def cmd_make_bundle(args: argparse.Namespace) -> None:
    """Package a trained network (train-ood checkpoint or the published format) and optionally a meta classifier
    as a bundle, and check it by loading it and running one frame."""
    _training()
    from meta_ood_training.make_bundle import (
        DEFAULT_CALIBRATION_FRAMES,
        DEFAULT_INPUT_SIZE,
        check_calibration,
        class_names_for,
        load_meta,
        load_network,
        make_bundle,
        parse_calibration,
    )

    calibration = parse_calibration(args.calibration)
    frames = DEFAULT_CALIBRATION_FRAMES if args.calibration_frames is None else args.calibration_frames
    if calibration.kind not in ("none", "auto"):  # a missing folder or too few frames fail before the checkpoint is
        check_calibration(calibration, frames)  # read (auto needs it: make_bundle resolves and checks it then)
    elif calibration.kind == "none":
        LOG.info("make-bundle: --calibration none: the bundle carries no in-domain statistics for the domain monitor")
    options = _network_options(args)
    network = load_network(args.checkpoint, args.architecture, args.num_classes, options)
    names = class_names_for(network.num_classes, args.class_names.split(",") if args.class_names else None)
    meta = load_meta(args.meta, network.num_classes) if args.meta is not None else None
    input_size = tuple(args.input_size or DEFAULT_INPUT_SIZE)
    bundle = make_bundle(
        network, args.out, class_names=names, input_size=input_size,
        metric_size=tuple(args.metric_size) if args.metric_size else None, threshold=args.threshold,
        meta=meta, max_p_false_positive=args.max_p_false_positive, calibration=calibration,
        calibration_frame_count=frames,
    )  # fmt: skip
    LOG.info("bundle %s: %s from %s (%s), %s -> %s", bundle.root, network.architecture, args.checkpoint,
             network.source["format"], f"{bundle.meta_classifier.kind} meta classifier, cut "
             f"{bundle.max_p_false_positive:g}" if bundle.meta_classifier else "keeps every component",
             args.out)  # fmt: skip


#: The architectures that take ``--model-width``.
WIDTH_ARCHITECTURES = ("deeplabv3plus_light", "deeplabv3plus_resnet18")


def _network_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--model-width`` as the network option ``width`` (None without it); refused by name for an
    ``--architecture`` without a width."""
    if not args.model_width:
        return None
    if args.architecture and args.architecture not in WIDTH_ARCHITECTURES:
        raise CLIError(f"--model-width applies to {' and '.join(WIDTH_ARCHITECTURES)}, not to --architecture "
                       f"{args.architecture}")  # fmt: skip
    return {"width": args.model_width}


def _pipeline(args: argparse.Namespace) -> Any:
    """The bundle's deployed pipeline for an offline command (``--bundle``, ``--backend``); components lie in each
    frame's labelled region (the target decides, not the predicted road)."""
    from .pipeline import AnomalyPipeline, PipelineConfig

    config = PipelineConfig(region="frame")
    return AnomalyPipeline.from_bundle(args.bundle, backend=args.backend, config=config, **_backend_options(args))


#: Option of :func:`~meta_ood_perception.backends.create_backend` → (its flag, the backend it belongs to).
BACKEND_FLAGS = {"providers": ("provider", "onnxruntime"), "device": ("device", "torch"),
                 "engine": ("engine", "tensorrt"), "rebuild": ("rebuild", "tensorrt")}  # fmt: skip


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``--backend`` from its flags (the tensorrt backend builds a missing engine unless
    ``--no-rebuild``); a flag of another backend is a :class:`CLIError` naming both."""
    options: dict[str, Any] = {}
    for option, (dest, backend) in BACKEND_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if backend != args.backend:
            flag = f"--{'' if value is not False else 'no-'}{dest}"
            raise CLIError(f"{flag} is an option of --backend {backend}, not of --backend {args.backend}")
        options[option] = value
    if args.backend == "tensorrt":
        options.setdefault("rebuild", True)
    return options


def _dataset(args: argparse.Namespace) -> tuple[Any, list[int] | None]:
    """The labelled test set of ``--dataset`` and its group ids (None = one group per frame)."""
    if args.dataset == "synthetic":
        from meta_ood_training.synthetic import SyntheticWorld

        size = getattr(args, "size", None) or SYNTHETIC_SIZE
        return SyntheticWorld("hazard", args.seed, args.frames or SYNTHETIC_FRAMES, size[0], size[1]), None
    if args.root is None:
        raise CLIError(f"--root is required for --dataset {args.dataset}")
    from meta_ood_training.datasets import FishyscapesStatic, LostAndFound

    if args.dataset == "lostandfound":
        laf = LostAndFound(args.root, args.split or "test")
        return laf, (laf.sequences if getattr(args, "group", "sequence") == "sequence" else None)
    return FishyscapesStatic(args.root, args.split or "Static", cityscapes_root=args.cityscapes_root), None


def cmd_extract_metrics(args: argparse.Namespace) -> None:
    """Run a bundle's deployed pipeline over a labelled test set and write the component-metric table (the features file
    of meta-cv and meta-train)."""
    _training()
    from dataclasses import replace

    from meta_ood_training.meta_extract import extract, extraction_metadata

    dataset, groups = _dataset(args)
    pipeline = _pipeline(args)
    data = extract(pipeline, dataset, frames=args.frames, groups=groups).dataset()
    metadata = extraction_metadata(pipeline, dataset, args.frames)
    metadata["group"] = "sequence" if groups is not None else "frame"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    replace(data, metadata=metadata).save(args.out)
    LOG.info("%d components from %d frames (%.1f %% false positives) -> %s", data.n,
             min(args.frames or len(dataset), len(dataset)), 100 * data.y.mean() if data.n else 0,
             args.out)  # fmt: skip


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate a bundle on a labelled OoD test set: pixel metrics, SMIYC component metrics and its meta classifier, as
    a JSON report in which every null value says why."""
    _training()
    from meta_ood_training.evaluate_bundle import (
        evaluate_bundle,
        explain_null,
        in_sample,
        in_sample_null_reason,
        null_reasons,
        write_report,
    )
    from meta_ood_training.meta_extract import dataset_identity

    from .pipeline import PipelineConfig

    dataset, groups = _dataset(args)
    pipeline = _pipeline(args)
    if args.region == "deployed":  # what the car sees: the predicted drivable region, the target only labels
        pipeline.configure(PipelineConfig(region="road"))
    overlap = None
    if pipeline.bundle.meta_classifier is not None:
        overlap = in_sample(pipeline.bundle.meta_training, dataset_identity(dataset, args.frames))
        if overlap:
            LOG.warning("meta-ood evaluate: in-sample test frames: %s", overlap)
    report = evaluate_bundle(
        pipeline, dataset, frames=args.frames, groups=groups, min_pred_size=args.min_pred_size,
        min_gt_size=args.min_gt_size, plots_dir=args.plots,
        region_from="deployed" if args.region == "deployed" else "target",
    )  # fmt: skip
    report["bundle"], report["dataset"] = str(args.bundle), args.dataset
    report["meta"]["in_sample"] = overlap
    explain_null(report["meta"], "in_sample", in_sample_null_reason(pipeline))
    if args.dataset == "synthetic":
        report["seed"] = args.seed
    write_report(report, args.report)
    pix, comp = report["pixel"], report["components"]
    LOG.info("pixel AUROC %s FPR95 %s AUPRC %s; components mean F1 %s; false positives %d -> %d, true detections "
             "lost %d of %d -> %s", *(_figure(v) for v in (pix["auroc"], pix["fpr95"], pix["auprc"], comp["mean_F1"])),
             comp["false_positives_before"], comp["false_positives_after"], comp["true_detections_lost"],
             comp["true_detections"], args.report)  # fmt: skip
    by_reason: dict[str, list[str]] = {}
    for path, reason in null_reasons(report).items():
        by_reason.setdefault(reason, []).append(path)
    for reason, paths in by_reason.items():
        LOG.info("null in the report: %s: %s", ", ".join(paths), reason)


def _figure(value: float | None) -> str:
    """A metric for a log line: 4 decimals, or ``null`` (None / NaN, as in the JSON report)."""
    return "null" if value is None or value != value else f"{value:.4f}"


def cmd_build_default_bundle(args: argparse.Namespace) -> None:
    """Train everything on the synthetic world and write the embedded default bundle (about 28 min on 2 cores)."""
    _training()
    from meta_ood_training.default_bundle import DefaultBundleConfig, build_default_bundle, smoke_config

    from .bundle import DEFAULT_BUNDLE

    config = smoke_config() if args.smoke else DefaultBundleConfig()
    build_default_bundle(args.out or DEFAULT_BUNDLE, config, network_from=args.network_from)


def cmd_results(args: argparse.Namespace) -> None:
    """Regenerate docs/RESULTS.md and its figures: the paper's tables and figures on the synthetic world (about 40
    min)."""
    _training()
    from meta_ood_training.results import ResultsConfig, run_results, smoke_config

    run_results(args.out, smoke_config() if args.smoke else ResultsConfig())


def cmd_export_onnx(args: argparse.Namespace) -> None:
    """Export a checkpoint or a bundle's network to ONNX, optionally with softmax and heat maps in the graph."""
    _training()
    from meta_ood_perception.bundle import load_bundle
    from meta_ood_training.export import export_onnx, model_from_bundle
    from meta_ood_training.make_bundle import load_network
    from meta_ood_training.packaging import ONNX_FILE, export_into_bundle

    if (args.checkpoint is None) == (args.bundle is None):
        raise CLIError("give exactly one of --checkpoint or --bundle")
    if args.bundle is not None:
        bundle = load_bundle(args.bundle)
        out = Path(args.out) if args.out is not None else bundle.root / ONNX_FILE
        height, width = args.input_size or bundle.input_size
        if bundle.root.resolve() in out.resolve().parents:
            if not args.dynamic and (height, width) != bundle.input_size:
                raise CLIError(f"--input-size {height} {width}: a graph registered in the bundle must take its "
                               f"input size {bundle.input_size[0]}×{bundle.input_size[1]} (or --dynamic); write it "
                               f"outside {bundle.root} instead")  # fmt: skip
            export_into_bundle(bundle, out, height=height, width=width, dynamic=args.dynamic, heatmaps=args.heatmaps,
                               opset=args.opset)  # fmt: skip
            LOG.info("registered %s as the bundle's ONNX graph (bundle.json: model file and SHA-256)", out)
            return
        model, num_classes = model_from_bundle(bundle)
    else:
        if args.out is None:
            raise CLIError("--checkpoint needs --out FILE.onnx (only --bundle has a default: <bundle>/model.onnx)")
        if args.input_size is None:
            raise CLIError("--checkpoint needs --input-size H W (the size used for the trace; see --dynamic)")
        options = _network_options(args)
        network = load_network(args.checkpoint, args.architecture, args.num_classes, options)
        model, num_classes, out = network.model, network.num_classes, Path(args.out)
        height, width = args.input_size
    export_onnx(model, out, num_classes=num_classes, height=height, width=width, dynamic=args.dynamic,
                heatmaps=args.heatmaps, opset=args.opset)  # fmt: skip


def cmd_build_engine(args: argparse.Namespace) -> None:
    """Build a TensorRT engine and its build record from an ONNX graph, and check it on a zero image (needs TensorRT and
    an NVIDIA GPU)."""
    from meta_ood_perception.backends.tensorrt_backend import build_engine

    shape = _onnx_input_shape(args.onnx, args.input_size)
    info = build_engine(args.onnx, args.out, input_shape=shape, fp16=args.fp16, workspace_mb=args.workspace_mb)
    if args.build_only:
        LOG.info("engine built (build-only: not run) -> %s", args.out)
        return
    import numpy as np

    from meta_ood_perception.backends.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(args.out, input_shape=shape)
    outputs = backend.run(np.zeros(shape, np.float32))
    bad = [name for name, value in outputs.items() if not np.isfinite(value).all()]
    if bad:
        raise CLIError(f"engine {args.out} produced non-finite outputs {bad} on a zero image")
    LOG.info("engine checked on %s: outputs %s", info.gpu, {k: v.shape for k, v in outputs.items()})


def cmd_demo(args: argparse.Namespace) -> int:
    """Write a synthetic drive as a rosbag, replay it through the default bundle on the CPU, and write the output bag,
    an annotated video, plots and REPORT.md."""
    try:  # the demo needs the synthetic world and plots (the 'demo' extra), not torch
        from meta_ood_training.demo import DemoConfig, brake_line, run_demo
    except ModuleNotFoundError as err:
        raise CLIError(f"meta-ood demo needs {err.name}: pip install 'meta_ood_perception[demo]' "
                       "(matplotlib, tqdm, pillow, av)") from err  # fmt: skip

    config = DemoConfig(out=args.out, seed=args.seed, frames=args.frames, height=args.size[0], width=args.size[1],
                        bundle=args.bundle, backend=args.backend, score=not args.no_score,
                        compression=args.compression)  # fmt: skip
    summary = run_demo(config, progress=not args.no_progress)
    pixel = summary.get("labels", {}).get("pixel", {})
    LOG.info("demo: %d frames, pixel AUROC %.3f / AUPRC %.3f, %d brake event(s), %.1f s", summary["frames_processed"],
             pixel.get("auroc") or float("nan"), pixel.get("auprc") or float("nan"), len(summary["brake_events"]),
             summary["demo_s"])  # fmt: skip
    LOG.info("demo: %s", brake_line(summary["brake"]))
    LOG.info("demo: wrote %s (report %s, video %s)", args.out, summary["paths"]["REPORT.md"],
             summary["paths"]["annotated.mp4"])  # fmt: skip
    return _replay_status(summary)


def _replay_status(summary: dict[str, Any]) -> int:
    """Exit status of a replay summary: 2 damaged input (bad input, like every other one: the output keeps the frames
    read before the damage), 130 / 143 interrupted, else 0 (each with one line)."""
    if summary.get("read_error"):
        LOG.error("meta-ood: %s; the output holds the %d frames read before it", summary["read_error"],
                  summary["frames_processed"])  # fmt: skip
        return 2
    if summary.get("interrupted"):
        LOG.warning("meta-ood: interrupted by %s; the output holds the frames processed so far",
                    summary["interrupted"])  # fmt: skip
        return 130 if summary["interrupted"] == "SIGINT" else 143
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a rosbag through the node's pipeline and write its outputs to an MCAP bag (optionally a JSON summary and
    an annotated video)."""
    from .ros.params import NodeConfig, load_param_file
    from .ros.replay import ReplayOptions, replay

    params = load_param_file(args.params) if args.params else {}
    overrides = {
        "bundle": args.bundle, "backend": args.backend, "providers": args.provider, "device": args.device,
        "engine": args.engine, "threads": args.threads, "threshold": args.threshold, "trt_rebuild": args.rebuild,
    }  # fmt: skip
    params.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_score:
        params["publish_score"] = False
    config = NodeConfig.from_params(params)
    options = ReplayOptions(
        image_topics=tuple(args.image_topic or ()), label_topic=args.label_topic, summary=args.summary,
        video=args.video, overwrite=args.overwrite, per_frame=args.per_frame, salvage=args.salvage,
        realtime=args.realtime, compression=args.compression,
    )  # fmt: skip
    summary = replay(args.in_bag, args.out, config, options)
    total, receipt = summary["latency_ms"].get("total", {}), summary["receipt_latency_ms"]
    realtime = (f", {summary['frames_dropped']} dropped; receipt-to-output p50 {receipt['p50']:.1f} / p99 "
                f"{receipt['p99']:.1f} ms" if receipt else f", {summary['frames_dropped']} dropped")  # fmt: skip
    LOG.info("replay (%s): %d frames in, %d processed, %d rejected%s; latency p50 %.1f / p99 %.1f ms; %d brake "
             "event(s) -> %s%s", summary["mode"], summary["frames_in"], summary["frames_processed"],
             summary["frames_rejected"], realtime if options.realtime else "", total.get("p50", float("nan")),
             total.get("p99", float("nan")), len(summary["brake_events"]), args.out,
             f" (summary {args.summary})" if args.summary else "")  # fmt: skip
    for r in summary["rejections"][:20]:
        LOG.warning("replay: rejected %s stamp %s: %s", r["topic"], r["stamp_ns"], r["reason"])
    return _replay_status(summary)


def _onnx_input_shape(path: Path, size: list[int] | None) -> tuple[int, int, int, int]:
    try:
        import onnx
    except ModuleNotFoundError:
        raise CLIError("build-engine reads the ONNX graph with the onnx package: pip install onnx") from None

    if not Path(path).is_file():
        raise CLIError(f"ONNX file not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:  # onnx raises DecodeError and others for corrupt files
        raise CLIError(f"cannot read ONNX file {path}: {err}") from None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.input[0].type.tensor_type.shape.dim]
    if size is not None:
        dims[2:] = size
    dims[0] = dims[0] or 1
    known = [d for d in dims if d is not None]
    if len(dims) != 4 or len(known) != 4:
        raise CLIError(f"{path} has a dynamic input size {dims}: give --input-size H W")
    return known[0], known[1], known[2], known[3]


def _positive_int(text: str) -> int:
    """Argparse type: a whole number of at least 1 (frames, epochs, folds, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", type=Path, required=True,
                   help="features file from extract-metrics: npz with X (N×F), y (N, 1 = false positive), "
                   "names")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of MLP initialization and shuffling")
    p.add_argument("--epochs", type=_positive_int, default=50, help="MLP training epochs")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="MLP batch size")
    p.add_argument("--device", default="cpu", help="torch device for MLP training: cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="dtype of the MLP's batched products: float32 (the reference's arithmetic) or bfloat16 "
                        "(2x faster on CPUs with avx512_bf16 / AMX; AUROC within the seed spread)")  # fmt: skip


def _add_cv_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cv", choices=("loo", "group-kfold"), default="group-kfold",
                   help="leave-one-out, or k-fold over the features file's groups (sequences or frames)")  # fmt: skip
    p.add_argument("--folds", type=_positive_int, default=5, help="folds of group-kfold")
    p.add_argument("--standardize", choices=("train", "pooled"), default="train",
                   help="feature statistics from each training fold (train) or from all data (pooled, the "
                   "reference)")  # fmt: skip


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    """``--backend`` and the options of each backend, checked against it by :func:`_backend_options`."""
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime", help="inference backend")
    p.add_argument("--provider", action="append",
                   help="onnxruntime backend: execution provider, repeated in order of preference: tensorrt, cuda, "
                   "cpu (default: cpu)")  # fmt: skip
    p.add_argument("--device", help="torch backend: device cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--engine", help="tensorrt backend: engine file (default: the bundle's, else one built into the "
                   "engine cache)")  # fmt: skip
    p.add_argument("--rebuild", action=argparse.BooleanOptionalAction, default=None,
                   help="tensorrt backend: build a missing or mismatched engine from the bundle's ONNX graph into the "
                   "engine cache; --no-rebuild stops with an error instead (default: build)")  # fmt: skip


def _add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle directory, or 'default' for the embedded demonstrator")
    _add_backend_options(p)
    p.add_argument("--dataset", choices=("lostandfound", "fishyscapes", "synthetic"), required=True,
                   help="labelled test set")  # fmt: skip
    p.add_argument("--root", type=Path, default=None, help="dataset root (lostandfound, fishyscapes)")
    p.add_argument("--split", default=None,
                   help="dataset split (default: test for lostandfound, Static for fishyscapes)")  # fmt: skip
    p.add_argument("--frames", type=_positive_int, default=None,
                   help=f"use only the first N frames (default: all; synthetic: {SYNTHETIC_FRAMES})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help=f"synthetic frame size, pixels (default: {SYNTHETIC_SIZE[0]} {SYNTHETIC_SIZE[1]})")  # fmt: skip
    p.add_argument("--cityscapes-root", type=Path, default=None,
                   help="Cityscapes root for Fishyscapes release overlays (*_rgb.npz on leftImg8bit/val)")  # fmt: skip


def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("meta_ood_demo"), help="output folder")
    p.add_argument("--seed", type=int, default=2027, help="seed of the synthetic drive")
    p.add_argument("--frames", type=_positive_int, default=200, help="frames in the drive (10 per second)")
    p.add_argument("--size", type=int, nargs=2, default=list(SYNTHETIC_SIZE), metavar=("H", "W"),
                   help="camera resolution, pixels")  # fmt: skip
    p.add_argument("--bundle", default="default", help="bundle directory, or 'default' for the embedded demonstrator")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime", help="inference backend")
    p.add_argument("--no-score", action="store_true",
                   help="do not write the anomaly_score topic (most of the output bag's size)")  # fmt: skip
    p.add_argument("--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
                   help="MCAP chunk compression of the output bag")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _replay_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("in_bag", type=Path, help="rosbag2 directory / .mcap / .db3 file, or a rosbag1 .bag")
    p.add_argument("--out", type=Path, required=True, help="output bag directory (MCAP, metadata version 8)")
    p.add_argument("--image-topic", action="append", help="image topic to process (repeat; default: all of them)")
    p.add_argument("--label-topic", help="mono8 labels (0 / 1 / 255) matched by stamp, for pixel / SMIYC metrics")
    p.add_argument("--params", type=Path,
                   help="node parameter file (config/anomaly_node.param.yaml format); the options below override "
                   "it")  # fmt: skip
    p.add_argument("--bundle", help="bundle directory, or 'default' (default: the --params file's, else 'default')")
    p.add_argument("--backend", choices=BACKENDS,
                   help="inference backend (default: the --params file's, else onnxruntime)")  # fmt: skip
    p.add_argument("--provider", action="append",
                   help="onnxruntime backend: execution provider, repeated in order of preference: tensorrt, cuda, "
                   "cpu (default: the --params file's, else cpu)")  # fmt: skip
    p.add_argument("--device", help="torch backend: device cpu, cuda, cuda:1, ... (default: the --params file's, "
                   "else cpu)")  # fmt: skip
    p.add_argument("--engine", help="tensorrt backend: engine file (default: the --params file's, else the bundle's, "
                   "else one built into the engine cache)")  # fmt: skip
    p.add_argument("--rebuild", action=argparse.BooleanOptionalAction, default=None,
                   help="tensorrt backend: build a missing or mismatched engine into the engine cache; --no-rebuild "
                   "stops with an error instead (default: the --params file's trt_rebuild, else build)")  # fmt: skip
    p.add_argument("--threads", type=int,
                   help="CPU inference threads (default: the --params file's, else the backend's)")  # fmt: skip
    p.add_argument("--threshold", type=float,
                   help="anomaly threshold in [0, 1] (default: the --params file's, else the bundle's)")  # fmt: skip
    p.add_argument("--no-score", action="store_true",
                   help="do not write the anomaly_score topics (32FC1, 4 bytes per pixel: most of the output bag; "
                   "for small bags)")  # fmt: skip
    p.add_argument("--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
                   help="MCAP chunk compression of the output bag")  # fmt: skip
    p.add_argument("--summary", type=Path, help="JSON summary to write")
    p.add_argument("--video", type=Path,
                   help="annotated MP4 (H.264 with the video extra, else mp4v); with several cameras one per camera "
                   "at its own size, STEM_CAMERA.mp4 next to it")  # fmt: skip
    p.add_argument("--per-frame", action="store_true", help="add one record per frame to the summary")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--salvage", action="store_true", help="read an MCAP recording cut short up to its damage")
    p.add_argument("--realtime", action="store_true",
                   help="play at the recorded rate through the node's newest-frame scheduler (frames it cannot "
                   "keep up with are dropped, as live); default: every frame, as fast as it goes")  # fmt: skip


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    _add_dataset_options(p)
    p.add_argument("--min-pred-size", type=int, default=50, help="SMIYC: smallest predicted component, pixels")
    p.add_argument("--min-gt-size", type=int, default=10, help="SMIYC: smallest ground-truth component, pixels")
    p.add_argument("--region", choices=("labelled", "deployed"), default="labelled",
                   help="where components may lie: the ground truth's labelled region (the LostAndFound protocol) "
                   "or the drivable region the network predicts (what the node sees; the ground truth only labels "
                   "the components)")  # fmt: skip
    p.add_argument("--report", type=Path, required=True, help="JSON report to write")
    p.add_argument("--plots", type=Path, default=None,
                   help="folder for the meta classifier's ROC / PR plots (default: no plots)")  # fmt: skip


def _add_network_options(p: argparse.ArgumentParser) -> None:
    """How to read a checkpoint's network (export-onnx, make-bundle)."""
    p.add_argument("--architecture", default=None,
                   help="deeplabv3plus_wrn38, deeplabv3plus_resnet18 or deeplabv3plus_light (default: the "
                   "train-ood checkpoint's)")  # fmt: skip
    p.add_argument("--num-classes", type=int, default=None, help="output classes (default: the checkpoint's, or 19)")
    p.add_argument("--model-width", type=int, default=None,
                   help="width of deeplabv3plus_light / deeplabv3plus_resnet18 (default: the checkpoint's, or 32 / "
                   "64)")  # fmt: skip


def _export_onnx_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path,
                   help="network weights: a train-ood checkpoint, the published {'state_dict': ...} .pth, a state "
                   "dict or .safetensors (read with weights only)")  # fmt: skip
    _add_network_options(p)
    p.add_argument("--bundle", help="export the network of a bundle instead: a folder, or 'default'")
    p.add_argument("--out", type=Path, default=None,
                   help="output .onnx file (default with --bundle: <bundle>/model.onnx); inside the --bundle folder "
                   "it becomes the bundle's ONNX graph")  # fmt: skip
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="input height and width, pixels (default with --bundle: the bundle's)")  # fmt: skip
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--heatmaps", action="store_true", help="also output probs, score, E, D, V, argmax")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")


def _build_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", type=Path, required=True, help="ONNX graph (from export-onnx)")
    p.add_argument("--out", type=Path, required=True, help="engine file; its build record goes to OUT.json")
    p.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    p.add_argument("--workspace-mb", type=int, default=4096, help="builder workspace limit, MiB")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="input size of a graph with a dynamic one (default: the graph's)")  # fmt: skip
    p.add_argument("--build-only", action="store_true", help="build and record only; do not run the engine")


def _build_coco_ood_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coco-root", type=Path, required=True,
                   help="COCO root: annotations/instances_<split>.json and <split>/*.jpg")  # fmt: skip
    p.add_argument("--split", default="train2017", help="COCO split")
    p.add_argument("--out", type=Path, required=True, help="output folder: masks/ and index.json")
    p.add_argument("--min-side", type=int, default=0, help="drop images whose shorter side is below this, pixels")


def _train_ood_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True,
                   help="YAML file with the keys of config/train_ood.yaml (cityscapes_root and coco_ood_root "
                   "set)")  # fmt: skip


def _make_bundle_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="train-ood checkpoint (last.pt), published {'state_dict': ...} .pth, or "
                   ".safetensors")  # fmt: skip
    _add_network_options(p)
    p.add_argument("--class-names", default=None,
                   help="comma-separated class names (default: the 19 Cityscapes train ids)")  # fmt: skip
    p.add_argument("--meta", type=Path, default=None,
                   help="meta classifier from meta-train (.json + .npz) (default: none, every component is "
                   "kept)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="network input, pixels (default: 512 1024, Cityscapes at half resolution)")  # fmt: skip
    p.add_argument("--metric-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="metric grid of score, components, meta classifier and brake (default: the input "
                   "size)")  # fmt: skip
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="anomaly threshold t")
    p.add_argument("--max-p-false-positive", type=float, default=DEFAULT_MAX_P_FALSE_POSITIVE,
                   help="meta-classifier cut: components with P(false positive) >= it are removed")  # fmt: skip
    p.add_argument("--calibration", default="auto",
                   help="domain-monitor calibration frames: auto, none, synthetic[:SEED] or cityscapes:ROOT[:SPLIT] "
                   "(split default val; frames evenly spaced over it) (default: auto: Cityscapes val of the "
                   "train-ood checkpoint's cityscapes_root when it has at least 20 images, else none with a "
                   "warning)")  # fmt: skip
    p.add_argument("--calibration-frames", type=int, default=None,
                   help="calibration frames, at least 20 (default: 100)")  # fmt: skip


def _extract_metrics_options(p: argparse.ArgumentParser) -> None:
    _add_dataset_options(p)
    p.add_argument("--group", choices=("frame", "sequence"), default="sequence",
                   help="cross-validation groups: LostAndFound sequences or single frames")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="features file to write (.npz)")


def _meta_cv_options(p: argparse.ArgumentParser) -> None:
    _add_training_options(p)
    p.add_argument("--classifier", choices=("lr", "mlp"), required=True, help="logistic regression or MLP")
    _add_cv_options(p)
    p.add_argument("--report", type=Path, required=True, help="JSON report to write")
    p.add_argument("--plots", type=Path, default=None, help="folder for roc.png and pr.png (default: no plots)")


def _meta_train_options(p: argparse.ArgumentParser) -> None:
    _add_training_options(p)
    p.add_argument("--classifier", choices=("lr", "mlp"), required=True, help="logistic regression or MLP")
    p.add_argument("--out", type=Path, required=True, help="artifact path (.json; the .npz goes beside it)")


def _lars_options(p: argparse.ArgumentParser) -> None:
    _add_training_options(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_cv_options(p)
    p.add_argument("--max-metrics", type=_positive_int, default=None,
                   help="evaluate N = 1..this many metrics (default: all)")  # fmt: skip


def _build_default_bundle_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, type=Path, help="output folder (default: the package's default bundle)")
    p.add_argument("--smoke", action="store_true", help="tiny, fast run that checks the pipeline only")
    p.add_argument("--network-from", default=None, metavar="BUNDLE",
                   help="reuse the network of an earlier default bundle ('default' or a folder) and only rebuild "
                        "the meta classifier, its cut, the self-evaluation and the domain calibration (about 13 "
                        "minutes instead of 28 on 2 cores)")  # fmt: skip


def _results_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=Path("docs"), type=Path, help="folder for RESULTS.md and results/*.png")
    p.add_argument("--smoke", action="store_true", help="tiny, fast run that checks every step only")


@dataclass(frozen=True)
class Command:
    """One ``meta-ood`` subcommand: its name, function (the first paragraph of its docstring is the description),
    options and one example command line."""

    name: str
    func: Callable[[argparse.Namespace], int | None]
    options: Callable[[argparse.ArgumentParser], None]
    example: str

    @property
    def description(self) -> str:
        """The first paragraph of the function's docstring, on one line."""
        return " ".join((self.func.__doc__ or "").strip().split("\n\n")[0].split())


def command_groups() -> tuple[tuple[str, tuple[Command, ...]], ...]:
    """The subcommands in ``meta-ood --help`` order under their group headings, running a bundle first (built when
    the parser is, so that the ``cmd_*`` functions are looked up then)."""
    return (
        ("run a bundle", (
            Command("demo", cmd_demo, _demo_options, "meta-ood demo --out meta_ood_demo --frames 100"),
            Command("replay", cmd_replay, _replay_options,
                    "meta-ood replay drive_bag --out out_bag --summary summary.json --video drive.mp4"),
            Command("evaluate", cmd_evaluate, _evaluate_options,
                    "meta-ood evaluate --bundle default --dataset synthetic --seed 5 --frames 60 --report eval.json"),
        )),
        ("deploy a bundle's network", (
            Command("export-onnx", cmd_export_onnx, _export_onnx_options,
                    "meta-ood export-onnx --bundle bundles/car --heatmaps --dynamic --out car_heatmaps.onnx"),
            Command("build-engine", cmd_build_engine, _build_engine_options,
                    "meta-ood build-engine --onnx bundles/car/model.onnx --out bundles/car/model.engine --fp16"),
        )),
        ("train and package a bundle (pip install 'meta_ood_perception[training]')", (
            Command("build-coco-ood", cmd_build_coco_ood, _build_coco_ood_options,
                    "meta-ood build-coco-ood --coco-root coco --out data/coco_ood"),
            Command("train-ood", cmd_train_ood, _train_ood_options, "meta-ood train-ood --config my_train.yaml"),
            Command("make-bundle", cmd_make_bundle, _make_bundle_options,
                    "meta-ood make-bundle --checkpoint runs/ood/last.pt --meta meta/mlp.json --out bundles/car"),
            Command("extract-metrics", cmd_extract_metrics, _extract_metrics_options,
                    "meta-ood extract-metrics --bundle bundles/keep_all --dataset lostandfound --root lostandfound "
                    "--out laf.npz"),
            Command("meta-cv", cmd_meta_cv, _meta_cv_options,
                    "meta-ood meta-cv --features laf.npz --classifier mlp --report cv.json"),
            Command("meta-train", cmd_meta_train, _meta_train_options,
                    "meta-ood meta-train --features laf.npz --classifier mlp --out meta/mlp.json"),
            Command("lars", cmd_lars, _lars_options, "meta-ood lars --features laf.npz --out lars --max-metrics 20"),
        )),
        ("the synthetic world", (
            Command("build-default-bundle", cmd_build_default_bundle, _build_default_bundle_options,
                    "meta-ood build-default-bundle --smoke --out smoke_bundle"),
            Command("results", cmd_results, _results_options, "meta-ood results --smoke --out results_smoke"),
        )),
    )  # fmt: skip


#: What ``meta-ood --help`` says before its list of commands.
SUMMARY = ("Meta-OoD anomaly segmentation for ROS 2: run a bundle on bags and data sets, deploy its network, and "
           "train and package bundles.")  # fmt: skip
#: Examples at the end of ``meta-ood --help``.
TOP_EXAMPLES = ("meta-ood demo", "meta-ood replay drive_bag --out out_bag --summary summary.json",
                "meta-ood demo --help")  # fmt: skip


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (their line breaks kept), and each option's default appended as
    ``(default: …)`` unless its help states it already or the default says nothing (None, a flag's False, a
    required option, a positional argument)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text
            or "default:" in text
            or not action.option_strings
            or action.required
            or default is None
            or default is False
            or default is argparse.SUPPRESS
        ):
            return action.help
        shown = " ".join(str(v) for v in default) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".strip()


def package_version() -> str:
    """The installed distribution's version, else the package's ``__version__`` (a source tree on ``sys.path``)."""
    try:
        return importlib.metadata.version("meta_ood_perception")
    except importlib.metadata.PackageNotFoundError:
        import meta_ood_perception

        return str(getattr(meta_ood_perception, "__version__", "unknown"))


def _command_list(width: int) -> str:
    """The grouped command list of ``meta-ood --help``: a heading per group, one wrapped line per command."""
    lines = ["commands (meta-ood COMMAND --help: what it does, its options and defaults, an example):"]
    for heading, commands in command_groups():
        lines.append(f"  {heading}:")
        for command in commands:
            lines.append(textwrap.fill(command.description, width, initial_indent=f"    {command.name:<22}",
                                       subsequent_indent=" " * 26))  # fmt: skip
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``meta-ood replay: error: …; see meta-ood replay
    --help``, exit status 2) instead of the usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        """Print the one-line error and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``meta-ood`` argument parser: subcommands in :func:`command_groups` order, each with its description,
    defaults and an example."""
    width = max(60, min(shutil.get_terminal_size().columns - 2, 118))
    parser = _Parser(
        prog="meta-ood", usage="%(prog)s [-h] [-v] [--version] COMMAND [options]", formatter_class=HelpFormatter,
        description=f"{textwrap.fill(SUMMARY, width)}\n\n{_command_list(width)}",
        epilog="examples:\n" + "\n".join(f"  {example}" for example in TOP_EXAMPLES),
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help=argparse.SUPPRESS,
                                prog=parser.prog)  # the command list is in the description, grouped  # fmt: skip
    for _, commands in command_groups():
        for command in commands:
            p = sub.add_parser(command.name, formatter_class=HelpFormatter, epilog=f"example:\n  {command.example}",
                               description=textwrap.fill(command.description, width))  # fmt: skip
            command.options(p)
            p.set_defaults(func=command.func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``meta-ood``; returns the exit status.

    Exit status:
        0: done.
        2: an error the user can act on, printed as one line ``meta-ood <command>: <message>`` (with ``-v`` its
            traceback follows): any :class:`~meta_ood_perception.errors.MetaOodError` (bad input, setting, bundle or
            bag, a backend fault, a :class:`CLIError`), a file error (``OSError``) or an error of rosbags' own types.
            argparse's usage errors exit 2 as well.
        130: interrupted (Ctrl-C); ``replay`` and ``demo`` return 143 for SIGTERM and 2 for a damaged input bag.
        1: anything else is a bug (e.g. a bare ``ValueError`` from numpy, a ``KeyError``): it is never passed off as
            a user error; its traceback is logged (also without ``-v``) and main returns 1.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for noisy in ("matplotlib", "PIL", "numba"):  # their debug output would bury ours under -v
        logging.getLogger(noisy).setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        status = func(args)
    except KeyboardInterrupt:
        LOG.error("meta-ood %s: interrupted", args.command)
        return 130
    except Exception as err:
        if not isinstance(err, MetaOodError | OSError) and not _is_rosbags_error(err):
            LOG.error("meta-ood %s: internal error (a bug): %s: %s", args.command, type(err).__name__,
                      first_line(err), exc_info=True)  # fmt: skip
            return 1
        LOG.error("meta-ood %s: %s", args.command, first_line(err), exc_info=args.verbose)
        return 2
    return status or 0


def _is_rosbags_error(err: BaseException) -> bool:
    """An error of rosbags' own types (e.g. ``WriterError``): about the bag, printed as one line."""
    return type(err).__module__.split(".")[0] == "rosbags"


if __name__ == "__main__":
    sys.exit(main())
