"""Weight interop with timm, torchvision and MONAI for senet's ResNet family; depends on ``senet.models``.

- :func:`convert_state_dict` (peer -> senet), :func:`export_state_dict` (senet -> peer),
  :func:`convert_file` (a checkpoint on disk, for ``senet convert``).
- What a state dict cannot show (stride placement, stem pooling, SE gate) is checked against the senet
  model whenever one is given, so a checkpoint never loads silently into a network that computes something
  else; loading is strict (``senet.models.registry.check_state_dict``).
- The peers are optional: this package never imports timm, torchvision or MONAI; it reads their state dicts.

Which senet model matches which peer network: timm ``resnet*``/``resnext*``/``seresnet*``/``seresnext*``/
``legacy_*`` -> the senet model of the same name; torchvision ``resnet*``/``resnext*`` -> same name; MONAI
``SEResNet50/101/152`` -> ``legacy_seresnet50/101/152``, ``SEResNext50/101`` -> ``legacy_seresnext50_32x4d``/
``legacy_seresnext101_32x4d``, ``SENet154`` -> ``legacy_senet154`` (at ``spatial_dims`` 1, 2 or 3).
"""

from senet.interop.common import infer_options
from senet.interop.convert import FORMATS, convert_state_dict, export_state_dict
from senet.interop.files import convert_file, read_checkpoint

__all__ = ["FORMATS", "convert_state_dict", "export_state_dict", "convert_file", "read_checkpoint", "infer_options"]
