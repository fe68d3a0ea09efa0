"""Models of this project, registered with the transformers Auto classes.

Importing this package lets ``AutoConfig`` / ``AutoModelForTokenClassification`` build the models
by ``model_type``; saved folders also carry ``auto_map`` so they load anywhere with
``trust_remote_code=True``.
"""

from transformers import AutoConfig, AutoModelForTokenClassification

from .configuration_memory_ner import MemoryNetConfig
from .modeling_memory_ner import MemoryNetForTokenClassification

AutoConfig.register(MemoryNetConfig.model_type, MemoryNetConfig, exist_ok=True)
AutoModelForTokenClassification.register(MemoryNetConfig, MemoryNetForTokenClassification, exist_ok=True)
MemoryNetConfig.register_for_auto_class()
MemoryNetForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["MemoryNetConfig", "MemoryNetForTokenClassification"]
