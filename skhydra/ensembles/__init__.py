"""Teachers: any supported ensemble -> per-member predictions in the students' layout.

A *teacher* is the ensemble a Hydra student distils. :func:`resolve_teacher`
turns every supported kind of ensemble into a :class:`Teacher`, a flat list of
member adapters that knows its task, classes and weights, and
:func:`predict_members` gives every member's prediction in the layout of the
students' ``predict_members``:

* classification: probabilities of shape (n_samples, n_members, n_classes),
  columns aligned on the union of the members' classes;
* regression: a pair ``(means, variances)`` of shape (n_samples, n_members),
  the variances NaN for members that predict a point only.

Supported ensembles: fitted scikit-learn ensembles with interchangeable members
in ``estimators_`` (random forests, extra trees, bagging with
``estimators_features_``, voting with ``weights``), lists of fitted estimators
(scikit-learn, skorch, Pipelines, Hydra students), a Pipeline whose last step is
one of these (the members then see the pipeline's transformed input),
:class:`~sklearn.frozen.FrozenEstimator` around any of them, and lists of
:class:`torch.nn.Module`. A torch classifier member maps a float32 tensor of
shape (n, n_features) to logits of shape (n, n_classes); a torch regressor
member returns the mean, of shape (n,) or (n, 1), or the mean and the
**variance** (not the log-variance) as two columns of shape (n, 2).

Member predictions computed elsewhere (a Spark or Dask job, a cache on disk)
are a teacher too: wrap them in :class:`MemberPredictions` (a NumPy array,
:class:`numpy.memmap`, zarr or Dask array of shape (n_rows, n_members,
n_classes), or (n_rows, n_members) means for regression, with optional
variances) and pass it as the ``ensemble`` of a Hydra estimator to fit on
the ``X`` they were computed on (row ``i`` of the predictions is row ``i`` of
``X``; no synthetic rows are added, having no predictions). The arrays are
read and checked one chunk of rows at a time, never whole, and the student
predicts exactly like one fitted with the live ensemble without augmentation.
"""

from ._precomputed import MemberPredictions
from ._resolve import resolve_teacher
from ._teacher import Teacher

__all__ = ["MemberPredictions", "Teacher", "predict_members", "resolve_teacher"]


def predict_members(ensemble, X, *, task=None, classes=None, n_jobs=None):
    """Every member's prediction of a supported ensemble, in the students' layout.

    Parameters
    ----------
    ensemble : object
        A fitted supported ensemble (see :mod:`skhydra.ensembles`) or a
        :class:`Teacher`.
    X : array-like or DataFrame of shape (n_samples, n_features)
        Input rows, as the ensemble (or its Pipeline) takes them.
    task : {"classifier", "regressor"}, default=None
        Required for a list of torch modules; checked otherwise.
    classes : array-like, default=None
        Class labels of a torch classifier ensemble (see :func:`resolve_teacher`).
    n_jobs : int, default=None
        Members predict in parallel over ``n_jobs`` joblib workers (threads
        by default; the active :func:`joblib.parallel_config` backend when
        one is set). ``None`` means 1 unless a ``joblib.parallel_config``
        context sets it, ``-1`` all cores. Under joblib's dask backend, the
        cluster's workers predict by blocks of rows.

    Returns
    -------
    probabilities : ndarray of shape (n_samples, n_members, n_classes)
        For classification: float32 probabilities, columns in the order of the
        teacher's ``classes_``; a member that never saw a class gives it 0.
    (means, variances) : tuple of ndarray of shape (n_samples, n_members)
        For regression: float64 means and variances, the variances NaN for
        members that predict a point only.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra.ensembles import predict_members
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    >>> predict_members(forest, X).shape
    (150, 5, 3)
    """
    teacher = resolve_teacher(ensemble, task=task, classes=classes, X=X)
    return teacher.predict_members(teacher.transform(X), n_jobs=n_jobs)
