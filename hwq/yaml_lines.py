"""YAML loading that keeps the line of every key and reports duplicate keys (all of them)."""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[str | int, ...]


def load_with_lines(text: str, source: str) -> tuple[Any, dict[Path_, int], list[str]]:
    """(data, {key path: line}, problems). A syntax error is one problem with its line."""
    lines: dict[Path_, int] = {}
    problems: list[str] = []
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problems.append(f"{source}:{line}: YAML syntax error: {exc.problem or exc}")
        return None, lines, problems
    finally:
        loader.dispose()
    if node is None:
        return {}, lines, problems

    def build(n: yaml.Node, path: Path_) -> Any:
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    dotted = ".".join(map(str, path)) or "(top level)"
                    problems.append(
                        f"{source}:{line}: {dotted}: expected text keys, found the key "
                        f"{key!r} ({type(key).__name__}; quote it)"
                    )
                    continue
                if key in out:
                    dotted = ".".join(map(str, (*path, key)))
                    first = lines.get((*path, key), "?")
                    problems.append(
                        f"{source}:{line}: {dotted}: expected each key once, found a duplicate "
                        f"(first at line {first})"
                    )
                    continue
                lines[(*path, key)] = line
                out[key] = build(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            items = []
            for i, item in enumerate(n.value):
                lines[(*path, i)] = item.start_mark.line + 1
                items.append(build(item, (*path, i)))
            return items
        return loader.construct_object(n, deep=True)

    return build(node, ()), lines, problems
