#!/usr/bin/env python3
"""Checks that the code keeps the layering the README draws.

The README's "Modules" table is the source of truth: its "links" column names
each library package's direct dependencies among the repository's packages
(loop <- futures <- sync, queues, ... ). From it this tool derives which
packages each one may use (the transitive closure) and fails when

  * a file includes another package's internal/ header (tests and fuzz
    targets included: they live beside the code of their own package);
  * a library's source includes a header of a package it may not use;
  * a BUILD dependency of a non-test cc_library runs against the graph
    (a package depending on one above it, or on one the table does not list).

Run it from the workspace root: `./dev layering` (CI does). BUILD edges come
from `bazel query`; `--no-bazel` checks the includes only. `--self-test`
runs the checker's own tests.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import unittest

SOURCE_SUFFIXES = (".h", ".cc")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
TABLE_ROW_RE = re.compile(r"^\|\s*`//([a-z_]*)(?::[a-z_]+)?`\s*\|(.*)\|\s*$")
LABEL_RE = re.compile(r"`//([a-z_]+)`")


def read_allowed_graph(readme_text):
    """Maps each package of the README's Modules table to its direct deps."""
    graph = {}
    in_modules = False
    for line in readme_text.splitlines():
        if line.startswith("## "):
            in_modules = line.strip() == "## Modules"
            continue
        if not in_modules:
            continue
        match = TABLE_ROW_RE.match(line)
        if not match:
            continue
        package = match.group(1) or ""  # "" is the root package, //:asyncio
        links = match.group(2).split("|")[-1]
        if "all of the above" in links:
            graph[package] = set(graph)
        else:
            graph[package] = set(LABEL_RE.findall(links))
    if not graph:
        raise ValueError("no Modules table found in the README")
    return graph


def closure(graph):
    """Every package each package may use, itself included."""
    reach = {}

    def visit(package, trail):
        if package in reach:
            return reach[package]
        if package in trail:
            raise ValueError("the README's graph has a cycle: " + " -> ".join(trail + [package]))
        result = {package}
        for dep in graph.get(package, ()):
            result |= visit(dep, trail + [package])
        reach[package] = result
        return result

    for package in graph:
        visit(package, [])
    return reach


def package_of(path):
    """The layered package a repository path belongs to (its top directory)."""
    parts = path.split("/")
    return parts[0] if len(parts) > 1 else ""


def is_test_code(path):
    name = os.path.basename(path)
    return (name.endswith("_test.cc") or name.endswith("_bench.cc") or "/fuzz/" in path
            or "/testing/" in path or "/bench/" in path)


def check_includes(sources, reach, repo_packages):
    """sources: {path: text}. Returns a list of violation messages."""
    problems = []
    for path, text in sorted(sources.items()):
        own = package_of(path)
        for included in INCLUDE_RE.findall(text):
            target = package_of(included)
            if target not in repo_packages:
                continue  # a system or third-party header
            if "/internal/" in "/" + included and target != own:
                problems.append("%s includes %s: another package's internal/ header" % (path, included))
                continue
            if own in reach and not is_test_code(path) and target not in reach[own]:
                problems.append("%s includes %s: //%s may not use //%s (README, Modules)" %
                                (path, included, own, target))
    return problems


def check_edges(edges, reach):
    """edges: (from_label, to_label) pairs of non-test libraries."""
    problems = []
    for source, target in sorted(edges):
        if not source.startswith("//") or not target.startswith("//"):
            continue
        own = source[2:].split(":")[0].split("/")[0]
        other = target[2:].split(":")[0].split("/")[0]
        if own == other or own not in reach or other == "third_party":
            continue
        if other not in reach[own]:
            problems.append("%s depends on %s: //%s may not use //%s (README, Modules)" %
                            (source, target, own or ":asyncio", other))
    return problems


def library_edges():
    """Direct dependency edges of every non-test cc_library, from bazel query."""
    # The graph of deps(libs, 1) holds each library's edges to its direct
    # deps (and edges among those deps, which are library edges too).
    output = subprocess.run(
        ["bazel", "query", "--noshow_progress", "--output=graph", "--nograph:factored",
         'let libs = kind("cc_library", //...) except attr("testonly", 1, //...) in deps($libs, 1)'],
        check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    edges = set()
    for line in output.splitlines():
        match = re.match(r'\s*"([^"]+)"\s*->\s*"([^"]+)"', line)
        if match:
            edges.add((match.group(1), match.group(2)))
    return edges


def repository_sources(root):
    sources = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith((".", "bazel-"))]
        for name in files:
            if name.endswith(SOURCE_SUFFIXES):
                path = os.path.relpath(os.path.join(directory, name), root)
                with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                    sources[path] = f.read()
    return sources


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=".")
    parser.add_argument("--no-bazel", action="store_true", help="check includes only")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        result = unittest.main(argv=[sys.argv[0]], exit=False, verbosity=1).result
        return 0 if result.wasSuccessful() else 1
    with open(os.path.join(args.root, "README.md"), encoding="utf-8") as f:
        graph = read_allowed_graph(f.read())
    reach = closure(graph)
    repo_packages = {p for p in os.listdir(args.root) if os.path.isfile(os.path.join(args.root, p, "BUILD"))}
    problems = check_includes(repository_sources(args.root), reach, repo_packages)
    if not args.no_bazel:
        problems += check_edges(library_edges(), reach)
    for problem in problems:
        print("layering: " + problem)
    if problems:
        print("layering: %d violation(s)" % len(problems))
        return 1
    print("layering: %d packages, graph from the README holds" % len(graph))
    return 0


README_SAMPLE = """
## Modules

| target | facade header | what it holds | links |
|---|---|---|---|
| `//loop` | `loop/loop.h` | the loop | Abseil, libc |
| `//futures` | `futures/futures.h` | `Coro<T>` | `//loop` |
| `//transports` | `transports/transports.h` | `Transport` | `//futures` |
| `//tls` | `tls/tls.h` | `tls::Context` | `//transports`, OpenSSL |
| `//:asyncio` | `asyncio.h` | all | all of the above |

## Layout
| `//examples` | not a module | | `//tls` |
"""


class CheckLayeringTest(unittest.TestCase):

    def setUp(self):
        self.reach = closure(read_allowed_graph(README_SAMPLE))
        self.packages = {"loop", "futures", "transports", "tls", "examples"}

    def test_graph_is_read_from_the_modules_table_only(self):
        graph = read_allowed_graph(README_SAMPLE)
        self.assertEqual(graph["tls"], {"transports"})
        self.assertEqual(graph["loop"], set())
        self.assertNotIn("examples", graph)
        self.assertEqual(self.reach["tls"], {"tls", "transports", "futures", "loop"})
        self.assertEqual(graph[""], {"loop", "futures", "transports", "tls"})

    def test_a_cycle_is_refused(self):
        with self.assertRaises(ValueError):
            closure({"a": {"b"}, "b": {"a"}})

    def test_including_a_lower_package_is_fine(self):
        sources = {"tls/tls.cc": '#include "transports/transports.h"\n#include <vector>\n'}
        self.assertEqual(check_includes(sources, self.reach, self.packages), [])

    def test_including_a_higher_package_is_reported(self):
        sources = {"transports/transports.h": '#include "tls/context.h"\n'}
        problems = check_includes(sources, self.reach, self.packages)
        self.assertEqual(len(problems), 1)
        self.assertIn("//transports may not use //tls", problems[0])

    def test_another_packages_internal_header_is_reported_even_from_tests(self):
        sources = {
            "tls/tls_test.cc": '#include "transports/internal/socket_transport.h"\n',
            "transports/server.cc": '#include "transports/internal/server_state.h"\n',
        }
        problems = check_includes(sources, self.reach, self.packages)
        self.assertEqual(len(problems), 1)
        self.assertIn("tls/tls_test.cc", problems[0])

    def test_tests_may_use_higher_packages(self):
        sources = {"transports/transports_test.cc": '#include "tls/tls.h"\n'}
        self.assertEqual(check_includes(sources, self.reach, self.packages), [])

    def test_build_edges_against_the_graph(self):
        edges = {
            ("//tls:tls", "//transports:transports"),
            ("//transports:transports", "//tls:context"),
            ("//transports:transports", "@com_google_absl//absl/status"),
            ("//futures:futures", "//third_party/sanitizers:absl_tsan"),
            ("//examples:tour", "//tls:tls"),
        }
        problems = check_edges(edges, self.reach)
        self.assertEqual(len(problems), 1)
        self.assertIn("//transports:transports depends on //tls:context", problems[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
