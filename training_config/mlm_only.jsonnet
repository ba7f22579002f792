// Ablation: DeCLUTR's masked-LM objective alone (continued masked-LM pretraining on the anchors),
// on DeCLUTR-small's checkpoint unless --ext-var TRANSFORMER_MODEL=... says otherwise.
// P = 1 as in the reference (the positives are sampled but unused).
//   declutr train training_config/mlm_only.jsonnet -s runs/mlm-only \
//     --overrides '{"train_data_path": "data/owt.txt"}'
(import "declutr_small.jsonnet") + {
  hyperparameters+:: {
    contrastive_weight: 0,
    num_positives: 1,
  },
}
