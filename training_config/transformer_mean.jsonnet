// Baseline "Transformer-small" (DeCLUTR paper): the untrained checkpoint with mean pooling.
// No training: the run directory's model/ is the export, ready for `declutr evaluate`.
//   declutr train training_config/transformer_mean.jsonnet -s runs/transformer-small
//   declutr train training_config/transformer_mean.jsonnet -s runs/transformer-base --ext-var TRANSFORMER_MODEL=roberta-base
local lib = import "lib/declutr.libsonnet";

lib.transformer {
  hyperparameters:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "distilroberta-base"),
    pooler: "mean",  // all non-padding tokens, special tokens included
  },
}
