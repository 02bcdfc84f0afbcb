"""scrying: mechanistic interpretability of transformer language models.

Hooked TransformerLens models feed four instruments: attribution graphs, attention-head
ablation, emergence (mirage or glimmering) and reversal-curse probes.
"""

from scrying.errors import ScryingError
from scrying.models import DEFAULT_MODEL, LoadConfig, load_model

__all__ = ["DEFAULT_MODEL", "LoadConfig", "ScryingError", "load_model"]
__version__ = "0.1.0"
