// Ablation: DeCLUTR without the masked-LM objective (no masking, no MLM head), on DeCLUTR-small's
// checkpoint unless --ext-var TRANSFORMER_MODEL=... says otherwise.
//   declutr train training_config/contrastive_only.jsonnet -s runs/contrastive-only \
//     --overrides '{"train_data_path": "data/owt.txt"}'
(import "declutr_small.jsonnet") + {
  hyperparameters+:: {
    mlm_weight: 0,
    mlm_probability: null,
  },
}
