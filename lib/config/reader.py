"""jobs.yaml's text → plain data, plus the line of every key, from one parse.

PyYAML composes the node graph (libyaml's C loader when present: ~10x faster on
10,000 jobs), `check_nodes` (lib/yaml_limits.py) walks it once — budgets, duplicate
keys, the line of each key — and the constructor builds the data from the same nodes.
So a line number always belongs to the value it is reported with.
"""

from __future__ import annotations

from typing import Any

import yaml

from lib.config.checks import shown
from lib.errors import ConfigError, ConfigIssue
from lib.yaml_limits import check_nodes

# Built by PyYAML's own constructor functions (on a bare ScalarNode), so `0o17`, `1_000`,
# `0x1F`, `.inf` or `2026-01-01` are read exactly as SafeLoader reads them.
_CONSTRUCTED_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def read_yaml(text: str, source: str = "jobs.yaml") -> tuple[Any, dict[str, int]]:
    """YAML data plus a map of dotted key path → 1-based line, for error messages.

    Refuses invalid YAML (with PyYAML's line), duplicate keys (naming both lines) and
    documents past the budgets of lib/yaml_limits.py (aliases expanding past MAX_NODES,
    nesting past MAX_DEPTH) before building any object.
    """
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return read_nodes(text, loader_cls, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([ConfigIssue("", f"invalid YAML: {problem}", line=line, file=source)]) from None


def read_nodes(text: str, loader_cls: type, source: str = "jobs.yaml") -> tuple[Any, dict[str, int]]:
    """What `read_yaml` returns, with the loader class given (tests run both parsers).

    The composed node graph (aliases are shared nodes, so it is small even for an alias
    bomb) goes through `check_nodes` before the constructor runs.
    """
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        lines = check_nodes(node, source) if node is not None else {}
        try:
            data = loader.construct_document(node) if node is not None else None
        except (ValueError, OverflowError, TypeError) as exc:
            # SafeConstructor lets int()/float()/datetime() errors through without a mark
            # (`2026-13-45`, `!!int abc`, 5,000 digits): find the scalar that raised it.
            raise ConfigError([_bad_scalar(node, exc, source)]) from None
    finally:
        loader.dispose()
    return data, lines


def _bad_scalar(root: yaml.Node, exc: Exception, source: str) -> ConfigIssue:
    """The issue for the first scalar the constructor cannot build, with its line."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            constructor = _CONSTRUCTOR.yaml_constructors.get(node.tag)
            if node.tag in _CONSTRUCTED_TAGS and constructor is not None:
                try:
                    constructor(_CONSTRUCTOR, node)
                except (ValueError, OverflowError, TypeError) as error:
                    line = node.start_mark.line + 1
                    return ConfigIssue(
                        "", f"invalid value {shown(node.value)}: {error}", line=line, file=source
                    )
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in reversed(node.value) for item in reversed(pair))
    return ConfigIssue("", f"invalid value: {exc}", file=source)
