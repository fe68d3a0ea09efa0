"""Models of this project, registered with the transformers Auto classes.

Importing this package lets ``AutoConfig`` / ``AutoModelForTokenClassification`` build the models
by ``model_type``; saved folders also carry ``auto_map`` so they load anywhere with
``trust_remote_code=True``. Importing it also registers the ``chinese-ner`` pipeline. Without torch it imports
nothing of that, so that ``modeling.onnx_pipeline`` serves an exported model where torch is not installed.
"""

from transformers.utils import is_torch_available

if is_torch_available():  # without torch, the torch-free modules (onnx_pipeline and what it reads) still import
    from transformers import AutoConfig, AutoModelForTokenClassification

    from .configuration_memory_ner import MemoryNetConfig
    from .configuration_seq2seq_ner import Seq2SeqAttnConfig
    from .modeling_memory_ner import MemoryNetForTokenClassification
    from .modeling_seq2seq_ner import Seq2SeqAttnTagger
    from .pipeline_ner import TASK as PIPELINE_TASK, ChineseNERPipeline  # registers the "chinese-ner" pipeline

    for _config, _model in (
        (MemoryNetConfig, MemoryNetForTokenClassification),
        (Seq2SeqAttnConfig, Seq2SeqAttnTagger),
    ):
        AutoConfig.register(_config.model_type, _config, exist_ok=True)
        AutoModelForTokenClassification.register(_config, _model, exist_ok=True)
        _config.register_for_auto_class()
        _model.register_for_auto_class("AutoModelForTokenClassification")

__all__ = [
    "ChineseNERPipeline",
    "PIPELINE_TASK",
    "MemoryNetConfig",
    "MemoryNetForTokenClassification",
    "Seq2SeqAttnConfig",
    "Seq2SeqAttnTagger",
]
