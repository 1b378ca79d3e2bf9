"""The `$` expressions a bundle may use without running code: literals, references, arithmetic, comparisons,
`a if c else b` and a few pure built-ins on plain values (e.g. the Model Zoo's
`"$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]"` and `"$len(@spatial_size)"`).

They are interpreted here node by node over plain values; Python's eval never sees them. Anything else (a call,
an attribute, an import, a comprehension, a lambda) is refused, and only --trust-bundle-code lets MONAI run it.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any, Callable, Dict

_REFERENCE = re.compile(r"@((?:#|::)*\w+(?:(?:#|::)\w+)*)")
_BINARY: Dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: Dict[type, Callable[[Any], Any]] = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE: Dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
# Built-ins that compute a plain value from plain values and call nothing back.
_FUNCTIONS: Dict[str, Callable[..., Any]] = {f.__name__: f for f in (len, min, max, abs, round, int, float, bool, str)}
_MAX_LENGTH = 10_000  # a repeated list or string longer than this is a memory bomb, not a setting


class NotALiteral(ValueError):
    """The expression needs Python to run; the message names the construct."""


def evaluate_literal(expression: str, reference: Callable[[str], Any]) -> Any:
    """Value of `expression` (without its `$`); `reference(id)` gives the plain value an `@id` stands for."""
    names: Dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        name = f"__asfda_ref_{len(names)}"
        names[name] = match.group(1)
        return name

    try:
        tree = ast.parse(_REFERENCE.sub(placeholder, expression).strip(), mode="eval")
    except SyntaxError as exc:
        raise NotALiteral(f"not a Python expression ({exc.msg})") from None
    return _Interpreter(names, reference).value(tree.body)


class _Interpreter:
    def __init__(self, names: Dict[str, str], reference: Callable[[str], Any]):
        self.names = names
        self.reference = reference

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(item) for item in node.elts]
        if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Name) and node.id in self.names:
            return self.reference(self.names[node.id])
        if isinstance(node, ast.IfExp):
            return self.value(node.body) if self.value(node.test) else self.value(node.orelse)
        if isinstance(node, ast.BoolOp):
            return self._bool(node)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.value(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self._binary(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
                raise NotALiteral(f"keyword or starred arguments to {node.func.id}() would run Python code")
            function, args = _FUNCTIONS[node.func.id], [self.value(arg) for arg in node.args]
            return self._checked(lambda: function(*args))
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
            container, index = self.value(node.value), self.value(node.slice)  # a refusal inside stays as it is
            return self._checked(lambda: container[index])
        raise NotALiteral(f"{_construct(node)} would run Python code")

    def _bool(self, node: ast.BoolOp) -> Any:
        result = self.value(node.values[0])
        for item in node.values[1:]:
            if isinstance(node.op, ast.And) and not result or isinstance(node.op, ast.Or) and result:
                return result
            result = self.value(item)
        return result

    def _binary(self, node: ast.BinOp) -> Any:
        left, right = self.value(node.left), self.value(node.right)
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, (str, list)) and isinstance(count, int) and len(sequence) * count > _MAX_LENGTH:
                raise NotALiteral(f"a repeat to more than {_MAX_LENGTH} items")
        return self._checked(lambda: _BINARY[type(node.op)](left, right))

    def _compare(self, node: ast.Compare) -> bool:
        left = self.value(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                raise NotALiteral(f"{_construct(op)} would run Python code")
            right = self.value(comparator)
            if not self._checked(lambda left=left, right=right, op=op: _COMPARE[type(op)](left, right)):
                return False
            left = right
        return True

    @staticmethod
    def _checked(compute: Callable[[], Any]) -> Any:
        try:
            return compute()
        except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
            raise NotALiteral(f"cannot be computed ({type(exc).__name__}: {exc})") from None


def _construct(node: ast.AST) -> str:
    described = {
        ast.Call: "a call",
        ast.Attribute: "an attribute",
        ast.Name: "a Python name",
        ast.Lambda: "a lambda",
        ast.ListComp: "a comprehension",
        ast.Is: "an identity test",
    }
    return next((text for kind, text in described.items() if isinstance(node, kind)), type(node).__name__)
