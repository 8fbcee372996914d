"""YAML text a user sent (a spec file, an HTTP `spec` field, a `--set` value) -> plain data, bounded before it is built.

PyYAML builds an alias (`*a`) as a reference to the same object, so a 400-byte "billion laughs" document loads in
microseconds and explodes later, in whatever walks it (a depth check, pydantic, a deep copy): 10^9 values. The
composed node graph is walked first, counting every node as often as aliases repeat it, and a document that would
expand past MAX_NODES values, nest deeper than MAX_DEPTH, or refer to itself is refused before any object exists.
Duplicate keys are refused too (PyYAML silently keeps the last one).
"""

from __future__ import annotations

from typing import Any

import yaml

from zlt.core.errors import FieldError, SpecError

MAX_NODES = 100_000  # a spec is a few hundred values; a long prompt list a few thousand
MAX_DEPTH = 64  # a spec nests about five levels


class YamlTooLarge(yaml.YAMLError):
    """The document expands past the bounds above; `problem` says how."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


def check_expansion(root: yaml.Node, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Walk the node graph as the objects would be built (an alias counted each time it is used); stop at the
    first bound crossed, so the walk itself costs at most `max_nodes` steps."""
    seen = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise YamlTooLarge(f"the document expands to more than {max_nodes} values (aliases '*name' repeat what "
                               "they refer to)", node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            continue
        if depth > max_depth:  # also a document that contains itself (`&a [*a]`): it never ends
            raise YamlTooLarge(f"nested deeper than {max_depth} levels", node.start_mark)
        children = node.value if isinstance(node, yaml.SequenceNode) else [c for kv in node.value for c in kv]
        stack.extend((child, depth + 1) for child in children)


class BoundedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml's safe loader (the C one when there is one) that checks the expansion before building, and refuses
    duplicate keys."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        check_expansion(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class names the problem
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """YAML text -> data; raises yaml.YAMLError (YamlTooLarge for a document over the bounds)."""
    return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_problem(e: yaml.YAMLError) -> str:
    """'invalid YAML at line 3 column 5: <what>' for any YAML error."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
    return f"invalid YAML{where}: {getattr(e, 'problem', None) or e}"


def parse_yaml(text: str, source: str, field: str = "") -> Any:
    """YAML text a user sent -> data, or one SpecError naming `field` (the HTTP form field, '' for a file)."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        hint = "use fewer aliases ('*name')" if isinstance(e, YamlTooLarge) else "check indentation and quoting"
        raise SpecError([FieldError(field, yaml_problem(e), hint)], source) from None
    except RecursionError:  # the pure-Python composer on a document nested thousands deep
        raise SpecError([FieldError(field, f"invalid YAML: nested deeper than {MAX_DEPTH} levels")], source) from None
