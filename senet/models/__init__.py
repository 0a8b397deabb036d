"""SE and plain networks for 1-, 2- and 3-D data from typed spec tables; depends on ``senet.layers``.

Importing this package registers every family's builders.
"""

from senet.models.base import ClassifierModel, FeatureListNet
from senet.models.registry import create_model, list_models, load_weights, register_model

__all__ = ["ClassifierModel", "FeatureListNet", "create_model", "list_models", "load_weights", "register_model"]
