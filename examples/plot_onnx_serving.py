"""
=======================================
Serve a student's uncertainty with ONNX
=======================================

:func:`skhydra.to_onnx` exports a fitted student as one ONNX graph that gives
the label, the class probabilities and the ``total``, ``aleatoric`` and
``epistemic`` uncertainty in one call, so a service needs only
:mod:`onnxruntime`, not Python's scientific stack or the ensemble. The
student's input scaling is inside the graph, and so is the preprocessing of a
Pipeline teacher: the graph takes the raw table.

This example distils a Pipeline (a scaler and a random forest) fitted on a
DataFrame, saves the exported graph to a file, runs it with onnxruntime and
compares its uncertainty with the Python student's.
"""

# %%
# Teacher and student
# -------------------
# The teacher is a fitted Pipeline; the student learns from the pipeline's
# scaled features and keeps the scaler to apply in front of itself.
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnx
import onnxruntime
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhydra import HydraDistilledClassifier, onnx_inputs, to_onnx

X, y = load_wine(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0)
teacher = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=30, random_state=0))
teacher.fit(X_train, y_train)
hydra = HydraDistilledClassifier(
    teacher, body_layer_sizes=(32,), phase1_epochs=20, max_epochs=60, random_state=0
).fit(X_train)
print(f"student accuracy: {hydra.score(X_test, y_test):.3f}")

# %%
# Export and save
# ---------------
# A few rows fix the graph's inputs: from a DataFrame, one input per column,
# named after it; the number of rows stays free.
model = to_onnx(hydra, X_train.head(5))
print("inputs: ", [i.name for i in model.graph.input][:4], "...")
print("outputs:", [o.name for o in model.graph.output])

folder = Path(tempfile.mkdtemp())
path = folder / "wine_student.onnx"
onnx.save(model, path)
print(f"saved {path.name}: {path.stat().st_size / 1e3:.0f} kB")

# %%
# Serve with onnxruntime
# ----------------------
# :func:`skhydra.onnx_inputs` turns the DataFrame into the arrays the session
# expects (one ``(n, 1)`` float32 array per column here).
session = onnxruntime.InferenceSession(str(path))
label, probabilities, total, aleatoric, epistemic = session.run(None, onnx_inputs(session, X_test))
python = hydra.predict_uncertainty(X_test)
print(f"labels equal to predict: {bool((label == hydra.predict(X_test)).all())}")
print(
    "max difference from predict_uncertainty (nats): "
    f"{np.abs(epistemic - python['epistemic']).max():.1e} (epistemic), "
    f"{np.abs(total - python['total']).max():.1e} (total)"
)

# %%
# The graph computes in float32 what ``predict_uncertainty`` computes: the
# points lie on the diagonal.
fig, ax = plt.subplots(figsize=(5, 5))
ax.scatter(python["total"], total, s=14, label="total")
ax.scatter(python["epistemic"], epistemic, s=14, marker="x", label="epistemic")
top = max(python["total"].max(), float(total.max())) * 1.05
ax.plot([0, top], [0, top], "k--", lw=1)
ax.set_xlabel("Python student: predict_uncertainty (nats)")
ax.set_ylabel("ONNX graph in onnxruntime (nats)")
ax.set_title("The exported student reports the same uncertainty")
ax.legend()
plt.show()
shutil.rmtree(folder)  # the temporary folder of this example
