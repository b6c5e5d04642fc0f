"""The adapters' ImportError tells how to install the framework from where
csoftmax really is (a clone; not on PyPI), with the extra quoted."""
import subprocess
import tempfile
import sys

import pytest

import csoftmax  # noqa: F401  (the package under test must be importable)

CASES = [
    ("torch", "torch", 'pip install ".[torch]"',
     "pip install torch --index-url https://download.pytorch.org/whl/cpu"),
    ("jax", "jax", 'pip install ".[jax]"', "pip install jax"),
    ("dask", "dask", 'pip install ".[dask]"', 'pip install "dask[distributed]"'),
]


@pytest.mark.parametrize("adapter,framework,extra,alone", CASES)
def test_adapter_import_error_names_the_install_command(adapter, framework, extra, alone):
    # a None entry in sys.modules makes `import <framework>` raise ImportError,
    # as if it were not installed
    code = (f"import sys; sys.modules[{framework!r}] = None\n"
            f"try:\n    import csoftmax.{adapter}\n"
            f"except ImportError as e:\n    print(e)\nelse:\n    print('IMPORTED')\n")
    # from outside the checkout: `python -c` puts the cwd first on sys.path,
    # and the source tree's csoftmax/ has no compiled _core
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    msg = r.stdout
    assert "IMPORTED" not in msg
    assert extra in msg and alone in msg
    assert "not on PyPI" in msg
    assert "csoftmax[" not in msg          # no `pip install csoftmax[...]`: no such package
