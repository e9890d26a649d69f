"""Model update after drift: refresh, distil, ensemble, and a champion/challenger decision.

Once monitoring says a deployed model has degraded (:mod:`kerafine.drift`),
these functions build candidate replacements and decide, on evidence, which
one serves:

* :func:`refresh`: continue fine-tuning on new labels mixed with a replay
  sample of the old training data (adapts without forgetting);
* :func:`distill`: train a small student on a teacher's softened outputs,
  built on ``keras.distillation.Distiller``;
* :func:`ensemble`: one functional model averaging, weighting or stacking members;
* :func:`compare` and :func:`decide`: the champion/challenger table (exact
  ROC-AUC, DeLong intervals, the paired DeLong test against the current
  model) and the promotion rule.

``kerafine update RUN_DIR NEW_DATA`` runs the whole loop on a run of
``kerafine fit`` and keeps numbered model versions (``--rollback``).
"""

from kerafine.update.compare import Comparison, Decision, compare, decide
from kerafine.update.distill import distill
from kerafine.update.ensemble import StackingCombiner, ensemble, stacking_combiner
from kerafine.update.refresh import RefreshResult, refresh, replay_mix

__all__ = [
    "Comparison",
    "Decision",
    "RefreshResult",
    "StackingCombiner",
    "compare",
    "decide",
    "distill",
    "ensemble",
    "refresh",
    "replay_mix",
    "stacking_combiner",
]
