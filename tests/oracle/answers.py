"""API objects as the documents describe the answers, keyed per kind as the fake stores them.

Each object is what the calls serving it return together (the fake serves each call its own
documented subset): a custom set carries what its listing item documents (``modelCount``,
``modelIds``, ``modelNames``, ``labels``, both times) and the ``source`` of DescribeModelSet; a
preset set what the preset listing documents plus DescribeSystemModelSet's ``createTime``, which
the listing lacks. Where a seed's example is broken JSON (Python ``True``, trailing commas,
duplicate keys, a list written as an object) the intended value is used and the choice noted.

Besides the seeds' examples: every documented time form (offset, Go's nanosecond RFC 3339 and
its trimmed fraction, ``Z``, Go's ``+0800 CST``) and the zero time; a 100 GB export; unicode,
emoji and quoted names; a failed compression task with its ``failedReason``; an evaluation export
tracked by its int ``exportID`` and one by its ``amemt-`` string.
"""

from __future__ import annotations

from typing import Any

ZERO = "0001-01-01T00:00:00Z"

MODEL_SETS: dict[str, dict[str, Any]] = {
    # Seed 003 (DescribeModelSet). Its example repeats createTime ("2024-04-10T17:16:22+08:00",
    # then the zero time); the first, meaningful one is used. Its description "" is the
    # describe call's: the custom listing, which the sync records sets from, has none.
    "am-upqiuctdx15t": {
        "modelSetId": "am-upqiuctdx15t",
        "modelSetName": "cl_test_hf1",
        "source": "UserCreate",
        "modelType": "Text2Text",
        "labels": ["hf"],
        "createTime": "2024-04-10T17:16:22+08:00",
        "description": "",
        "modifyTime": ZERO,
        "modelCount": 1,
        "modelIds": ["amv-cbm3kwsw053v"],
        "modelNames": ["V1"],
    },
    # The set of seed 004's version (its id and name are the seed's).
    "am-txtetnsfq9sb": {
        "modelSetId": "am-txtetnsfq9sb",
        "modelSetName": "chatglm32k_v10",
        "source": "UserCreate",
        "modelType": "Text2Text",
        "labels": [],
        "createTime": "2023-12-15T16:00:00+08:00",
        "modifyTime": "2024-01-04T16:10:45+08:00",
        "modelCount": 1,
        "modelIds": ["amv-sxw7atka4jk0"],
        "modelNames": ["V2"],
    },
    # A unicode and quoted name; Go's default time String(); a one-digit trimmed fraction.
    "am-unicode0001x": {
        "modelSetId": "am-unicode0001x",
        "modelSetName": '法律问答 "内测" O\'Brien ☕',
        "source": "UserCreate",
        "modelType": "Text2Text",
        "labels": ["法律", "客服"],
        "createTime": "2023-06-24 22:19:40 +0800 CST",
        "modifyTime": "2024-01-04T16:10:45.5+08:00",
        "modelCount": 1,
        "modelIds": ["amv-unicodev0001"],
        "modelNames": ['V1 "beta"'],
    },
    # A preset set: its listing item has description and modifyTime (here in the Z form) but no
    # createTime, which only DescribeSystemModelSet answers.
    "am-presetq1w2e3r": {
        "modelSetId": "am-presetq1w2e3r",
        "modelSetName": "ERNIE-Speed",
        "source": "System",
        "modelType": "Text2Text",
        "description": "百度自研的高性能大语言模型",
        "createTime": "2023-12-01T00:00:00Z",
        "modifyTime": "2024-02-01T10:00:00Z",
        "modelCount": 1,
        "modelIds": ["amv-preset00001"],
        "modelNames": ["ERNIE-Speed-8K"],
    },
}

MODEL_VERSIONS: dict[str, dict[str, Any]] = {
    # Seed 004 (DescribeModel). Its example writes modelCompConfigs as a list holding bare
    # key/value pairs: one object was meant. trainTaskId is an int there (the table says string).
    # endpointType, ioTokens and resourceConfig are in the example but not the table.
    "amv-sxw7atka4jk0": {
        "modelSetId": "am-txtetnsfq9sb",
        "modelSetName": "chatglm32k_v10",
        "modelId": "amv-sxw7atka4jk0",
        "modelName": "V2",
        "description": "clc_test_publish_chatglm32k_v10",
        "sourceInfo": {"sourceType": "Train", "trainTaskId": 423},
        "status": "Ready",
        "endpointType": "chat",
        "ioTokens": "",
        "createTime": "2023-12-15T16:30:06+08:00",
        "modifyTime": "2024-01-04T16:10:45+08:00",
        "isSupportDeploy": True,
        "isSupportModelComp": False,
        "isSupportEvaluation": True,
        "resourceConfig": {"resourceId": "prl-yqec88en7r08"},
        "modelCompConfigs": [{"strategy": "Sparsity", "sparsityRatio": 0.5}],
    },
    # Seed 003's version, with every field of seed 004's table: an import, a reranker's limits,
    # advanced settings, no description (omitted when empty), Go's nanosecond time, zero time.
    "amv-cbm3kwsw053v": {
        "modelSetId": "am-upqiuctdx15t",
        "modelSetName": "cl_test_hf1",
        "modelId": "amv-cbm3kwsw053v",
        "modelName": "V1",
        "model": "Qwen1.5-7B-Chat",
        "status": "Creating",
        "sourceInfo": {
            "sourceType": "Import",
            "importModelVersionBosUrl": "bos:/qianfan-import/abcd1234/model/",
        },
        "modelApplicationType": "reranker",
        "tokenLimitations": {
            "reranker": {
                "queryTokens": 512,
                "queryCharacterLimit": 1600,
                "documentTokens": 2048,
                "documentCharacterLimit": 8192,
            }
        },
        "isSupportDeploy": False,
        "isSupportModelComp": True,
        "isSupportEvaluation": False,
        "advancedSettings": {"samplingStrategy": "beamSearch", "numBeams": 4, "topLogprobs": 5},
        "modelCompConfigs": [{"strategy": "Quantization", "weight": "W8A16C16"}],
        "createTime": "2024-04-10T17:20:01.123456789+08:00",
        "modifyTime": ZERO,
    },
    # Quotes in names and description; an acceleration source; Z and CST times.
    "amv-unicodev0001": {
        "modelSetId": "am-unicode0001x",
        "modelSetName": '法律问答 "内测" O\'Brien ☕',
        "modelId": "amv-unicodev0001",
        "modelName": 'V1 "beta"',
        "model": "ERNIE-Speed-8K",
        "description": "α测试 «引号» \"double\" 'single'",
        "status": "Fail",
        "sourceInfo": {"sourceType": "Acceleration", "accelerationTaskId": "amva-accel00001"},
        "modelApplicationType": "completion",
        "tokenLimitations": {
            "trivial": {"inputTokens": 11200, "outputTokens": 4096, "characterLimit": 44800}
        },
        "isSupportDeploy": True,
        "isSupportModelComp": True,
        "isSupportEvaluation": True,
        "modelCompConfigs": [],
        "createTime": "2024-03-22T09:13:33Z",
        "modifyTime": "2024-03-22 17:13:34 +0800 CST",
    },
    # A preset version: DescribeSystemModel's 14 fields only (no model, no sourceInfo, no set
    # name).
    "amv-preset00001": {
        "modelSetId": "am-presetq1w2e3r",
        "modelId": "amv-preset00001",
        "modelName": "ERNIE-Speed-8K",
        "status": "Ready",
        "description": "ERNIE-Speed 8K",
        "createTime": "2023-12-01 08:00:00 +0800 CST",
        "modifyTime": "2024-02-01T18:00:00.000001+08:00",
        "modelApplicationType": "chat",
        "tokenLimitations": {
            "trivial": {"inputTokens": 7168, "outputTokens": 2048, "characterLimit": 28672}
        },
        "isSupportDeploy": True,
        "isSupportModelComp": False,
        "isSupportEvaluation": True,
        "capabilities": ["function_call"],
        "modelProviders": ["百度"],
    },
}

COMPRESSION_TASKS: dict[str, dict[str, Any]] = {
    # Seed 002, first example (Python-style quotes and True repaired): Go's CST times, no config.
    "amva-1xbw8bvw1aq0": {
        "id": "amva-1xbw8bvw1aq0",
        "name": "BLOOM_摘要生成_量化压缩INT8",
        "description": "压缩模型",
        "status": "succeeded",
        "sourceModelId": "amv-3xjmpyuu7ues",
        "modelId": "amv-f3ny6mmpm56d",
        "createTime": "2023-06-24 22:19:40 +0800 CST",
        "finishTime": "2023-06-24 23:32:53 +0800 CST",
    },
    # Seed 002, the other examples: a quantization config, no finish time.
    "amva-j05zi5ebfqf1": {
        "id": "amva-j05zi5ebfqf1",
        "name": "demo",
        "description": "test",
        "status": "succeeded",
        "sourceModelId": "amv-m45zi5edgff1",
        "modelId": "amv-s4678i5edgff",
        "config": {"strategy": "Quantization", "quantConf": "wint8"},
        "createTime": "2024-03-22T17:13:33+08:00",
    },
    # A failed task: empty output model (documented), the reason from DescribeModelCompTask,
    # a quoted name, Go's nanosecond creation time, a Z finish time.
    "amva-failed0000x": {
        "id": "amva-failed0000x",
        "name": "量化 \"W4\" 'test' 任务",
        "description": "夜间批量压缩",
        "status": "failed",
        "failedReason": "压缩任务运行失败：GPU资源不足，请稍后重试",
        "sourceModelId": "amv-sxw7atka4jk0",
        "modelId": "",
        "config": {"strategy": "Sparsity", "sparsityRatio": 0.3},
        "createTime": "2024-05-01T08:00:00.123456789+08:00",
        "finishTime": "2024-05-01T09:30:00Z",
    },
    # A running task: the zero finish time, an empty description, an emoji in its name.
    "amva-running0001": {
        "id": "amva-running0001",
        "name": "稀疏化🚀实验",
        "description": "",
        "status": "running",
        "sourceModelId": "amv-unicodev0001",
        "modelId": "",
        "config": {"strategy": "Sparsity", "sparsityRatio": 0.5},
        "createTime": "2024-06-01T08:00:00+08:00",
        "finishTime": ZERO,
    },
}

MODEL_EXPORTS: dict[str, dict[str, Any]] = {
    # Seed 000. Its example repeats exportId; the second, real-looking one is used. Its state is
    # "done" in lower case (the table says Done), kept as answered. fileSize is ~106 GB.
    "amv-sxw7atka4jk0": {
        "exportId": "amve-xdakjnyn8nt5",
        "hasRecord": True,
        "state": "done",
        "fileName": "xxx_model_5d8580xxxf2f2a3c6ebffd.tar",
        "fileType": "Model",
        "md5": "5d858076889xxx2a3c6ebffd",
        "fileSize": 105664295936,
        "downloadUrl": "https://xxxx.com/xxxx/xxx_model_5d8580xxxf2f2a3c6ebffd.tar",
    },
    # An export still running: the file fields come only once it is done.
    "amv-unicodev0001": {
        "exportId": "amve-doing000001",
        "hasRecord": True,
        "state": "Doing",
    },
    # amv-cbm3kwsw053v has no export: the call answers hasRecord false.
}

EVAL_RESULT_EXPORTS: dict[int, dict[str, Any]] = {
    # Seed 001's HTTP example: a user-BOS export, no download link (""), no idStr.
    96: {
        "id": 305,
        "exportID": 96,
        "exportIDStr": "amemt-hkkf5y9e64j8",
        "state": "Done",
        "exportType": "storage",
        "volumeId": "modelrepo-test",
        "exportPath": "qianfan_modelrepo_offline/workspace/model_eval_result_export/"
        "cl_test23_305_1704338430470.csv",
        "downloadUrl": "",
    },
    # Seed 001's SDK example, whose id and exportID are elided ("..."): these are made up.
    97: {
        "id": 306,
        "idStr": "ame-xxx",
        "exportID": 97,
        "exportIDStr": "amemt-abc123def456",
        "state": "Done",
        "exportType": "local",
        "volumeId": "aipe-dragonboat",
        "exportPath": "qianfan_modelrepo/workspace/model_eval_result_export/xxx.zip",
        "downloadUrl": "https://aipe-dragonboat.bj.bcebos.com/qianfan_modelrepo/workspace/"
        "model_eval_result_export/xxx",
    },
}

#: How the sync is told to track the evaluation exports: one by int, one by its string id.
TRACKED_EVAL_REFS = ["96", "amemt-abc123def456"]

#: Per kind as the fake keys it (docs/architecture.md).
BY_KIND: dict[str, dict[Any, dict[str, Any]]] = {
    "model_set": MODEL_SETS,
    "model_version": MODEL_VERSIONS,
    "compression_task": COMPRESSION_TASKS,
    "model_export": MODEL_EXPORTS,
    "eval_result_export": EVAL_RESULT_EXPORTS,
}
