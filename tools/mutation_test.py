#!/usr/bin/env python3
"""Mutation testing: does the test suite notice realistic bugs?

Applies each mutant of tools/mutants.toml, one at a time, to a copy of the
repository (git ls-files, in a temporary directory), rebuilds the extension
there when the mutant touches a build input, runs the test suite against
that copy's build and records whether a test failed (killed) or not
(survived).  Build failures, crashes and hangs (--timeout) count as killed
and are reported apart.  Mutants marked `equivalent` are not run and not
counted; `runner = "neon"` mutants run tools/neon/run.sh (aarch64 cross
build under qemu) instead of pytest and are skipped where that toolchain is
missing.

    python tools/mutation_test.py                 # everything (~50 min, 2 cores)
    python tools/mutation_test.py --list
    python tools/mutation_test.py --only avx2_tail_mask64 api_keepdims
    python tools/mutation_test.py --check         # snippets still match?

The last line printed is `mutants: killed K of N`; the exit status is 1 when
K/N < --min-score (default 0.95), 2 on a setup error (stale snippet,
baseline build or baseline suite failing).
"""
import argparse
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sysconfig
import sys
import tempfile
import threading
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_INPUTS = (".c", ".h", ".pyx", ".pxi", ".pxd")
FIELDS = {"id", "file", "find", "replace", "description", "also", "runner", "env",
          "equivalent", "guard"}


class SetupError(Exception):
    pass


# ---------------------------------------------------------------------------
# the list

def load_mutants(path):
    with open(path, "rb") as f:
        data = tomllib.load(f)
    muts = data.get("mutant", [])
    seen = set()
    for m in muts:
        unknown = set(m) - FIELDS
        if unknown:
            raise SetupError(f"{m.get('id', '?')}: unknown field(s) {sorted(unknown)}")
        for key in ("id", "file", "find", "replace", "description"):
            if key not in m:
                raise SetupError(f"{m.get('id', '?')}: missing field {key!r}")
        if m["id"] in seen:
            raise SetupError(f"duplicate mutant id {m['id']!r}")
        seen.add(m["id"])
        if m.get("runner", "pytest") not in ("pytest", "neon"):
            raise SetupError(f"{m['id']}: runner must be 'pytest' or 'neon'")
        m["edits"] = [(m["file"], m["find"], m["replace"])] + [
            (e["file"], e["find"], e["replace"]) for e in m.get("also", [])]
    return muts


def check_snippets(muts, root):
    """Every snippet occurs exactly once (in the file as it is, before any
    other edit of the same mutant).  Returns a list of problems."""
    problems = []
    for m in muts:
        for fname, find, _ in m["edits"]:
            path = os.path.join(root, fname)
            if not os.path.exists(path):
                problems.append(f"{m['id']}: {fname} does not exist")
                continue
            with open(path, encoding="utf-8") as f:
                k = f.read().count(find)
            if k != 1:
                problems.append(f"{m['id']}: snippet occurs {k} times in {fname} "
                                f"(must be exactly once): {find.strip()[:70]!r}")
    return problems


# ---------------------------------------------------------------------------
# the copy

def copy_tree(src, dest):
    files = subprocess.run(
        ["git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True).stdout.split(b"\0")
    for rel in files:
        if not rel:
            continue
        rel = rel.decode()
        s = os.path.join(src, rel)
        if not os.path.isfile(s):      # deleted in the work tree, not yet in git
            continue
        d = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        shutil.copy2(s, d)


class Tree:
    """One copy of the repository with its own build and baseline artefacts."""

    def __init__(self, path, cwd):
        self.path = path
        self.cwd = cwd            # an empty directory pytest runs from
        self.saved = {}           # build artefact -> baseline copy

    def env(self, extra=None):
        env = dict(os.environ)
        env["PYTHONPATH"] = self.path + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("CSOFTMAX_ISA", None)
        env.update(extra or {})
        return env

    def build(self, timeout, force=False):
        """force: recompile every source -- setuptools tracks only the
        sources' own times, so a mutated header (src/avx2/exp.h, ...)
        would otherwise not be compiled in and its mutant would 'survive'."""
        t = time.monotonic()
        cmd = [sys.executable, "setup.py", "-q", "build_ext", "--inplace"]
        if force:
            cmd.append("--force")
        env = self.env()
        cc = sysconfig.get_config_var("CC") or "cc"
        if "CC" not in env and shutil.which("ccache") and not cc.startswith("ccache"):
            # every mutant recompiles every source (force); ccache hashes the
            # preprocessed source, so only what the mutant changed compiles
            env["CC"] = "ccache " + cc
        p = subprocess.run(cmd,
                           cwd=self.path, capture_output=True, text=True,
                           timeout=timeout, env=env)
        return p.returncode == 0, time.monotonic() - t, p.stdout + p.stderr

    def artefacts(self):
        pkg = os.path.join(self.path, "csoftmax")
        return [os.path.join(pkg, f) for f in os.listdir(pkg)
                if f.startswith("_core") and (f.endswith((".so", ".pyd")) or f == "_core.c")]

    def save_baseline(self):
        keep = os.path.join(self.path, ".mutation-baseline")
        os.makedirs(keep, exist_ok=True)
        for a in self.artefacts():
            b = os.path.join(keep, os.path.basename(a))
            shutil.copy2(a, b)
            self.saved[a] = b

    def restore_baseline(self):
        for a in self.artefacts():
            if a not in self.saved:
                os.remove(a)
        for a, b in self.saved.items():
            shutil.copy2(b, a)      # baseline mtimes: sources edited later are newer


# ---------------------------------------------------------------------------
# running

def run_cmd(cmd, cwd, env, timeout):
    """(returncode or 'timeout', output, seconds); kills the whole group on timeout."""
    t = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        rc = "timeout"
    return rc, out, time.monotonic() - t


# run first, as a pytest run of its own: the bit-exact digests of every
# public function (tests/test_golden.py) end most kernel mutants in seconds
# instead of after the test files before it; the second run is the rest of
# the suite (so every test still runs once)
FIRST = "tests/test_golden.py"


def pytest_cmds(tree, extra_args):
    base = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    tests = os.path.join(tree.path, "tests")
    first = os.path.join(tree.path, FIRST)
    if not os.path.exists(first) or any("test_golden" in a for a in extra_args):
        return [base + [tests] + extra_args]
    return [base + [first] + extra_args,
            base + [tests, "--ignore", first] + extra_args]


def run_suite(tree, extra_args, env, timeout):
    """The suite in pytest_cmds' order, stopping at the first failing run:
    (rc, output, seconds) as run_cmd."""
    t0, out = time.monotonic(), ""
    for cmd in pytest_cmds(tree, extra_args):
        rc, o, _ = run_cmd(cmd, tree.cwd, env, timeout)
        out += o
        if rc != 0:
            break
    return rc, out, time.monotonic() - t0


def first_failure(out):
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    if m:   # the node id, relative to the copy's root
        return re.sub(r"^(?:\.\./)+tree[0-9]+/", "", m.group(1))
    m = re.search(r"^(Fatal Python error: .*)$", out, re.M)
    if m:
        return m.group(1)
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1][:120] if lines else ""


def apply(tree, m):
    """Edit the copy; returns the undo list [(path, text, (atime, mtime))]."""
    undo = []
    texts = {}
    for fname, find, rep in m["edits"]:
        path = os.path.join(tree.path, fname)
        if path not in texts:
            with open(path, encoding="utf-8") as f:
                texts[path] = f.read()
            st = os.stat(path)
            undo.append((path, texts[path], (st.st_atime, st.st_mtime)))
        k = texts[path].count(find)
        if k != 1:
            raise SetupError(f"{m['id']}: snippet occurs {k} times in {fname}")
        texts[path] = texts[path].replace(find, rep)
    for path, text in texts.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return undo


def revert(undo):
    for path, text, times in undo:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.utime(path, times)   # unchanged mtime: no needless re-cythonize


def run_mutant(tree, m, args):
    """Returns (status, detail, seconds); status in killed, killed (build),
    killed (timeout), killed (crash), survived, skipped."""
    t0 = time.monotonic()
    runner = m.get("runner", "pytest")
    undo = apply(tree, m)
    rebuilt = False
    try:
        if runner == "neon":
            rc, out, _ = run_cmd(["bash", "tools/neon/run.sh"], tree.path,
                                 tree.env(m.get("env")), args.timeout)
            if rc == 77:
                return "skipped", "no aarch64 toolchain / qemu", time.monotonic() - t0
            if rc == 0:
                return "survived", "", time.monotonic() - t0
            if rc == "timeout":
                return "killed (timeout)", "tools/neon/run.sh", time.monotonic() - t0
            return "killed", "tools/neon/run.sh: " + first_failure(out), time.monotonic() - t0
        if any(f.endswith(BUILD_INPUTS) for f, _, _ in m["edits"]):
            rebuilt = True
            try:
                # always from scratch: objects left by an earlier (header)
                # mutant must not be linked into this one
                ok, _, out = tree.build(args.timeout, force=True)
            except subprocess.TimeoutExpired:
                return "killed (build)", "build timed out", time.monotonic() - t0
            if not ok:
                err = re.search(r"^.*error.*$", out, re.M | re.I)
                return ("killed (build)", err.group(0).strip()[:120] if err else "",
                        time.monotonic() - t0)
        rc, out, _ = run_suite(tree, args.pytest_args, tree.env(m.get("env")),
                               args.timeout)
        if rc == 0:
            return "survived", "", time.monotonic() - t0
        if rc == "timeout":
            return "killed (timeout)", f"> {args.timeout:.0f} s", time.monotonic() - t0
        if rc in (4, 5):   # usage error / no tests: the tool's fault, not a kill
            raise SetupError(f"{m['id']}: pytest exit {rc}:\n{out[-2000:]}")
        status = "killed" if rc in (1, 2) else "killed (crash)"
        return status, first_failure(out), time.monotonic() - t0
    finally:
        revert(undo)
        if rebuilt:
            tree.restore_baseline()


def prepare_tree(base, index, args, need_pytest, need_neon):
    path = os.path.join(base, f"tree{index}")
    cwd = os.path.join(base, f"cwd{index}")
    os.makedirs(cwd)
    copy_tree(ROOT, path)
    tree = Tree(path, cwd)
    say = (lambda s: print(s, flush=True)) if index == 0 else (lambda s: None)
    ok, secs, out = tree.build(None)
    if not ok:
        raise SetupError("baseline build failed:\n" + out[-3000:])
    say(f"baseline build: {secs:.0f} s")
    tree.save_baseline()
    rc, out, _ = run_cmd([sys.executable, "-c", "import csoftmax; print(csoftmax.__file__)"],
                         cwd, tree.env(), 120)
    where = out.strip().splitlines()[-1] if out.strip() else ""
    if rc != 0 or not where.startswith(os.path.join(path, "csoftmax")):
        raise SetupError(f"the copy's build is not what gets imported: {out.strip()}")
    say(f"tests import {where}")
    if need_pytest and not args.no_baseline:
        rc, out, secs = run_suite(tree, args.pytest_args, tree.env(), None)
        if rc != 0:
            raise SetupError("the unmutated suite fails:\n" + out[-3000:])
        say(f"baseline suite: passed in {secs:.0f} s "
            f"({sum(int(k) for k in re.findall(r'([0-9]+) passed', out))} passed)")
    neon_ok = None
    if need_neon and index == 0:
        rc, out, secs = run_cmd(["bash", "tools/neon/run.sh"], path, tree.env(), None)
        if rc == 77:
            say("baseline neon harness: toolchain missing, neon mutants will be skipped")
        elif rc != 0:
            raise SetupError("tools/neon/run.sh fails unmutated:\n" + out[-3000:])
        else:
            say(f"baseline neon harness: passed in {secs:.0f} s")
        neon_ok = rc == 0
    return tree, neon_ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutants", default=os.path.join(ROOT, "tools", "mutants.toml"))
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--check", action="store_true",
                    help="only check that every snippet matches exactly once")
    ap.add_argument("--only", nargs="+", metavar="ID", help="run just these mutants")
    ap.add_argument("--jobs", type=int, default=1,
                    help="copies of the tree worked on in parallel (default 1)")
    ap.add_argument("--timeout", type=float, default=900,
                    help="seconds per build / test run; a hang counts as killed (default 900)")
    ap.add_argument("--pytest-args", default="", type=shlex.split,
                    help="extra pytest arguments, one string (e.g. \"-k softmax\")")
    ap.add_argument("--min-score", type=float, default=0.95)
    ap.add_argument("--include-equivalent", action="store_true",
                    help="also run the mutants marked equivalent (counted like the others)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the unmutated test run (the build and import check still run)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = ap.parse_args(argv)

    try:
        muts = load_mutants(args.mutants)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.only:
        unknown = set(args.only) - {m["id"] for m in muts}
        if unknown:
            print(f"error: unknown mutant id(s): {' '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        muts = [m for m in muts if m["id"] in args.only]
    if args.list:
        for m in muts:
            tag = " [equivalent]" if m.get("equivalent") else ""
            tag += " [neon]" if m.get("runner") == "neon" else ""
            print(f"{m['id']:34s} {m['file']:30s} {m['description']}{tag}")
        print(f"{len(muts)} mutants")
        return 0
    problems = check_snippets(muts, ROOT)
    if problems:
        print("error: the mutant list is out of sync with the code:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 2
    if args.check:
        print(f"all {len(muts)} mutants match")
        return 0

    equivalent = [m for m in muts if m.get("equivalent") and not args.include_equivalent]
    todo = [m for m in muts if m not in equivalent]
    need_pytest = any(m.get("runner", "pytest") == "pytest" for m in todo)
    need_neon = any(m.get("runner") == "neon" for m in todo)
    t_start = time.monotonic()
    base = tempfile.mkdtemp(prefix="csoftmax-mutation-")
    print(f"copies under {base}", flush=True)
    results = {}
    try:
        jobs = max(1, min(args.jobs, len(todo)))
        trees = []
        neon_ok = None
        for j in range(jobs):
            tree, ok = prepare_tree(base, j, args, need_pytest, need_neon)
            trees.append(tree)
            if j == 0:
                neon_ok = ok
        work = queue.Queue()
        for i, m in enumerate(todo):
            work.put((i, m))
        lock = threading.Lock()
        errors = []

        def worker(tree):
            while not errors:
                try:
                    i, m = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    if m.get("runner") == "neon" and not neon_ok:
                        res = ("skipped", "no aarch64 toolchain / qemu", 0.0)
                    else:
                        res = run_mutant(tree, m, args)
                except SetupError as e:
                    errors.append(str(e))
                    return
                except Exception as e:   # noqa: BLE001 -- report, do not hang the others
                    errors.append(f"{m['id']}: {e!r}")
                    return
                with lock:
                    results[m["id"]] = res
                    status, detail, secs = res
                    print(f"[{len(results):2d}/{len(todo)}] {m['id']:34s} {status:16s} "
                          f"{secs:6.1f} s  {detail}", flush=True)

        threads = [threading.Thread(target=worker, args=(t,)) for t in trees]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise SetupError(errors[0])
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    counted = [m for m in todo if results[m["id"]][0] != "skipped"]
    killed = [m for m in counted if results[m["id"]][0].startswith("killed")]
    survivors = [m for m in counted if results[m["id"]][0] == "survived"]
    skipped = [m for m in todo if results[m["id"]][0] == "skipped"]
    by_kind = {}
    for m in killed:
        by_kind[results[m["id"]][0]] = by_kind.get(results[m["id"]][0], 0) + 1
    print()
    print(f"run time: {(time.monotonic() - t_start) / 60:.1f} min")
    print("killed: " + ", ".join(f"{v} {k}" for k, v in sorted(by_kind.items())))
    for m in equivalent:
        print(f"equivalent (not run): {m['id']}: {m['equivalent']}")
    for m in skipped:
        print(f"skipped (not counted): {m['id']}: {results[m['id']][1]}")
    if survivors:
        print("survivors:")
        for m in survivors:
            print(f"  {m['id']} ({m['file']}): {m['description']}")
    else:
        print("survivors: none")
    n, k = len(counted), len(killed)
    print(f"mutants: killed {k} of {n}")
    return 0 if n == 0 or k / n >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
