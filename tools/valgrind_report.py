"""Read valgrind memcheck XML files and report the errors in csoftmax code.

An error is csoftmax's when any frame of its stack (or of its allocation
stack) lies in the csoftmax extension (_core*.so) or in one of its sources.
Everything else -- the CPython interpreter, NumPy, the dynamic loader --
is counted and summarised but does not fail the run.

    python tools/valgrind_report.py LOG.xml [...]   -> exit 1 on csoftmax errors
"""
import collections
import os
import re
import sys
import xml.etree.ElementTree as ET

OUR_SOURCES = {"_core.c", "_core.pyx", "_losses.pxi", "_margin.pxi",
               "dispatch.c", "kernels_scalar.c", "kernels.h",
               "csoftmax.h", "omp_compat.h"}
# and every file of src/avx2/ (one per kernel family)
OUR_DIRS = ("/avx2",)


def frames(error):
    for stack in error.iter("stack"):
        for f in stack.iter("frame"):
            yield (f.findtext("obj") or "", f.findtext("fn") or "?",
                   f.findtext("dir") or "", f.findtext("file") or "",
                   f.findtext("line") or "")


def is_ours(frame):
    obj, fn, d, file, line = frame
    base = os.path.basename(obj)
    return ((base.startswith("_core.") and base.endswith(".so")
             and "csoftmax" in obj) or file in OUR_SOURCES
            or (d.endswith(OUR_DIRS) and "csoftmax" in d))


def describe(error):
    what = error.findtext("what") or error.findtext("xwhat/text") or ""
    lines = [f"{error.findtext('kind')}: {what}"]
    for i, stack in enumerate(error.iter("stack")):
        if i:
            lines.append(f"  {error.findtext('auxwhat') or 'and'}:")
        for f in list(stack.iter("frame"))[:25]:
            fr = (f.findtext("obj") or "", f.findtext("fn") or "?",
                  f.findtext("dir") or "", f.findtext("file") or "",
                  f.findtext("line") or "")
            where = f"{fr[3]}:{fr[4]}" if fr[3] else os.path.basename(fr[0])
            lines.append(f"    {'>' if is_ours(fr) else ' '} {fr[1]}  ({where})")
    return "\n".join(lines)


def main(paths):
    ours, others = [], collections.Counter()
    incomplete = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if "</valgrindoutput>" not in text:
            incomplete.append(path)   # valgrind (or the program) died
        for block in re.findall(r"<error>.*?</error>", text, re.S):
            e = ET.fromstring(block)
            if any(is_ours(f) for f in frames(e)):
                ours.append((path, e))
            else:
                others[e.findtext("kind")] += 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(others.items())) or "none"
    print(f"valgrind: errors outside csoftmax (interpreter, numpy, loader): {summary}")
    for path in incomplete:
        print(f"valgrind: {os.path.basename(path)} is incomplete: valgrind stopped early")
    if ours:
        for path, e in ours:
            print(f"--- {os.path.basename(path)}")
            print(describe(e))
        print(f"valgrind: {len(ours)} error(s) with csoftmax frames ('>' above)")
        return 1
    if incomplete:
        return 1
    print("valgrind: 0 errors in csoftmax code")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
