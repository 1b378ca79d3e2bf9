"""How the module names a model version in its version list: the version, whether it is active, and the
validation gate's verdict when it judged the version worse or a rollback kept it inactive."""


def versionLabel(model):
    """One short combo-box label from a GET /models entry, e.g. "v0003 (active; gate: worse, advisory)"."""
    notes = []
    if model.get("active"):
        notes.append("active")
    summary = model.get("gate_summary") or ""
    if summary.startswith("worse"):  # a "not worse" verdict is the normal case: no need to say it
        notes.append(f"gate: {summary}")
    if model.get("not_activated"):
        notes.append("not activated: active version changed")
    return model["version"] + (f" ({'; '.join(notes)})" if notes else "")
