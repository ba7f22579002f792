// DeCLUTR-small (Giorgi et al., ACL 2021): DeCLUTR-base's hyperparameters on distilroberta-base.
//   declutr train training_config/declutr_small.jsonnet -s runs/declutr-small \
//     --overrides '{"train_data_path": "data/owt.txt"}'
// The schedule is the correct slanted-triangular one; the reference's AllenNLP 1.1 "lazy" run
// (constant lr / 32 after step 0) is reproduced with
//   --overrides '{"trainer.learning_rate_scheduler.reproduce_lazy_bug": true}'
local lib = import "lib/declutr.libsonnet";

(import "declutr_base.jsonnet") + {
  hyperparameters+:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "distilroberta-base"),
  },
}
