"""Case ids become file names: only a safe, flat alphabet is allowed."""

import re

from asfda.core.errors import InvalidCaseId

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_case_id(case_id: str) -> str:
    if not isinstance(case_id, str) or not _CASE_ID.match(case_id) or ".." in case_id:
        raise InvalidCaseId(
            f"invalid case id {case_id!r}: use letters, digits, '.', '_' or '-' (no path separators, no '..')"
        )
    return case_id
