// Baseline: the untrained checkpoint with the first token's vector (<s> / [CLS]) as the embedding.
// No training: the run directory's model/ is the export, ready for `declutr evaluate`.
//   declutr train training_config/transformer_cls.jsonnet -s runs/transformer-small-cls
(import "transformer_mean.jsonnet") + {
  hyperparameters+:: {
    pooler: "cls",
  },
}
