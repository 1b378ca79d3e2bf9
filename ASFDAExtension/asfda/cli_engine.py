"""Engine commands: model import, rank, infer, adapt."""

from __future__ import annotations

import argparse
from pathlib import Path

from asfda.progress import console_progress


def _datastore_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datastore", type=Path, required=True, help="datastore folder (images/, labels/, models/)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] [cpu]")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("model", help="import a model (config + weights) as a new active version")
    p.add_argument("action", choices=["import", "list", "activate"])
    _datastore_arg(p)
    p.add_argument("--config", type=Path, help="model config JSON (import)")
    p.add_argument("--weights", type=Path, help="weights: state dict, checkpoint dict or Swin SSL encoder (import)")
    p.add_argument("--version", help="version to activate (activate)")
    p.set_defaults(func=run_model)

    p = subparsers.add_parser("rank", help="score unlabeled cases and print the ranked worklist")
    _datastore_arg(p)
    p.add_argument(
        "--strategy", default="asfda", choices=["asfda", "dkd", "asd", "random", "entropy", "coreset", "mc_dropout"]
    )
    p.add_argument("--k", type=int, default=4, help="annotation budget: how many cases to pick [4]")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_rank)

    p = subparsers.add_parser("infer", help="predict cases with the active model (labels/prediction/)")
    _datastore_arg(p)
    p.add_argument("cases", nargs="*", help="case ids (default: all)")
    p.set_defaults(func=run_infer)

    p = subparsers.add_parser("adapt", help="fine-tune on clinician labels + reliable pseudo-labels")
    _datastore_arg(p)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--no-pseudo", action="store_true", help="train on clinician labels only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_adapt)


def run_model(args) -> int:
    from asfda.datastore import Datastore
    from asfda.model_config import ModelConfig
    from asfda.networks import build_network
    from asfda.weights import load_weights

    store = Datastore(args.datastore)
    if args.action == "import":
        if not args.config:
            raise ValueError("model import needs --config")
        config = ModelConfig.load(args.config)
        network = build_network(config)
        report = load_weights(network, args.weights) if args.weights else None
        version = store.models.publish(
            network, config, parent=None, note=f"imported ({report.summary() if report else 'fresh weights'})"
        )
        print(f"imported {version}: {report.summary() if report else 'no weights given, freshly initialised'}")
    elif args.action == "activate":
        store.models.activate(args.version or "")
        print(f"active model: {args.version}")
    else:
        active = store.models.active_version()
        for v in store.models.versions():
            print(f"{'*' if v.version == active else ' '} {v.version}  parent={v.parent}  {v.created}  {v.note}")
    return 0


def run_rank(args) -> int:
    from asfda.datastore import Datastore
    from asfda.query.strategies import RankingOptions
    from asfda.ranking import rank_datastore

    store = Datastore(args.datastore, create=False)
    ranked = rank_datastore(
        store,
        RankingOptions(strategy=args.strategy, k=args.k, seed=args.seed),
        args.device,
        progress=console_progress("rank"),
    )
    version = store.models.active_version()
    print(f"{'rank':>4}  {'case':<24} {'DKD':>9} {'ASD':>7} {'score':>7}  pick   (model {version})")
    for r in ranked:
        dkd = f"{r.dkd:9.4f}" if r.dkd is not None else " " * 9
        asd = f"{r.asd:7.4f}" if r.asd is not None else " " * 7
        print(f"{r.rank:>4}  {r.case_id:<24} {dkd} {asd} {r.score:7.4f}  {'*' if r.selected else ''}")
    return 0


def run_infer(args) -> int:
    from asfda.datastore import Datastore
    from asfda.inference import Predictor
    from asfda.predict import predict_case

    store = Datastore(args.datastore, create=False)
    cases = args.cases or store.case_ids()
    for case_id in cases:  # refuse bad ids before spending time on the model
        store.image_path(case_id)
    model = store.models.load(device=args.device)
    predictor = Predictor(model.network, model.config, args.device)
    bar = console_progress("infer")
    for index, case_id in enumerate(cases):
        path = predict_case(store, case_id, model, predictor)
        bar(index + 1, len(cases))
        print(path)
    return 0


def run_adapt(args) -> int:
    from asfda.adapt.finetune import FinetuneOptions
    from asfda.adapt.pipeline import AdaptOptions, adapt_datastore
    from asfda.datastore import Datastore

    store = Datastore(args.datastore, create=False)
    result = adapt_datastore(
        store,
        AdaptOptions(FinetuneOptions(steps=args.steps, seed=args.seed), use_pseudo_labels=not args.no_pseudo),
        args.device,
        progress=console_progress("adapt"),
    )
    if result.activated:
        print(f"new active model {result.version} (parent {result.parent}); {result.gate.get('reason', '')}")
    else:
        print(
            f"model {result.version} published INACTIVE ({result.gate.get('reason', '')}); "
            f"{result.parent} stays active; to use it anyway: asfda model activate --version {result.version}"
        )
    print(f"pseudo-labelled cases: {len(result.pseudo_cases)}")
    print(
        "metrics: "
        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.metrics.items())
    )
    return 0
