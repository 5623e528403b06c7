"""Two tries over dot-separated names, so that routing costs follow the matches.

The routing table (``_routing.RoutingTable``) asks two questions whose naive answers
cost as much as the whole bus: *which patterns match this topic?* (each pattern tested:
O(patterns) per route built) and *which known topics does this pattern match?* (each
topic tested: O(topics) per subscription change). A trie keyed by segment answers
each by walking only the branches that can match:

- :class:`PatternTrie` holds subscription patterns (``*`` and ``#`` are segments like
  any other) with their entries; ``match(words)`` visits, per word, the literal child,
  the ``*`` child and the ``#`` child of each node reached, so its cost grows with the
  patterns that share the topic's prefixes, not with all patterns.
- :class:`TopicTrie` holds topic names; ``matching(segments)`` walks a pattern down it:
  a literal segment follows one child, ``*`` every child, ``#`` the whole subtree
  below (which is what it matches).

Visited states ``(node, position)`` are remembered, so a pattern with several ``#``
never walks the same branch twice. Both are sans-IO, with no notion of private topics
(``_routing`` applies that rule). Empty branches are pruned on removal, so churn does
not grow them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

__all__ = ["PatternNode", "PatternTrie", "TopicTrie"]

T = TypeVar("T")


class PatternNode(Generic[T]):
    """A pattern prefix; ``entries`` are the patterns ending here: seq -> target, in
    the order they were added (seqs only grow, and a dict keeps insertion order)."""

    __slots__ = ("children", "entries", "key", "parent")

    def __init__(self, parent: PatternNode[T] | None, key: str) -> None:
        self.parent = parent
        self.key = key
        self.children: dict[str, PatternNode[T]] = {}
        self.entries: dict[int, T] = {}


class PatternTrie(Generic[T]):
    """Subscription patterns by segment, each pattern's entries kept at its last node."""

    def __init__(self) -> None:
        self.root: PatternNode[T] = PatternNode(None, "")

    def node(self, segments: Sequence[str]) -> PatternNode[T]:
        """The node of the pattern *segments*, made if missing."""
        node = self.root
        for seg in segments:
            child = node.children.get(seg)
            if child is None:
                child = node.children[seg] = PatternNode(node, seg)
            node = child
        return node

    def prune(self, node: PatternNode[T]) -> None:
        """Drop *node* and its ancestors while they hold no entry and no child."""
        while node.parent is not None and not node.entries and not node.children:
            del node.parent.children[node.key]
            node = node.parent

    def match(self, words: Sequence[str], literal: int = 0) -> list[PatternNode[T]]:
        """The nodes holding entries whose pattern matches the topic *words*. The first
        *literal* words must be matched by literal segments (no wildcard)."""
        start = self.root
        for word in words[:literal]:
            child = start.children.get(word)
            if child is None:
                return []
            start = child
        n = len(words)
        found: dict[int, PatternNode[T]] = {}
        seen: set[tuple[int, int]] = set()
        stack = [(start, literal)]
        while stack:
            node, i = stack.pop()
            state = (id(node), i)
            if state in seen:
                continue
            seen.add(state)
            children = node.children
            if not children:
                if i == n and node.entries:
                    found[id(node)] = node
                continue
            rest = children.get("#")
            if rest is not None:  # '#' takes words[i:j] for every j from i to n
                stack.extend((rest, j) for j in range(i, n + 1))
            if i == n:
                if node.entries:
                    found[id(node)] = node
                continue
            child = children.get(words[i])
            if child is not None:
                stack.append((child, i + 1))
            child = children.get("*")
            if child is not None:
                stack.append((child, i + 1))
        return list(found.values())


class _TopicNode:
    __slots__ = ("children", "name")

    def __init__(self) -> None:
        self.children: dict[str, _TopicNode] | None = None  # made with the first child
        self.name: str | None = None  # the topic whose last segment this is, if any


class TopicTrie:
    """A set of topic names by segment, that finds the names a pattern matches."""

    def __init__(self) -> None:
        self._root = _TopicNode()
        self._size = 0

    def add(self, name: str) -> None:
        node = self._root
        for seg in name.split("."):
            children = node.children
            if children is None:
                children = node.children = {}
            child = children.get(seg)
            if child is None:
                child = children[seg] = _TopicNode()
            node = child
        if node.name is None:
            node.name = name
            self._size += 1

    def discard(self, name: str) -> None:
        path: list[tuple[_TopicNode, str]] = []  # (parent, segment) down to the name
        node = self._root
        for seg in name.split("."):
            child = node.children.get(seg) if node.children else None
            if child is None:
                return
            path.append((node, seg))
            node = child
        if node.name is None:
            return
        node.name = None
        self._size -= 1
        for parent, seg in reversed(path):  # prune the branch it leaves empty
            if node.name is not None or node.children:
                break
            assert parent.children is not None
            del parent.children[seg]
            if not parent.children:
                parent.children = None
            node = parent

    def __len__(self) -> int:
        return self._size

    def matching(self, segments: Sequence[str]) -> Iterator[str]:
        """The names the pattern *segments* matches (wildcards as in ``_routing``,
        private topics not excluded), each once."""
        n = len(segments)
        seen: set[tuple[int, int]] = set()
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            state = (id(node), i)
            if state in seen:
                continue
            seen.add(state)
            if i == n:
                if node.name is not None:
                    yield node.name
                continue
            children = node.children
            seg = segments[i]
            if seg == "#":
                stack.append((node, i + 1))  # no word
                if children:
                    stack.extend((child, i) for child in children.values())  # one more
            elif children:
                if seg == "*":
                    stack.extend((child, i + 1) for child in children.values())
                else:
                    child = children.get(seg)
                    if child is not None:
                        stack.append((child, i + 1))
