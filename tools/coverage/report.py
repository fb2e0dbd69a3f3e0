#!/usr/bin/env python3
"""Line and branch coverage of the libraries, from a `--config=coverage` test run.

    report.py --testlogs DIR --bin DIR --out DIR [--llvm-suffix -19]

Run from the workspace root after `bazel test --config=coverage ...` (what
`./dev coverage` does). Collects the tests' profiles (.profraw, in each test's
outputs.zip under --testlogs), merges them with llvm-profdata, and with
llvm-cov over the test binaries under --bin prints line and branch coverage
per package and in total, and writes an HTML report to --out (index.html).

Counted: the libraries' own sources (the packages below, as git lists them),
not their tests, test helpers, fuzz targets, benchmarks, examples or
third-party code.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGES = ["loop", "futures", "sync", "queues", "transports", "streams", "subprocess",
            "executors", "dns", "tls"]
# Inside a package: what is not library code.
NOT_LIBRARY = re.compile(r"(_test\.cc$|_test_util\.|/testing/|/fuzz/|/bench/|/corpus/)")
# The same, for llvm-cov show: every other file it has a mapping for.
IGNORED_IN_HTML = [r"^/", r"^(bazel-out|external|third_party|testing|tools|examples|"
                   r"integration_tests)/", r"^[^/]*$", NOT_LIBRARY.pattern]


def library_sources():
    files = subprocess.run(["git", "ls-files", "--", *PACKAGES], check=True,
                           capture_output=True, text=True).stdout.split()
    return sorted(f for f in files if f.endswith((".cc", ".h")) and not NOT_LIBRARY.search(f))


def collect_profiles(testlogs, into):
    """Copies every .profraw of the test run into `into`; returns how many."""
    count = 0
    for root, _, files in os.walk(testlogs):
        for name in files:
            path = os.path.join(root, name)
            if name == "outputs.zip":
                with zipfile.ZipFile(path) as z:
                    for member in z.namelist():
                        if member.endswith(".profraw"):
                            count += 1
                            with z.open(member) as src, open(
                                    os.path.join(into, f"{count}.profraw"), "wb") as dst:
                                shutil.copyfileobj(src, dst)
            elif name.endswith(".profraw"):
                count += 1
                shutil.copy(path, os.path.join(into, f"{count}.profraw"))
    return count


def test_binaries(bin_dir):
    labels = subprocess.run(
        ["bazel", "query", "--noshow_progress", "kind(cc_test, //...)"], check=True,
        capture_output=True, text=True).stdout.split()
    binaries = []
    for label in labels:
        package, name = label[2:].split(":")
        path = os.path.join(bin_dir, package, name)
        if os.path.isfile(path):
            binaries.append(path)
    return binaries


def percent(covered, count):
    return f"{100.0 * covered / count:.1f} %" if count else "-"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--testlogs", required=True)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--llvm-suffix", default="-19")
    args = parser.parse_args()
    profdata_tool = "llvm-profdata" + args.llvm_suffix
    cov_tool = "llvm-cov" + args.llvm_suffix

    work = tempfile.mkdtemp(prefix="coverage-")
    try:
        raw_dir = os.path.join(work, "raw")
        os.makedirs(raw_dir)
        n = collect_profiles(args.testlogs, raw_dir)
        if n == 0:
            sys.exit("coverage: no .profraw files under " + args.testlogs +
                     " (were the tests run with --config=coverage?)")
        listing = os.path.join(work, "profiles.txt")
        with open(listing, "w", encoding="utf-8") as f:
            f.writelines(os.path.join(raw_dir, p) + "\n" for p in os.listdir(raw_dir))
        merged = os.path.join(work, "merged.profdata")
        subprocess.run([profdata_tool, "merge", "-sparse", "-f", listing, "-o", merged],
                       check=True)
        binaries = test_binaries(args.bin)
        objects = [binaries[0]] + [a for b in binaries[1:] for a in ("-object", b)]
        sources = library_sources()
        common = ["-instr-profile", merged, *objects, "--", *sources]

        exported = subprocess.run([cov_tool, "export", "-format=text", "-summary-only",
                                   *common], check=True, capture_output=True, text=True)
        files = json.loads(exported.stdout)["data"][0]["files"]

        # `show` matches source arguments against absolute paths, which the
        # workspace-relative mappings are not: it is told what to leave out.
        ignored = [f"-ignore-filename-regex={r}" for r in IGNORED_IN_HTML]
        shutil.rmtree(args.out, ignore_errors=True)
        subprocess.run([cov_tool, "show", "-format=html", "-output-dir", args.out,
                        "-show-branches=count", "-show-line-counts-or-regions",
                        "-project-title=asyncio for C++", "-instr-profile", merged, *objects,
                        *ignored], check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # Per package: [lines covered, lines, branches covered, branches].
    totals = {p: [0, 0, 0, 0] for p in PACKAGES}
    for f in files:
        name = os.path.relpath(f["filename"]) if os.path.isabs(f["filename"]) else f["filename"]
        package = name.split("/")[0]
        if package not in totals:
            continue
        s = f["summary"]
        t = totals[package]
        t[0] += s["lines"]["covered"]
        t[1] += s["lines"]["count"]
        t[2] += s["branches"]["covered"]
        t[3] += s["branches"]["count"]
    overall = [sum(t[i] for t in totals.values()) for i in range(4)]

    print(f"Coverage of the libraries by the tests ({n} profiles, {len(binaries)} test "
          f"binaries):")
    print()
    print("| package | lines | line coverage | branches | branch coverage |")
    print("|---|--:|--:|--:|--:|")
    for package in PACKAGES:
        lc, l, bc, b = totals[package]
        print(f"| `{package}` | {lc}/{l} | {percent(lc, l)} | {bc}/{b} | {percent(bc, b)} |")
    lc, l, bc, b = overall
    print(f"| total | {lc}/{l} | {percent(lc, l)} | {bc}/{b} | {percent(bc, b)} |")
    print()
    print(f"coverage: HTML report in {os.path.join(os.path.abspath(args.out), 'index.html')}")
    print(f"coverage: total line coverage {percent(lc, l)}, branch coverage {percent(bc, b)}")


if __name__ == "__main__":
    main()
