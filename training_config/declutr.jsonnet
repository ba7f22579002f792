// DeCLUTR with the paper's hyperparameters on any masked-LM checkpoint (required):
//   declutr train training_config/declutr.jsonnet -s runs/x --ext-var TRANSFORMER_MODEL=name-or-path \
//     --overrides '{"train_data_path": "data/owt.txt"}'
(import "declutr_base.jsonnet") + {
  hyperparameters+:: {
    model_name: std.extVar("TRANSFORMER_MODEL"),
  },
}
