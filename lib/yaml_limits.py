"""What a jobs.yaml may be made of, checked before any Python object is built from it.

A YAML alias is a reference to a node met earlier, so nine lines of nested aliases (the
"billion laughs") describe ~10^9 nodes while PyYAML builds only a handful of shared
objects: the cost comes later, in whatever walks the data as a tree (line indexing,
validation, error messages). `check_nodes` counts the tree the node graph *stands for*
in one pass over the distinct nodes, and refuses it past `MAX_NODES`; it also refuses
aliases that contain themselves, nesting past `MAX_DEPTH` (Python recursion in the
readers and the constructor) and duplicate keys, each with its line. `read_text` refuses
files past `MAX_BYTES` before reading them whole, and names the line and column of the
first byte that is not UTF-8.

Every refusal is a `ConfigIssue`, so the CLI exits 2 and the daemon keeps its last good
config on SIGHUP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lib.errors import ConfigError, ConfigIssue

# 8 MiB: the 10,000-job bench file is ~2 MB, so this leaves room for ~40,000 jobs and
# still refuses /dev/zero or a log file passed by mistake before it is read whole.
MAX_BYTES = 8 * 1024 * 1024
# Nodes of the tree the document stands for, aliases expanded. The 10,000-job bench file
# has ~140,000; a billion-laughs document ~10^9.
MAX_NODES = 2_000_000
# Nested collections. jobs.yaml needs 5 (jobs → job → commands → entry → key); libyaml
# stops at 1000 on its own, past what Python's recursion limit lets the readers reach.
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"


def budget_issue(source: str, what: str, line: int | None = None, budget: str = "alias/size") -> ConfigError:
    """The error for a document past one of the budgets: one located line, exit 2."""
    return ConfigError([ConfigIssue("", f"{what}: {budget} budget exceeded", line=line, file=source)])


def read_text(path: Path) -> str:
    """The file's text; a file past `MAX_BYTES` or not UTF-8 raises a located ConfigError.

    Reads at most MAX_BYTES + 1 bytes, so a huge or endless file (a FIFO, /dev/zero) is
    refused without being read whole. FileNotFoundError and other OSErrors propagate.
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise budget_issue(str(path), f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = utf8_position(data, exc.start)
        raise ConfigError(
            [
                ConfigIssue(
                    "",
                    f"not valid UTF-8 (byte 0x{data[exc.start]:02x}): save the file as UTF-8",
                    line=line,
                    column=column,
                    file=str(path),
                )
            ]
        ) from None


def utf8_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of byte `offset`; the column counts the characters before it."""
    start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    # The bytes before the bad one on its line are valid UTF-8 (the decoder stopped at the
    # first bad byte), so they decode to the characters an editor counts.
    return line, len(data[start:offset].decode("utf-8")) + 1


def check_nodes(root: yaml.Node, source: str) -> dict[str, int]:
    """Refuse a node graph past the budgets or with duplicate keys; return its key lines.

    The lines map: dotted key path → 1-based line, in document order; of two keys with
    one path (`2:` and `'2':`, which the dict keeps apart) the later, which is the one a
    message about the pair names. A node met again through an alias gets the line of
    the place that uses it, but is not walked again: an alias used a million times costs a million
    visits of one node, not a million copies of its tree.
    Raises ConfigError: past MAX_NODES expanded nodes or MAX_DEPTH levels, an alias that
    contains itself ("alias/size budget exceeded"), or every duplicate key with both lines.
    """
    sizes: dict[int, int] = {}  # id(node) → nodes in its expanded tree, once known
    open_nodes: set[int] = set()  # on the current path: met again, it contains itself
    lines: dict[str, int] = {}
    duplicates: list[ConfigIssue] = []
    # An explicit stack, not recursion: the document decides how deep this goes. Entries:
    # (node, its path or None for a key node, the line for that path, depth, children
    # still to add up — None on the way down, the list on the way back up).
    stack: list[tuple[Any, str | None, int, int, list[Any] | None]] = [(root, None, 0, 1, None)]
    while stack:
        node, path, line, depth, children = stack.pop()
        key = id(node)
        if children is not None:  # on the way back up: every child is sized
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > MAX_NODES:
                what = f"aliases expand to more than {MAX_NODES:_} nodes".replace("_", " ")
                raise budget_issue(source, what, _line(node))
            sizes[key] = total
            continue
        if path is not None:  # the root and key nodes have no path; '' is a key's
            lines[path] = line
        if key in sizes:
            continue
        if key in open_nodes:
            raise budget_issue(source, "an alias refers to a node that contains it", _line(node))
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        if depth > MAX_DEPTH:
            raise budget_issue(source, f"nesting deeper than {MAX_DEPTH} levels", _line(node), "nesting")
        open_nodes.add(key)
        entries = _children(node, path or "", duplicates, source)
        stack.append((node, path, line, depth, [child for child, _, _ in entries]))
        stack.extend((child, p, n, depth + 1, None) for child, p, n in reversed(entries))
    if duplicates:  # found parents first; reported in file order
        raise ConfigError(sorted(duplicates, key=lambda issue: issue.line or 0))
    return lines


def _children(
    node: Any, path: str, duplicates: list[ConfigIssue], source: str
) -> list[tuple[Any, str | None, int]]:
    """A collection's child nodes, each with its path and line; records duplicate keys."""
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{path}[{i}]", item.start_mark.line + 1) for i, item in enumerate(node.value)]
    children: list[tuple[Any, str | None, int]] = []
    seen: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        child_path = f"{path}.{key_node.value}" if path else str(key_node.value)
        line = key_node.start_mark.line + 1
        # Keys compare as the composer resolved them: `1` and `'1'` differ, as in the dict.
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
            name = (key_node.tag, key_node.value)
            if name in seen:
                duplicates.append(duplicate_key(child_path, seen[name], line, source))
            else:
                seen[name] = line
        children.append((key_node, None, line))  # a key counts, and may be a collection
        children.append((value_node, child_path, line))
    return children


def duplicate_key(path: str, first: int, again: int, source: str | None) -> ConfigIssue:
    """Two keys of one mapping with the same name: PyYAML would keep the last silently."""
    name = path.rsplit(".", 1)[-1] if "." in path else path
    return ConfigIssue(
        path,
        f"duplicate key {name!r}, first at line {first}: the second would silently replace the first; "
        "keep one",
        line=again,
        file=source,
    )


def _line(node: Any) -> int:
    return node.start_mark.line + 1
