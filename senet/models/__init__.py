"""SE and plain networks for 1-, 2- and 3-D data from typed spec tables; depends on ``senet.layers``.

Importing this package registers every family's builders.
"""

from senet.models.base import ClassifierModel, FeatureListNet
from senet.models.registry import create_model, list_models, load_weights, register_model

from senet.models import resnet  # noqa: F401  (registers the ResNet family)
from senet.models import preact  # noqa: F401  (registers PreAct-ResNet-164 and WRN-16-8)
from senet.models import mobilenet  # noqa: F401  (registers MobileNet v1 and v2)
from senet.models import vgg  # noqa: F401  (registers VGG-16-BN)
from senet.models import inception  # noqa: F401  (registers GoogLeNet / SE-Inception)

__all__ = ["ClassifierModel", "FeatureListNet", "create_model", "list_models", "load_weights", "register_model"]
