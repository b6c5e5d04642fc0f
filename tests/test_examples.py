"""Every Python code block of README.md and docs/*.md runs as written.

Each block is written to a file and run in a fresh interpreter whose working
directory is a temporary directory outside the source tree (so the installed
csoftmax is imported, never the checkout's uncompiled one):

* a block starting with ``>>>`` is a doctest (``python -m doctest``);
* a block whose first line is ``# file: NAME`` is a file of a multi-file
  example (the Cython example of docs/api/cython.md): it is written next to
  the other files, built with the ``pip install`` command the page gives, and
  the blocks starting with ``# uses: mymod`` run against the built module;
* any other block runs as a script (the dask example starts its own
  LocalCluster under ``if __name__ == "__main__":``).

Blocks that import torch, jax, dask or threadpoolctl skip when that is not
installed.  Deselected by default (``-m examples`` runs them; .ci/run does,
once the adapters' frameworks are installed).
"""
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.examples

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES = [p for p in PAGES if "_build" not in p.parts]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w{}-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
                   re.S | re.M)
OPTIONAL = {"torch": "torch", "jax": "jax", "dask": "dask", "threadpoolctl": "threadpoolctl"}


def _blocks(page):
    text = page.read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        indent = len(m.group("indent"))
        body = "\n".join(line[indent:] for line in m.group("body").splitlines()) + "\n"
        line = text[:m.start()].count("\n") + 1
        yield m.group("lang"), body, line


def _cases():
    out = []
    for page in PAGES:
        for lang, body, line in _blocks(page):
            first = body.lstrip().splitlines()[0] if body.strip() else ""
            if lang != "python" or first.startswith(("# file:", "# uses:")):
                continue
            out.append(pytest.param(body, id=f"{page.relative_to(ROOT)}:{line}"))
    return out


def _needs(body):
    mods = set(re.findall(r"^\s*(?:import|from)\s+([\w.]+)", body, re.M))
    mods |= {n.strip().split()[0] for imp in re.findall(r"^\s*import\s+(.+)$", body, re.M)
             for n in imp.split(",")}
    missing = []
    for mod in mods:
        top = mod.split(".")[0]
        if mod.startswith("csoftmax."):
            top = mod.split(".")[1]
        if top in OPTIONAL and importlib.util.find_spec(OPTIONAL[top]) is None:
            missing.append(OPTIONAL[top])
    return sorted(set(missing))


def _run(args, cwd, timeout=300):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r


def test_pages_have_blocks():
    assert len(_cases()) >= 15


@pytest.mark.parametrize("body", _cases())
def test_block_runs(body, tmp_path):
    missing = _needs(body)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    if body.lstrip().startswith(">>>"):
        f = tmp_path / "block.txt"
        f.write_text(body)
        r = _run([sys.executable, "-m", "doctest", "-v", "-o", "NORMALIZE_WHITESPACE",
                  str(f)], tmp_path)
        assert "Test passed." in r.stdout
    else:
        f = tmp_path / "block.py"
        f.write_text(body)
        _run([sys.executable, str(f)], tmp_path)


def test_cython_example_builds_with_the_documented_command(tmp_path):
    pytest.importorskip("Cython")
    pytest.importorskip("setuptools")
    page = ROOT / "docs" / "api" / "cython.md"
    files, uses, commands = {}, [], []
    for lang, body, _ in _blocks(page):
        first = body.lstrip().splitlines()[0]
        if first.startswith("# file:"):
            files[first.split(":", 1)[1].strip()] = body
        elif first.startswith("# uses:"):
            uses.append(body)
        elif lang == "bash":
            commands += [line.split("#")[0].strip() for line in body.splitlines()
                         if "--no-build-isolation" in line]
    assert set(files) == {"mymod.pyx", "setup.py"} and uses
    assert commands == ["pip install --no-build-isolation ."]
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    # the page's command, with this interpreter's pip; then the check, then
    # remove the module from the environment again
    args = shlex.split(commands[0])
    try:
        _run([sys.executable, "-m", *args, "-q"], tmp_path, timeout=600)
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        for i, body in enumerate(uses):
            f = run_dir / f"use{i}.py"
            f.write_text(body)
            r = _run([sys.executable, str(f)], run_dir)
            assert "mymod.row_softmax == csoftmax.softmax" in r.stdout
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "mymod"],
                       capture_output=True)
