"""The pipeline on Kubeflow Pipelines v2 (`kfp`): the stages of
`seminar_tf.orchestration.stages` as KFP components with directory artifacts in between.

    seminar compile-pipeline --out pipeline.yaml [--base-image IMAGE]

writes the KFP IR for a KFP / Vertex AI Pipelines cluster (the image must have this project
installed, e.g. built from this repository with `pip install .`). For a local run without a
cluster, `run_local` executes the same pipeline with `kfp.local.SubprocessRunner` in the
current environment. Each component calls the same stage function as `seminar run-pipeline`.
"""
import json
from typing import Dict, Optional

from kfp import compiler, dsl
from kfp.dsl import Artifact, Input, Output

DEFAULT_IMAGE = "seminar-tf:latest"


# Component bodies: self-contained functions (KFP ships their source to the container).
def generate_op(config_json: str, raw: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    out = stages.generate(json.loads(config_json), raw.path)
    raw.metadata["stats"] = out["stats"]


def preprocess_op(config_json: str, raw: Input[Artifact], data: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    out = stages.preprocess(json.loads(config_json), raw.path, data.path)
    data.metadata.update({"examples": out["examples"], "events": out["events"]})


def pretrain_op(config_json: str, data: Input[Artifact], psu: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    out = stages.pretrain(json.loads(config_json), data.path, psu.path)
    psu.metadata["alignment_after"] = out["alignment_after"]


def finetune_op(config_json: str, data: Input[Artifact], psu: Input[Artifact],
                model: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    out = stages.train(json.loads(config_json), data.path, model.path, "seminar",
                       init_from=psu.path)
    model.metadata["steps"] = out["steps"]


def baseline_op(config_json: str, data: Input[Artifact], model: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    cfg = json.loads(config_json)
    out = stages.train(cfg, data.path, model.path, cfg["baseline"])
    model.metadata["steps"] = out["steps"]


def codebooks_op(config_json: str, data: Input[Artifact], model: Input[Artifact],
                 coded_model: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    out = stages.codebooks(json.loads(config_json), model.path, data.path, coded_model.path)
    coded_model.metadata["recall_at_k"] = out["recall_at_k"]


def evaluate_op(config_json: str, data: Input[Artifact], model: Input[Artifact],
                baseline: Input[Artifact], metrics: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    out = stages.evaluate(json.loads(config_json), data.path, model.path, baseline.path,
                          metrics.path)
    metrics.metadata["table"] = out["table"]


def export_op(config_json: str, data: Input[Artifact], model: Input[Artifact],
              saved_model: Output[Artifact]):
    import json
    from seminar_tf.orchestration import stages
    out = stages.export(json.loads(config_json), model.path, data.path, saved_model.path)
    saved_model.metadata["version_dir"] = out.get("path", "")


def build(base_image: str = DEFAULT_IMAGE):
    """The `@dsl.pipeline` function with components on `base_image`."""
    def component(fn):
        return dsl.component(func=fn, base_image=base_image)

    ops = {name: component(fn) for name, fn in (
        ("generate", generate_op), ("preprocess", preprocess_op),
        ("pretrain", pretrain_op), ("finetune", finetune_op), ("baseline", baseline_op),
        ("codebooks", codebooks_op), ("evaluate", evaluate_op), ("export", export_op))}

    @dsl.pipeline(name="seminar-tf", description="SEMINAR: generate, preprocess (Beam), "
                  "pretrain the PSU, finetune, baseline, PQ codebooks, evaluate, export")
    def seminar_pipeline(config_json: str = "{}") -> Artifact:
        g = ops["generate"](config_json=config_json)
        p = ops["preprocess"](config_json=config_json, raw=g.outputs["raw"])
        data = p.outputs["data"]
        pt = ops["pretrain"](config_json=config_json, data=data)
        ft = ops["finetune"](config_json=config_json, data=data, psu=pt.outputs["psu"])
        bl = ops["baseline"](config_json=config_json, data=data)
        cb = ops["codebooks"](config_json=config_json, data=data, model=ft.outputs["model"])
        ev = ops["evaluate"](config_json=config_json, data=data,
                             model=cb.outputs["coded_model"], baseline=bl.outputs["model"])
        ops["export"](config_json=config_json, data=data, model=cb.outputs["coded_model"])
        return ev.outputs["metrics"]

    return seminar_pipeline


def full_config(config: Optional[Dict] = None) -> str:
    """The pipeline config (DEFAULTS merged with `config`) as the JSON parameter."""
    from seminar_tf.orchestration.run_pipeline import DEFAULTS, merge
    return json.dumps(merge(DEFAULTS, config or {}), sort_keys=True)


def compile_pipeline(out: str, base_image: str = DEFAULT_IMAGE) -> str:
    """Writes the KFP IR YAML to `out`; returns the path."""
    compiler.Compiler().compile(build(base_image), out)
    return out


def run_local(config: Optional[Dict], pipeline_root: str) -> str:
    """Runs the pipeline with kfp.local's SubprocessRunner in this environment; returns the
    directory of the evaluate stage's metrics artifact (it holds metrics.json)."""
    from kfp import local
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root)
    task = build("python:3.11")(config_json=full_config(config))
    return task.output.path
