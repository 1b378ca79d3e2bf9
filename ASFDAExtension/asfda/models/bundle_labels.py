"""Label names of a bundle from its metadata: the output's `channel_def` or `label_def` (the Model Zoo uses
both; some bundles write `label_def` as name -> value), background first; label_N only where neither names one."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from asfda.models.bundle_safety import UnsupportedBundle


def _by_value(definition: Any, where: str) -> Dict[int, str]:
    """{value: name} from {"1": "liver"} or {"liver": 1}; anything else is refused naming the key."""
    if definition is None:
        return {}
    if not isinstance(definition, dict):
        raise UnsupportedBundle(f"metadata {where} is not a mapping of label values to names")
    out: Dict[int, str] = {}
    for key, value in definition.items():
        if str(key).strip().lstrip("-").isdigit():
            out[int(key)] = str(value)
        elif isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            out[int(value)] = str(key)
        else:
            raise UnsupportedBundle(f"metadata {where} entry {key!r}: {value!r} pairs no label value with a name")
    return out


def bundle_labels(output: Dict[str, Any], metadata: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, int], str]:
    """({name: value}, where the names come from) for one output of network_data_format."""
    defs = {
        "label_def": _by_value(output.get("label_def", (metadata or {}).get("label_def")), "label_def"),
        "channel_def": _by_value(output.get("channel_def"), "channel_def"),
    }
    channels = int(output.get("num_channels", 0))
    if channels < 2:
        named = max((len(d) for d in defs.values()), default=0)
        hint = (
            f" (metadata names {named} labels: the network writes a label map itself, e.g. from prompts)"
            if named > 1
            else ""
        )
        raise UnsupportedBundle(
            f"the bundle's output has {channels} channel(s){hint}; asfda needs one softmax channel per label, "
            "background included"
        )
    # label_def names the classes; channel_def may only say "background"/"foreground" or be absent.
    names = {**defs["channel_def"], **defs["label_def"]}
    outside = sorted(v for v in names if not 0 <= v < channels)
    if outside:
        raise UnsupportedBundle(
            f"metadata names label value(s) {outside} but the output has {channels} channels (0..{channels - 1})"
        )
    labels: Dict[str, int] = {}
    for value in range(channels):
        name = names.get(value, "background" if value == 0 else f"label_{value}")
        labels[name if name not in labels else f"{name}_{value}"] = value
    sources = [key for key, found in defs.items() if found]
    unnamed = sum(1 for value in range(1, channels) if value not in names)
    source = " and ".join(sources) or "no label names in metadata"
    if unnamed and sources:
        source += f", {unnamed} unnamed (label_N)"
    return labels, source
