#!/usr/bin/env python3
"""Check the layout of the Rego policy pack under ``rego/``.

Regal-style rules, enforced because Regal itself is not available here:

* every policy file ``X.rego`` has a sibling ``X_test.rego``;
* a policy file's package matches its directory (``rego/aarm/params`` is
  ``package aarm.params``), and a test file's package is that name plus ``_test``;
* a policy file opens with a ``# METADATA`` block whose ``related_resources`` points
  at its doc page;
* every concern directory under ``rego/aarm/`` (a Rego package or a data-only
  directory such as ``config``) has a page ``docs/policies/<concern>.md``;
* no Rego file calls a non-deterministic or network builtin (``http.send``,
  ``time.now_ns``, ``rand.*``, ``net.lookup*``, ``opa.runtime``);
* every rule id a policy file declares (METADATA ``custom.rule_id``) is listed in the
  policy index ``docs/policies/README.md``, so the index of reason codes stays complete;
* the one test-support package ``rego/aarm/testing`` (``package aarm.testing``, the
  shared input builders every policy test imports) is the exemption from the first two
  rules: its files end in ``_test.rego`` but have no policy sibling, and they declare
  the directory's package without ``_test``, because other tests import it as
  ``data.aarm.testing``. The suffix keeps it test code: out of the policy hash
  (``aarm_pdp.opa.layers``) and out of any bundle built without tests. In return it must
  open with METADATA pointing at ``docs/policies/testing.md``, declare no rule ids, and
  no policy file may refer to ``data.aarm.testing``, so a decision never depends on it.

Exit status 0 and ``rego structure ok (N packages)`` on success, otherwise exit
status 1 and one line per problem. Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

BUNDLE_ROOT = "aarm"
TEST_SUFFIX = "_test.rego"
TEST_SUPPORT = "testing"
TEST_SUPPORT_REF_RE = re.compile(rf"\bdata\.{BUNDLE_ROOT}\.{TEST_SUPPORT}\b")
FORBIDDEN_CALLS: dict[str, re.Pattern[str]] = {
    "http.send": re.compile(r"\bhttp\.send\s*\("),
    "time.now_ns": re.compile(r"\btime\.now_ns\s*\("),
    "rand.*": re.compile(r"\brand\.[a-z_]+\s*\("),
    "net.lookup*": re.compile(r"\bnet\.lookup[a-z_]*\s*\("),
    "opa.runtime": re.compile(r"\bopa\.runtime\s*\("),
}
PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_.]*)\s*$", re.MULTILINE)
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
RULE_ID_RE = re.compile(r"^#\s+rule_id:\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Problem:
    """One structure violation, tied to the file or directory it concerns."""

    path: Path
    message: str

    def __str__(self) -> str:
        """Render as ``path: message``."""
        return f"{self.path}: {self.message}"

    def relative_to(self, root: Path) -> Problem:
        """Return the same problem with its path relative to ``root`` when possible."""
        if self.path.is_relative_to(root):
            return Problem(self.path.relative_to(root), self.message)
        return self


def strip_comments_and_strings(source: str) -> str:
    """Return ``source`` with string literals emptied and ``#`` comments removed.

    Strings are blanked first so that a ``#`` inside a string does not start a
    comment, and so that a message mentioning a builtin is not a call.
    """
    blanked = STRING_RE.sub('""', source)
    return "\n".join(line.split("#", 1)[0] for line in blanked.splitlines())


def package_of(source: str) -> str | None:
    """Return the package name declared in ``source``, or None."""
    match = PACKAGE_RE.search(strip_comments_and_strings(source))
    return match.group(1) if match else None


def expected_package(rego_root: Path, directory: Path) -> str:
    """Return the package name that a directory under ``rego_root`` must declare."""
    return ".".join(directory.relative_to(rego_root).parts)


def concern_of(rego_root: Path, directory: Path) -> str:
    """Return the concern name of a directory (its path below ``rego/aarm``)."""
    return "/".join(directory.relative_to(rego_root / BUNDLE_ROOT).parts)


def check_policy_file(rego_root: Path, docs_root: Path, policy: Path) -> list[Problem]:
    """Check one non-test policy file: its test sibling, package and METADATA."""
    problems: list[Problem] = []
    source = policy.read_text(encoding="utf-8")
    test_file = policy.with_name(policy.stem + TEST_SUFFIX)
    if not test_file.is_file():
        problems.append(Problem(policy, f"missing test file {test_file.name}"))

    want = expected_package(rego_root, policy.parent)
    got = package_of(source)
    if got != want:
        problems.append(
            Problem(policy, f"package {got!r} does not match directory (want {want!r})")
        )

    problems.extend(check_package_metadata(rego_root, docs_root, policy, source))
    if TEST_SUPPORT_REF_RE.search(strip_comments_and_strings(source)):
        problems.append(Problem(policy, "policy refers to the test-support package"))
    return problems


def check_package_metadata(
    rego_root: Path, docs_root: Path, rego_file: Path, source: str
) -> list[Problem]:
    """Check that a package opens with METADATA linking its doc page, and that the page exists."""
    problems: list[Problem] = []
    concern = concern_of(rego_root, rego_file.parent)
    doc_ref = f"docs/policies/{concern}.md"
    header = source.split("\npackage ", 1)[0]
    if not header.lstrip().startswith("# METADATA"):
        problems.append(Problem(rego_file, "package has no METADATA annotation block"))
    elif doc_ref not in header:
        problems.append(
            Problem(rego_file, f"package METADATA related_resources does not reference {doc_ref}")
        )
    if not (docs_root / f"{concern}.md").is_file():
        problems.append(Problem(rego_file, f"missing doc page {doc_ref}"))
    return problems


def check_test_support_file(rego_root: Path, docs_root: Path, rego_file: Path) -> list[Problem]:
    """Check a test-support file: test code, directory package, METADATA, no rule ids."""
    problems: list[Problem] = []
    source = rego_file.read_text(encoding="utf-8")
    if not rego_file.name.endswith(TEST_SUFFIX):
        problems.append(
            Problem(rego_file, f"test-support file must end in {TEST_SUFFIX} (it is not policy)")
        )
    want = expected_package(rego_root, rego_file.parent)
    got = package_of(source)
    if got != want:
        problems.append(
            Problem(rego_file, f"package {got!r} does not match directory (want {want!r})")
        )
    problems.extend(check_package_metadata(rego_root, docs_root, rego_file, source))
    problems.extend(
        Problem(rego_file, f"test-support package declares rule id {rule_id}")
        for rule_id in sorted(rule_ids(source))
    )
    return problems


def check_test_file(rego_root: Path, test_file: Path) -> list[Problem]:
    """Check that a test file declares ``<package>_test`` and has a policy sibling."""
    problems: list[Problem] = []
    want = expected_package(rego_root, test_file.parent) + "_test"
    got = package_of(test_file.read_text(encoding="utf-8"))
    if got != want:
        problems.append(
            Problem(test_file, f"package {got!r} does not match directory (want {want!r})")
        )
    policy = test_file.with_name(test_file.name.removesuffix(TEST_SUFFIX) + ".rego")
    if not policy.is_file():
        problems.append(Problem(test_file, f"test file without policy file {policy.name}"))
    return problems


def check_forbidden_calls(rego_file: Path) -> list[Problem]:
    """Report each forbidden builtin call in a Rego file (comments and strings ignored)."""
    code = strip_comments_and_strings(rego_file.read_text(encoding="utf-8"))
    return [
        Problem(rego_file, f"calls forbidden builtin {name} (decisions must be deterministic)")
        for name, pattern in FORBIDDEN_CALLS.items()
        if pattern.search(code)
    ]


def rule_ids(source: str) -> set[str]:
    """Return the rule ids declared in METADATA ``custom.rule_id`` entries of ``source``."""
    return set(RULE_ID_RE.findall(source))


def check_rule_ids_documented(policy: Path, index: str) -> list[Problem]:
    """Report each rule id of a policy file that the policy index does not mention."""
    return [
        Problem(policy, f"rule id {rule_id} is not listed in docs/policies/README.md")
        for rule_id in sorted(rule_ids(policy.read_text(encoding="utf-8")))
        if f"`{rule_id}`" not in index
    ]


def concern_dirs(rego_root: Path) -> list[Path]:
    """Return every directory under rego/aarm that holds Rego or a data.json."""
    bundle = rego_root / BUNDLE_ROOT
    dirs = {path.parent for path in bundle.rglob("*.rego")} | {
        path.parent for path in bundle.rglob("data.json")
    }
    return sorted(dirs)


def check(repo: Path) -> tuple[list[Problem], int]:
    """Run every check over ``repo``; return the problems and the number of concerns."""
    rego_root = repo / "rego"
    docs_root = repo / "docs" / "policies"
    problems: list[Problem] = []
    if not (rego_root / BUNDLE_ROOT).is_dir():
        return [Problem(rego_root / BUNDLE_ROOT, "bundle root directory is missing")], 0
    if not (rego_root / ".manifest").is_file():
        problems.append(Problem(rego_root / ".manifest", "bundle manifest is missing"))

    stray = sorted(
        path for path in rego_root.rglob("*.rego") if (rego_root / BUNDLE_ROOT) not in path.parents
    )
    problems.extend(Problem(path, f"Rego file outside rego/{BUNDLE_ROOT}/") for path in stray)

    index_path = docs_root / "README.md"
    index = index_path.read_text(encoding="utf-8") if index_path.is_file() else ""
    rego_files = sorted((rego_root / BUNDLE_ROOT).rglob("*.rego"))
    test_support = rego_root / BUNDLE_ROOT / TEST_SUPPORT
    for rego_file in rego_files:
        if rego_file.parent == test_support:
            problems.extend(check_test_support_file(rego_root, docs_root, rego_file))
        elif rego_file.name.endswith(TEST_SUFFIX):
            problems.extend(check_test_file(rego_root, rego_file))
        else:
            problems.extend(check_policy_file(rego_root, docs_root, rego_file))
            if index:
                problems.extend(check_rule_ids_documented(rego_file, index))
        problems.extend(check_forbidden_calls(rego_file))

    concerns = concern_dirs(rego_root)
    for directory in concerns:
        concern = concern_of(rego_root, directory)
        if not any(directory.glob("*.rego")) and not (docs_root / f"{concern}.md").is_file():
            problems.append(Problem(directory, f"missing doc page docs/policies/{concern}.md"))
    if not (docs_root / "README.md").is_file():
        problems.append(Problem(docs_root / "README.md", "missing policy index"))
    return problems, len(concerns)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "repo",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="repository root (default: the parent of scripts/)",
    )
    args = parser.parse_args(argv)
    problems, concerns = check(args.repo.resolve())
    if problems:
        for problem in problems:
            print(problem.relative_to(args.repo.resolve()), file=sys.stderr)
        print(f"rego structure: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"rego structure ok ({concerns} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
