"""`asfda model import|list|activate|export`: model versions of a datastore."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asfda.cli.common import add_command, add_datastore, add_json, print_json, writes_datastore

SCHEMA_NOTE = "model.json keys and an example per network: docs/model-config.md (schema: asfda/schemas/)."


def add_parser(subparsers) -> None:
    model = add_command(subparsers, "model", "model versions: import, list, activate, export")
    sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = add_command(
        sub,
        "import",
        "import a model (config + weights, or an exported folder) as a new active version",
        "Build the network from model.json, load the weights (state dict, checkpoint dict or Swin SSL encoder) "
        "and publish them as a new active version. Prints the effective config with every default filled in. "
        + SCHEMA_NOTE,
    )
    add_datastore(p, device=False)
    p.add_argument("--config", type=Path, help="model config JSON (model.json)")
    p.add_argument(
        "--weights",
        type=Path,
        help="weights file; without it the network is freshly initialised. With --bundle: which of the bundle's "
        "weights files (relative to the bundle folder, e.g. models/model_lowres.pt) instead of the one its "
        "config names",
    )
    p.add_argument("--from", dest="from_dir", type=Path, help="a folder written by `asfda model export`")
    p.add_argument("--strict", action="store_true", help="refuse configs that leave out result-changing keys")
    p.add_argument("--bundle", type=Path, help="a MONAI bundle folder instead of --config/--weights")
    p.add_argument(
        "--nnunet",
        type=Path,
        help="an nnU-Net v2 trained-model folder (dataset.json, plans.json, fold_*/checkpoint_*.pth) instead of "
        "--config/--weights; needs the nnunet install (scripts/setup.sh nnunet)",
    )
    p.add_argument("--fold", default="all", help="with --nnunet: one fold (0, 1, ...) or 'all' (logits averaged)")
    p.add_argument(
        "--checkpoint", choices=["final", "best"], default="final", help="with --nnunet: checkpoint_final or _best"
    )
    p.add_argument("--reference", type=Path, help="folder of a few source-like volumes: DKD reference statistics (CPU)")
    p.add_argument(
        "--trust-bundle-code",
        action="store_true",
        help="let MONAI evaluate the bundle's expressions and classes outside monai/torch.nn (runs the bundle's "
        "code, at every load); only for a bundle whose author you trust. Recorded in the version's metadata",
    )
    p.set_defaults(func=writes_datastore("asfda model import", run_import))

    p = add_command(sub, "list", "list model versions (* marks the active one)")
    add_datastore(p, device=False)
    add_json(p, "the versions")
    p.set_defaults(func=run_list)

    p = add_command(sub, "activate", "make an earlier (or later) version the active one: rollback")
    add_datastore(p, device=False)
    p.add_argument("--version", required=True, help="version to activate, e.g. v0001")
    p.set_defaults(func=writes_datastore("asfda model activate", run_activate))

    p = add_command(
        sub,
        "export",
        "write a version's config, weights and provenance to a folder",
        "Write model.json, weights.pt, feature_prior.npz (when present) and provenance.json to --out. "
        "`asfda model import --from OUT` takes the folder back unchanged; model.json + weights.pt also work "
        "with --config/--weights.",
    )
    add_datastore(p, device=False)
    p.add_argument("--version", help="version to export (default: the active one)")
    p.add_argument("--out", type=Path, required=True, help="new or empty folder")
    p.set_defaults(func=run_export)


def _store(args, create: bool = False):
    from asfda.data.datastore import Datastore

    return Datastore(args.datastore, create=create)


def run_import(args) -> int:
    from asfda.core.errors import AsfdaError
    from asfda.models.config_checks import check_config_dict, read_config_dict
    from asfda.models.export import CONFIG_FILE, import_export_folder

    if args.nnunet:  # docs/bring-your-model.md
        from asfda.data.nnunet_import import import_nnunet

        if args.from_dir or args.config or args.bundle or args.weights:
            raise AsfdaError("give either --nnunet [--fold] [--checkpoint] or --bundle or --config/--weights or --from")
        result = import_nnunet(args.datastore, args.nnunet, args.fold, args.checkpoint, args.reference)
        print(result.summary())
        return 0
    if args.bundle:  # docs/bring-your-model.md
        from asfda.data.model_import import import_bundle

        if args.from_dir or args.config:
            raise AsfdaError("give either --bundle [--weights] or --config/--weights or --from")
        result = import_bundle(
            args.datastore, args.bundle, args.reference, trust_code=args.trust_bundle_code, weights=args.weights
        )
        print(result.summary())
        return 0
    if args.from_dir and (args.config or args.weights):
        raise AsfdaError("give either --from or --config/--weights")
    if args.from_dir and args.reference:
        raise AsfdaError("--reference goes with --config or --bundle (an exported folder keeps its own)")
    config_path = args.from_dir / CONFIG_FILE if args.from_dir else args.config
    if config_path is None:
        raise AsfdaError("model import needs --config (or --from an exported folder)")
    config, warnings = check_config_dict(read_config_dict(config_path), config_path.parent, args.trust_bundle_code)
    for warning in warnings:
        print(f"asfda model import: warning: {config_path.name}: {warning}", file=sys.stderr)
    if warnings and args.strict:
        raise AsfdaError(f"{config_path.name}: {len(warnings)} result-changing key(s) missing (see warnings)")
    reference = None
    if args.from_dir:
        version, report = import_export_folder(_store(args, create=True).models, args.from_dir, config)
    else:
        from asfda.data.model_import import reference_for
        from asfda.models.networks import build_network
        from asfda.models.weights import load_weights

        network = build_network(config)
        report = load_weights(network, args.weights) if args.weights else None
        reference = reference_for(network, config, args.reference)
        note = f"imported ({report.summary() if report else 'fresh weights'})"
        version = _store(args, create=True).models.publish(
            network, config, parent=None, note=note, reference_stats=reference
        )
    print(f"imported {version}: {report.summary() if report else 'no weights given, freshly initialised'}")
    if reference is not None:
        from asfda.data.model_import import reference_line

        print(reference_line(reference))
    print("effective config:")
    print(json.dumps(config.to_dict(), indent=2))
    return 0


def run_list(args) -> int:
    store = _store(args)
    active = store.models.active_version()
    versions = store.models.versions()
    if args.json:
        rows = [{**v.__dict__, "gate_summary": v.gate_summary(), "active": v.version == active} for v in versions]
        print_json(rows)
        return 0
    for v in versions:
        gate = f"  gate: {v.gate_summary()}" if v.gate_summary() else ""
        print(f"{'*' if v.version == active else ' '} {v.version}  parent={v.parent}  {v.created}{gate}  {v.note}")
    return 0


def run_activate(args) -> int:
    _store(args).models.activate(args.version)
    print(f"active model: {args.version}")
    return 0


def run_export(args) -> int:
    from asfda.core.errors import ModelNotFound
    from asfda.models.export import export_version

    store = _store(args)
    version = args.version or store.models.active_version()
    if version is None:
        raise ModelNotFound(f"no active model in {store.models.root}; name one with --version")
    out = export_version(store.models, version, args.out)
    print(f"exported {version} to {out}")
    return 0
