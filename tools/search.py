"""Okapi BM25 retrieval over a folder of local text and Markdown files.

Files are cut into passages: paragraphs (blank-line separated), a Markdown heading always
starting a new one, and long paragraphs split into windows of WINDOW_LINES lines. Each
passage keeps its file (relative to the folder) and 1-based starting line, so a model can
cite `file:line`. Tokens are lowercased runs of letters and digits.

Scoring is BM25 with k1=1.5, b=0.75 and the idf log(1 + (N - n + 0.5) / (n + 0.5)), the
variant that stays positive for terms in more than half the passages (the original goes
negative there and would push matching passages below non-matching ones).
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from reasoner.tools.base import Tool, ToolResult

TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
MAX_FILE_BYTES = 2_000_000
WINDOW_LINES = 15
SHOWN_CHARS = 800  # of each passage, in the tool's output
MAX_K = 10

_WORD = re.compile(r"[^\W_]+")  # letters and digits, in any script
_HEADING = re.compile(r"#{1,6}\s")


@dataclass(frozen=True)
class Passage:
    file: str
    line: int
    text: str
    score: float = 0.0


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def split_passages(text: str, window: int = WINDOW_LINES) -> list[tuple[int, str]]:
    """(1-based starting line, text) for each passage of a document."""
    passages: list[tuple[int, str]] = []
    block: list[str] = []
    start = 0

    def flush() -> None:
        for i in range(0, len(block), window):
            chunk = "\n".join(block[i : i + window]).strip()
            if chunk:
                passages.append((start + i + 1, chunk))
        block.clear()

    for number, line in enumerate(text.splitlines()):
        if not line.strip() or _HEADING.match(line):
            flush()
        if line.strip():
            if not block:
                start = number
            block.append(line)
    flush()
    return passages


def _read_text(path: Path, max_bytes: int) -> str | None:
    """The file's text, or None for files too large or not UTF-8 text."""
    if path.stat().st_size > max_bytes:
        return None
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class DocumentIndex:
    """An in-memory BM25 index of the text files under a folder."""

    def __init__(
        self,
        folder: str | Path,
        *,
        suffixes: tuple[str, ...] = TEXT_SUFFIXES,
        window: int = WINDOW_LINES,
        max_file_bytes: int = MAX_FILE_BYTES,
        k1: float = 1.5,
        b: float = 0.75,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"search folder not found (or not a folder): {self.folder}")
        self.k1, self.b = k1, b
        self.passages: list[Passage] = []
        self.skipped: list[str] = []  # binary, undecodable or oversized files, for diagnostics
        lengths: list[int] = []
        postings: dict[str, list[tuple[int, int]]] = {}  # term -> [(passage index, term count)]
        for path in sorted(self.folder.rglob("*")):
            relative = path.relative_to(self.folder)
            if any(part.startswith(".") for part in relative.parts):
                continue  # .git and friends
            if not path.is_file() or path.suffix.lower() not in suffixes:
                continue
            text = _read_text(path, max_file_bytes)
            if text is None:
                self.skipped.append(relative.as_posix())
                continue
            for line, chunk in split_passages(text, window):
                counts = Counter(tokenize(chunk))
                if not counts:
                    continue
                index = len(self.passages)
                self.passages.append(Passage(relative.as_posix(), line, chunk))
                lengths.append(sum(counts.values()))
                for term, count in counts.items():
                    postings.setdefault(term, []).append((index, count))
        self._postings = postings
        self._lengths = lengths
        self._average = sum(lengths) / len(lengths) if lengths else 0.0

    def __len__(self) -> int:
        return len(self.passages)

    def idf(self, term: str) -> float:
        n = len(self._postings.get(term, ()))
        total = len(self.passages)
        return math.log(1 + (total - n + 0.5) / (n + 0.5))

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The k best passages for the query, best first; only passages sharing a term with it."""
        scores: dict[int, float] = {}
        for term in set(tokenize(query)):
            idf = self.idf(term)
            for index, count in self._postings.get(term, ()):
                norm = self.k1 * (1 - self.b + self.b * self._lengths[index] / self._average)
                scores[index] = scores.get(index, 0.0) + idf * count * (self.k1 + 1) / (count + norm)
        # Ties go to the earlier passage (sorted file order, then line), so results are stable.
        best = heapq.nsmallest(max(k, 0), scores.items(), key=lambda item: (-item[1], item[0]))
        return [replace(self.passages[i], score=score) for i, score in best]


def format_passages(passages: list[Passage], query: str) -> str:
    if not passages:
        return f"no passage matches {query!r}"
    blocks = []
    for rank, passage in enumerate(passages, 1):
        text = passage.text if len(passage.text) <= SHOWN_CHARS else passage.text[:SHOWN_CHARS] + " [...]"
        blocks.append(f"[{rank}] {passage.file}:{passage.line} (score {passage.score:.2f})\n{text}")
    return "\n\n".join(blocks)


def make_search_tool(folder: str | Path, name: str = "search") -> Tool:
    """A `search` tool over the text files in `folder` (indexed now, once)."""
    index = DocumentIndex(folder)

    def search(query: str, k: int = 3) -> ToolResult:
        """Search the local documents; returns the best passages with their file:line."""
        hits = index.search(query, min(max(k, 1), MAX_K))
        return ToolResult(tool=name, ok=True, output=format_passages(hits, query), value=hits)

    return Tool(
        search,
        name,
        f"Search {len(index)} passages of local documents (BM25 keyword match); "
        "returns the best passages with file:line. Use specific words.",
    )
