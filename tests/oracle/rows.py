"""The rows a sync of ``answers.py`` must leave, every column a user queries, worked out by hand.

Times are UTC: ``+08:00`` and ``+0800 CST`` are eight hours ahead, ``Z`` is UTC, the zero time
and an absent time are NULL. Fractions keep microseconds and drop the rest (Go's nanoseconds
``.123456789`` -> ``.123456``; a trimmed ``.5`` -> ``.500000``). Empty strings are NULL; ids
the API gives as numbers are text where the column is text (``trainTaskId`` 423 -> ``'423'``).
A listing answers for sets, so a custom set has no description; a preset set's creation time is
its describe call's (DescribeSystemModelSet), which its listing item lacks. A task's
``failed_reason`` is asked for only when it failed; NULL otherwise. Download links are stored
without the query string the service signs them with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: Columns the sync keeps for itself, not compared with the oracle (the account is no answer's:
#: the sync's --account).
BOOKKEEPING = frozenset(
    {"account", "raw", "raw_hash", "first_seen_run_id", "last_seen_run_id", "deleted_at",
     "deleted_run_id"}
)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int,
        micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


UNICODE_SET_NAME = '法律问答 "内测" O\'Brien ☕'

MODEL_SETS: dict[str, dict[str, Any]] = {
    "am-upqiuctdx15t": {
        "model_set_id": "am-upqiuctdx15t",
        "model_set_name": "cl_test_hf1",
        "source": "UserCreate",
        "model_type": "Text2Text",
        "is_system": False,
        "labels": ["hf"],
        "description": None,
        "model_ids": ["amv-cbm3kwsw053v"],
        "create_time": utc(2024, 4, 10, 9, 16, 22),
        "modify_time": None,  # the zero time
    },
    "am-txtetnsfq9sb": {
        "model_set_id": "am-txtetnsfq9sb",
        "model_set_name": "chatglm32k_v10",
        "source": "UserCreate",
        "model_type": "Text2Text",
        "is_system": False,
        "labels": [],
        "description": None,
        "model_ids": ["amv-sxw7atka4jk0"],
        "create_time": utc(2023, 12, 15, 8, 0, 0),
        "modify_time": utc(2024, 1, 4, 8, 10, 45),
    },
    "am-unicode0001x": {
        "model_set_id": "am-unicode0001x",
        "model_set_name": UNICODE_SET_NAME,
        "source": "UserCreate",
        "model_type": "Text2Text",
        "is_system": False,
        "labels": ["法律", "客服"],
        "description": None,
        "model_ids": ["amv-unicodev0001"],
        "create_time": utc(2023, 6, 24, 14, 19, 40),
        "modify_time": utc(2024, 1, 4, 8, 10, 45, 500000),
    },
    "am-presetq1w2e3r": {
        "model_set_id": "am-presetq1w2e3r",
        "model_set_name": "ERNIE-Speed",
        "source": "System",
        "model_type": "Text2Text",
        "is_system": True,
        "labels": None,
        "description": "百度自研的高性能大语言模型",
        "model_ids": ["amv-preset00001"],
        "create_time": utc(2023, 12, 1, 0, 0, 0),  # "...Z", from DescribeSystemModelSet
        "modify_time": utc(2024, 2, 1, 10, 0, 0),
    },
}

_NO_LIMITS = {
    "input_tokens": None,
    "output_tokens": None,
    "character_limit": None,
    "query_tokens": None,
    "query_character_limit": None,
    "document_tokens": None,
    "document_character_limit": None,
}

MODEL_VERSIONS: dict[str, dict[str, Any]] = {
    "amv-sxw7atka4jk0": {
        "model_id": "amv-sxw7atka4jk0",
        "model_set_id": "am-txtetnsfq9sb",
        "model_set_name": "chatglm32k_v10",
        "model_name": "V2",
        "model": None,
        "status": "Ready",
        "description": "clc_test_publish_chatglm32k_v10",
        "source_type": "Train",
        "train_task_id": "423",
        "acceleration_task_id": None,
        "import_model_version_bos_url": None,
        # seed 004's example says endpointType, its field table modelApplicationType
        "model_application_type": "chat",
        **_NO_LIMITS,
        "is_support_deploy": True,
        "is_support_model_comp": False,
        "is_support_evaluation": True,
        "sampling_strategy": None,
        "num_beams": None,
        "top_logprobs": None,
        "model_comp_configs": [{"strategy": "Sparsity", "sparsityRatio": 0.5}],
        "create_time": utc(2023, 12, 15, 8, 30, 6),
        "modify_time": utc(2024, 1, 4, 8, 10, 45),
    },
    "amv-cbm3kwsw053v": {
        "model_id": "amv-cbm3kwsw053v",
        "model_set_id": "am-upqiuctdx15t",
        "model_set_name": "cl_test_hf1",
        "model_name": "V1",
        "model": "Qwen1.5-7B-Chat",
        "status": "Creating",
        "description": None,
        "source_type": "Import",
        "train_task_id": None,
        "acceleration_task_id": None,
        "import_model_version_bos_url": "bos:/qianfan-import/abcd1234/model/",
        "model_application_type": "reranker",
        **_NO_LIMITS,
        "query_tokens": 512,
        "query_character_limit": 1600,
        "document_tokens": 2048,
        "document_character_limit": 8192,
        "is_support_deploy": False,
        "is_support_model_comp": True,
        "is_support_evaluation": False,
        "sampling_strategy": "beamSearch",
        "num_beams": 4,
        "top_logprobs": 5,
        "model_comp_configs": [{"strategy": "Quantization", "weight": "W8A16C16"}],
        "create_time": utc(2024, 4, 10, 9, 20, 1, 123456),
        "modify_time": None,  # the zero time
    },
    "amv-unicodev0001": {
        "model_id": "amv-unicodev0001",
        "model_set_id": "am-unicode0001x",
        "model_set_name": UNICODE_SET_NAME,
        "model_name": 'V1 "beta"',
        "model": "ERNIE-Speed-8K",
        "status": "Fail",
        "description": "α测试 «引号» \"double\" 'single'",
        "source_type": "Acceleration",
        "train_task_id": None,
        "acceleration_task_id": "amva-accel00001",
        "import_model_version_bos_url": None,
        "model_application_type": "completion",
        **_NO_LIMITS,
        "input_tokens": 11200,
        "output_tokens": 4096,
        "character_limit": 44800,
        "is_support_deploy": True,
        "is_support_model_comp": True,
        "is_support_evaluation": True,
        "sampling_strategy": None,
        "num_beams": None,
        "top_logprobs": None,
        "model_comp_configs": [],
        "create_time": utc(2024, 3, 22, 9, 13, 33),
        "modify_time": utc(2024, 3, 22, 9, 13, 34),
    },
    "amv-preset00001": {
        "model_id": "amv-preset00001",
        "model_set_id": "am-presetq1w2e3r",
        "model_set_name": None,  # DescribeSystemModel does not answer it
        "model_name": "ERNIE-Speed-8K",
        "model": None,
        "status": "Ready",
        "description": "ERNIE-Speed 8K",
        "source_type": None,
        "train_task_id": None,
        "acceleration_task_id": None,
        "import_model_version_bos_url": None,
        "model_application_type": "chat",
        **_NO_LIMITS,
        "input_tokens": 7168,
        "output_tokens": 2048,
        "character_limit": 28672,
        "is_support_deploy": True,
        "is_support_model_comp": False,
        "is_support_evaluation": True,
        "sampling_strategy": None,
        "num_beams": None,
        "top_logprobs": None,
        "model_comp_configs": None,
        "create_time": utc(2023, 12, 1, 0, 0, 0),
        "modify_time": utc(2024, 2, 1, 10, 0, 0, 1),
    },
}

COMPRESSION_TASKS: dict[str, dict[str, Any]] = {
    "amva-1xbw8bvw1aq0": {
        "task_id": "amva-1xbw8bvw1aq0",
        "name": "BLOOM_摘要生成_量化压缩INT8",
        "description": "压缩模型",
        "status": "succeeded",
        "source_model_id": "amv-3xjmpyuu7ues",
        "model_id": "amv-f3ny6mmpm56d",
        "strategy": None,
        "quant_conf": None,
        "sparsity_ratio": None,
        "config": None,
        "failed_reason": None,
        "create_time": utc(2023, 6, 24, 14, 19, 40),
        "finish_time": utc(2023, 6, 24, 15, 32, 53),
    },
    "amva-j05zi5ebfqf1": {
        "task_id": "amva-j05zi5ebfqf1",
        "name": "demo",
        "description": "test",
        "status": "succeeded",
        "source_model_id": "amv-m45zi5edgff1",
        "model_id": "amv-s4678i5edgff",
        "strategy": "Quantization",
        "quant_conf": "wint8",
        "sparsity_ratio": None,
        "config": {"strategy": "Quantization", "quantConf": "wint8"},
        "failed_reason": None,
        "create_time": utc(2024, 3, 22, 9, 13, 33),
        "finish_time": None,
    },
    "amva-failed0000x": {
        "task_id": "amva-failed0000x",
        "name": "量化 \"W4\" 'test' 任务",
        "description": "夜间批量压缩",
        "status": "failed",
        "source_model_id": "amv-sxw7atka4jk0",
        "model_id": None,
        "strategy": "Sparsity",
        "quant_conf": None,
        "sparsity_ratio": 0.3,
        "config": {"strategy": "Sparsity", "sparsityRatio": 0.3},
        "failed_reason": "压缩任务运行失败：GPU资源不足，请稍后重试",
        "create_time": utc(2024, 5, 1, 0, 0, 0, 123456),
        "finish_time": utc(2024, 5, 1, 9, 30, 0),
    },
    "amva-running0001": {
        "task_id": "amva-running0001",
        "name": "稀疏化🚀实验",
        "description": None,
        "status": "running",
        "source_model_id": "amv-unicodev0001",
        "model_id": None,
        "strategy": "Sparsity",
        "quant_conf": None,
        "sparsity_ratio": 0.5,
        "config": {"strategy": "Sparsity", "sparsityRatio": 0.5},
        "failed_reason": None,
        "create_time": utc(2024, 6, 1, 0, 0, 0),
        "finish_time": None,  # the zero time
    },
}

MODEL_EXPORTS: dict[str, dict[str, Any]] = {
    "amv-sxw7atka4jk0": {
        "model_id": "amv-sxw7atka4jk0",
        "export_id": "amve-xdakjnyn8nt5",
        "state": "done",
        "file_name": "xxx_model_5d8580xxxf2f2a3c6ebffd.tar",
        "file_type": "Model",
        "md5": "5d858076889xxx2a3c6ebffd",
        "file_size": 105664295936,
        "download_url": "https://xxxx.com/xxxx/xxx_model_5d8580xxxf2f2a3c6ebffd.tar",
    },
    "amv-unicodev0001": {
        "model_id": "amv-unicodev0001",
        "export_id": "amve-doing000001",
        "state": "Doing",
        "file_name": None,
        "file_type": None,
        "md5": None,
        "file_size": None,
        "download_url": None,
    },
}

EVAL_RESULT_EXPORTS: dict[int, dict[str, Any]] = {
    96: {
        "export_id": 96,
        "export_id_str": "amemt-hkkf5y9e64j8",
        "record_id": 305,
        "record_id_str": None,
        "state": "Done",
        "export_type": "storage",
        "volume_id": "modelrepo-test",
        "export_path": "qianfan_modelrepo_offline/workspace/model_eval_result_export/"
        "cl_test23_305_1704338430470.csv",
        "download_url": None,
    },
    97: {
        "export_id": 97,
        "export_id_str": "amemt-abc123def456",
        "record_id": 306,
        "record_id_str": "ame-xxx",
        "state": "Done",
        "export_type": "local",
        "volume_id": "aipe-dragonboat",
        "export_path": "qianfan_modelrepo/workspace/model_eval_result_export/xxx.zip",
        "download_url": "https://aipe-dragonboat.bj.bcebos.com/qianfan_modelrepo/workspace/"
        "model_eval_result_export/xxx",
    },
}

#: Per table, its rows by primary key.
TABLES: dict[str, dict[Any, dict[str, Any]]] = {
    "model_sets": MODEL_SETS,
    "model_versions": MODEL_VERSIONS,
    "compression_tasks": COMPRESSION_TASKS,
    "model_exports": MODEL_EXPORTS,
    "eval_result_exports": EVAL_RESULT_EXPORTS,
}
