"""Which settings and data a run's weights were trained with, and whether they still are.

Each checkpoint stores the :func:`fingerprint` of its run's config and the digests of
its data's splits (:meth:`~vi_vae.data.Dataset.digests`);
:meth:`~vi_vae.app.run_directory.RunDirectory.check_fingerprint` refuses a config that
:func:`changed_setting` finds edited since, and data :func:`changed_data` finds other,
so that the weights are never evaluated or reported as another run's.
"""

from __future__ import annotations

from typing import Any

from vi_vae.app.config import RunConfig
from vi_vae.data import SPLITS, Dataset
from vi_vae.estimators import canonical_spelling

__all__ = ["FINGERPRINT_TRAINING_FIELDS", "changed_data", "changed_setting", "fingerprint"]

#: the training settings that shape the trained weights, stored in the checkpoint's
#: fingerprint beside the model's; not ``epochs`` (resuming raises it, and the epochs
#: completed come from the checkpoint), ``device`` or ``compile`` (where and how, not what)
FINGERPRINT_TRAINING_FIELDS = (
    "estimator",
    "seed",
    "batch_size",
    "learning_rate",
    "kl_weight",
    "kl_warmup_epochs",
    "patience",
)


def fingerprint(config: RunConfig, input_dim: int) -> dict[str, dict[str, Any]]:
    """The settings that define a run's trained weights and every setting its report states.

    Stored in each checkpoint;
    :meth:`~vi_vae.app.run_directory.RunDirectory.load_trained` refuses a config that
    differs from it.
    """
    stored = config.model_fingerprint(input_dim)
    stored["data"]["max_train"] = config.data.max_train
    stored["training"] = {
        name: getattr(config.training, name) for name in FINGERPRINT_TRAINING_FIELDS
    }
    return stored


def changed_setting(
    config: RunConfig, input_dim: int, stored: dict[str, dict[str, Any]]
) -> tuple[str, Any, Any] | None:
    """The first ``(section.name, the config's value, the trained value)`` that differs.

    ``stored`` is a checkpoint's fingerprint. A model setting newer than the checkpoint
    had its default when it was trained; a field an older checkpoint did not record
    (its training settings) is not compared. ``None`` when nothing differs.
    """
    defaults = RunConfig().model_fingerprint(input_dim)
    for section, values in fingerprint(config, input_dim).items():
        for name, value in values.items():
            if name in stored.get(section, {}):
                trained = stored[section][name]
            elif section == "model":
                trained = defaults[section][name]
            else:
                continue
            if name == "estimator":  # a checkpoint of 0.3.0's first days kept it as typed
                trained = canonical_spelling(trained)
            if _comparable(trained) != _comparable(value):
                return f"{section}.{name}", value, trained
    return None


def changed_data(dataset: Dataset, trained_on: dict[str, Any]) -> str | None:
    """Which of ``dataset``'s splits differ from those a checkpoint was trained on.

    ``trained_on``: the checkpoint's digests. Returns a clause naming the splits and
    their sizes then and now, or ``None`` when every split is the same.
    """
    now = dataset.digests()
    changed = [split for split in SPLITS if trained_on.get(split) != now[split]]
    if not changed:
        return None
    splits = " and ".join([", ".join(changed[:-1]), changed[-1]] if changed[:-1] else changed)
    points = "; ".join(
        f"{split}: {trained_on.get(split, {}).get('points')} points then, "
        f"{now[split]['points']} now"
        for split in changed
    )
    hold = "splits hold" if changed[1:] else "split holds"
    return f"its {splits} {hold} other points ({points})"


def _comparable(value: Any) -> Any:
    """Lists and tuples alike (JSON has no tuples), numbers by value."""
    if isinstance(value, (list, tuple)):
        return [_comparable(item) for item in value]
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    return value
