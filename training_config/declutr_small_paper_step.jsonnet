// DeCLUTR-small with the paper's optimizer step on 1, 2, 4 or 8 GPUs (--ext-var GPUS=N, default 1):
// declutr_base_paper_step.jsonnet (which explains the weights) on distilroberta-base.
//   declutr train training_config/declutr_small_paper_step.jsonnet -s runs/declutr-small --ext-var GPUS=1 \
//     --overrides '{"train_data_path": "data/owt.txt"}'
local lib = import "lib/declutr.libsonnet";

(import "declutr_base_paper_step.jsonnet") + {
  hyperparameters+:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "distilroberta-base"),
  },
}
