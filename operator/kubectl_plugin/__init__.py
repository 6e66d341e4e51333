"""``kubectl promotion``: list, inspect, watch and steer ModelPromotions from kubectl.

Installed with the package as the ``kubectl-promotion`` console script, so that
``kubectl promotion ...`` finds it on ``PATH``. It talks only to the Kubernetes
API, with the user's kubeconfig (``KUBECONFIG``, ``--kubeconfig``,
``--context``): never to Seldon Deploy, and never with the operator's
credentials. Requests to a run (approve, abort, retry, resume) are annotations
on the ModelPromotion, written as JSON merge patches guarded by the
``resourceVersion`` just read, so a concurrent change is re-read, never lost and
never overwritten.

Modules: :mod:`.resource` reads a ModelPromotion and decides (pure functions:
phases, exit codes, what a request writes), :mod:`.render` formats tables and
summaries (pure), :mod:`.kube` is the API access and its errors, :mod:`.cli` the
commands and their arguments.
"""
