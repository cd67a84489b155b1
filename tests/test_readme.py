"""The README's quickstart runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python block"
    namespace = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "hydra accuracy" in out and "epistemic" in out
    hydra, forest = namespace["hydra"], namespace["forest"]
    X_test, y_test = namespace["X_test"], namespace["y_test"]
    assert hydra.score(X_test, y_test) >= forest.score(X_test, y_test) - 0.03
