// Supervised SimCSE (Gao et al., EMNLP 2021): NLI triplets (premise, entailment as positive,
// contradiction as hard negative), CSV with the columns sent0, sent1, hard_neg (SimCSE's
// nli_for_simcse.csv) or JSON lines with those fields.
//   declutr train training_config/simcse_sup.jsonnet -s runs/simcse-sup \
//     --overrides '{"train_data_path": "data/nli_for_simcse.csv"}'
// SimCSE selects its checkpoint on STS-B dev during training: with --ext-var
// DECLUTR_SENTEVAL_DIR=path/to/senteval the best model is kept in RUN/best_model (RUN/model holds the last).
local lib = import "lib/declutr.libsonnet";

lib.simcse {
  hyperparameters:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "bert-base-uncased"),
    reader: "simcse_supervised",
    max_length: 32,              // from SimCSE's run script (the same as unsupervised)

    // [CLS] through an MLP in training only. Our choice: SimCSE's released supervised models
    // keep the MLP at test; for that use pooler "cls" plus
    // model.feedforward {hidden_dims: 768, activations: "tanh", at_inference: true} (bert-base).
    pooler: "cls_mlp",
    temperature: 0.05,
    hard_negative_weight: 0,     // SimCSE's default: hard negatives weigh like in-batch ones

    batch_size: 512,
    num_workers: 1,
    num_epochs: 3,
    lr: 5e-5,
    // from SimCSE's code (Hugging Face Trainer defaults), not stated in the paper:
    eps: 1e-8,
    correct_bias: true,
    weight_decay: 0.0,
    warmup_steps: 0,
    grad_norm: 1.0,
    use_amp: true,
    seed: 42,
    senteval_dir: lib.extVarOr("DECLUTR_SENTEVAL_DIR", null),  // STS-B dev selection when given
    evaluate_every: 250,         // SimCSE evaluates every 250 steps and keeps the best
  },
}
