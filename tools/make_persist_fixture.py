"""Write the committed .skhydra fixture and the predictions it must keep giving.

    python tools/make_persist_fixture.py

writes ``tests/data/student_v1.skhydra`` (a tiny iris classifier with string
classes, saved by ``skhydra.dump``) and ``tests/data/student_v1_expected.json``
(15 iris rows and the student's predictions of them).
``tests/test_persist.py::test_committed_fixture_still_loads_and_predicts``
loads the file with the current skhydra and compares: a file saved by this
version must load in the next ones. Rerun this script only for a new format
version, and then under a new name (``student_v2...``), keeping the old files
and their test.
"""

import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

import skhydra

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, names)
    student = skhydra.HydraDistilledClassifier(
        forest, body_layer_sizes=(8,), phase1_epochs=5, max_epochs=15, random_state=0
    ).fit(X)
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"student_v{skhydra._persist.FORMAT_VERSION}.skhydra"
    skhydra.dump(student, path)
    rows = X[::10]
    expected = {
        "skhydra_version": skhydra.__version__,
        "X": rows.tolist(),
        "classes": student.classes_.tolist(),
        "predict": student.predict(rows).tolist(),
        "predict_proba": student.predict_proba(rows).tolist(),
        "epistemic": student.predict_uncertainty(rows)["epistemic"].tolist(),
    }
    expected_path = path.with_name(path.stem + "_expected.json")
    expected_path.write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes) and {expected_path}")


if __name__ == "__main__":
    main()
