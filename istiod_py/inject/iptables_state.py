"""What capture rules a network namespace already has, and how to remove them: the
state side of `istiod-py iptables` (istiod_py/inject/iptables.py builds the rules).

As istio-iptables does since it reconciles (1.22): before applying it reads the
current tables (`iptables-save`). No ISTIO_* chain at all: the rules are applied.
ISTIO_* chains holding exactly the rules it would write: nothing to do (running
the init step twice is harmless). Anything else (left by another version or other
flags): the old rules are cleaned up first, then the new ones applied. `--clean`
(istio-iptables' `clean`) does the cleanup alone: every rule in a built-in chain
that jumps to an ISTIO_* chain or that the settings would write there, then every
ISTIO_* chain flushed and deleted, and TPROXY's policy route.

Rules are compared with `iptables -C` (the kernel's view, so `-p tcp --dport 80`
matches the `-p tcp -m tcp --dport 80` that iptables-save prints); only IPv4."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

TABLES = ("mangle", "nat", "raw")
BUILTIN = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
CHAIN_PREFIX = "ISTIO_"

# Runs a command (argv; stdin text or None) and returns the finished process.
Runner = Callable[[Sequence[str], str | None], subprocess.CompletedProcess[str]]


def run_command(cmd: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, check=False)


def in_netns(netns: str, cmd: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)


@dataclass
class SavedTable:
    """One table of `iptables-save`: its chains and its rules as `-A CHAIN args...` lines."""

    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def istio_chains(self) -> list[str]:
        return [c for c in self.chains if c.startswith(CHAIN_PREFIX)]

    def rules_of(self, chain: str) -> list[str]:
        return [r for r in self.rules if r.split()[1] == chain]


def parse_save(text: str) -> dict[str, SavedTable]:
    """`iptables-save` output -> tables (counters and comments dropped)."""
    tables: dict[str, SavedTable] = {}
    current: SavedTable | None = None
    for raw in text.splitlines():
        line = re.sub(r"^\[\d+:\d+\]\s*", "", raw.strip())  # `iptables-save -c` counters
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), SavedTable())
        elif current is None or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            current.chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            current.rules.append(line)
    return tables


def read_tables(netns: str, run: Runner = run_command) -> dict[str, SavedTable]:
    proc = run(in_netns(netns, ["iptables-save"]), None)
    if proc.returncode != 0:
        raise RuntimeError(f"iptables-save failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse_save(proc.stdout)


def residue(saved: Mapping[str, SavedTable]) -> bool:
    """Any ISTIO_* chain in the capture tables: an earlier run left rules."""
    return any(saved.get(t, SavedTable()).istio_chains() for t in TABLES)


def _spec(rule: str) -> tuple[str, list[str]]:
    """`-A CHAIN args` or `-I CHAIN POS args` -> (CHAIN, args)."""
    parts = rule.split()
    if parts[0] == "-I" and len(parts) > 2 and parts[2].isdigit():
        return parts[1], parts[3:]
    return parts[1], parts[2:]


def has_delta(
    expected: Mapping[str, Sequence[str]],
    expected_chains: Mapping[str, Sequence[str]],
    saved: Mapping[str, SavedTable],
    netns: str,
    run: Runner = run_command,
) -> bool:
    """True unless the tables hold exactly the expected ISTIO_* chains with exactly the
    expected rules, and every expected rule of a built-in chain is present."""
    for table in TABLES:
        have = saved.get(table, SavedTable())
        want_rules = list(expected.get(table, ()))
        if set(have.istio_chains()) != set(expected_chains.get(table, ())):
            return True
        for chain in have.istio_chains():
            if len(have.rules_of(chain)) != sum(1 for r in want_rules if _spec(r)[0] == chain):
                return True
        for rule in want_rules:
            chain, args = _spec(rule)
            if run(in_netns(netns, ["iptables", "-t", table, "-C", chain, *args]), None).returncode != 0:
                return True
    return False


def cleanup_commands(saved: Mapping[str, SavedTable], builtin_rules: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """iptables argv lists (without the netns prefix) that remove the capture rules:
    built-in chains' jumps to ISTIO_* chains and the rules the settings put there
    (`builtin_rules`, per table), then the ISTIO_* chains flushed, then deleted."""
    cmds: list[list[str]] = []
    for table in TABLES:
        have = saved.get(table, SavedTable())
        for rule in have.rules:
            chain, args = _spec(rule)
            target = args[args.index("-j") + 1] if "-j" in args[:-1] else ""
            if chain in BUILTIN and target.startswith(CHAIN_PREFIX):
                cmds.append(["iptables", "-t", table, "-D", chain, *args])
        for rule in builtin_rules.get(table, ()):
            chain, args = _spec(rule)
            target = args[args.index("-j") + 1] if "-j" in args[:-1] else ""
            if chain in BUILTIN and not target.startswith(CHAIN_PREFIX):
                cmds.append(["iptables", "-t", table, "-D", chain, *args])
        cmds += [["iptables", "-t", table, "-F", c] for c in have.istio_chains()]
        cmds += [["iptables", "-t", table, "-X", c] for c in have.istio_chains()]
    return cmds


def clean(
    builtin_rules: Mapping[str, Sequence[str]],
    route_cleanup: Sequence[Sequence[str]],
    netns: str = "",
    run: Runner = run_command,
) -> list[str]:
    """Removes the capture rules (and TPROXY's policy route); returns the commands run.
    A rule that is not there is no error (as istio-iptables' clean: best effort)."""
    saved = read_tables(netns, run)
    done: list[str] = []
    for cmd in cleanup_commands(saved, builtin_rules):
        # A rule may have been written twice (old appends): delete until it is gone.
        deleting = cmd[3] == "-D"
        for _ in range(16 if deleting else 1):
            if run(in_netns(netns, cmd), None).returncode != 0:
                break
            done.append(" ".join(cmd))
    for route in route_cleanup:
        # `ip rule add` run twice leaves two rules: delete until none is left.
        for _ in range(16 if "del" in route else 1):
            if run(in_netns(netns, route), None).returncode != 0:
                break
            done.append(" ".join(route))
    left = [f"{t}/{c}" for t, tab in read_tables(netns, run).items() if t in TABLES for c in tab.istio_chains()]
    if left:
        raise RuntimeError(f"iptables cleanup left chains {', '.join(left)} (still referenced by other rules?)")
    return done
