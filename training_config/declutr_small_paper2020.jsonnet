// DeCLUTR-small as the released 2020 models were trained: declutr_base_paper2020.jsonnet (spans
// of 32-512 whitespace words, the 2048 minimum in words, spans truncated to 510 subword tokens)
// on distilroberta-base.
//   declutr train training_config/declutr_small_paper2020.jsonnet -s runs/declutr-small-2020 \
//     --overrides '{"train_data_path": "data/owt-words.txt"}'
local lib = import "lib/declutr.libsonnet";

(import "declutr_base_paper2020.jsonnet") + {
  hyperparameters+:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "distilroberta-base"),
  },
}
