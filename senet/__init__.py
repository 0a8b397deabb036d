"""senet: Squeeze-and-Excitation networks for PyTorch, for 1-D, 2-D and 3-D data.

Layout (imports only point downward):

- ``senet.layers``: the SE block and its relatives; depends only on torch.
- ``senet.models``: SE and plain networks built from spec tables; depends on layers.
- ``senet.interop``, ``senet.analysis``, ``senet.data``, ``senet.train``, ``senet.bench``: build on models and layers.
- ``senet.cli``: parses arguments and wires the above together.
"""

__version__ = "0.1.0"
