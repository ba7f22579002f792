// Unsupervised SimCSE (Gao et al., EMNLP 2021): each sentence is its own positive; the two views
// differ only by dropout. Paper data: 1M English Wikipedia sentences, one per line.
//   declutr train training_config/simcse_unsup.jsonnet -s runs/simcse-unsup \
//     --overrides '{"train_data_path": "data/wiki1m_for_simcse.txt"}'
// SimCSE selects its checkpoint on STS-B dev during training: with --ext-var
// DECLUTR_SENTEVAL_DIR=path/to/senteval the best model is kept in RUN/best_model (RUN/model holds the last).
local lib = import "lib/declutr.libsonnet";

lib.simcse {
  hyperparameters:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "bert-base-uncased"),
    reader: "simcse_unsupervised",
    max_length: 32,              // tokens per sentence, special tokens included
    // dropout 0.1 is the checkpoint's own (hidden_dropout_prob / attention_probs_dropout_prob);
    // the views need it: without dropout the representation collapses

    pooler: "cls_mlp",           // [CLS] through an MLP in training, plain [CLS] at test
    temperature: 0.05,
    hard_negative_weight: 0,     // unused: no hard negatives

    batch_size: 64,
    num_workers: 1,
    num_epochs: 1,
    lr: 3e-5,
    // from SimCSE's code (Hugging Face Trainer defaults), not stated in the paper:
    eps: 1e-8,
    correct_bias: true,
    weight_decay: 0.0,
    warmup_steps: 0,             // linear decay to 0, no warm-up
    grad_norm: 1.0,
    use_amp: true,               // SimCSE's run scripts pass --fp16 (CUDA only)
    seed: 42,
    senteval_dir: lib.extVarOr("DECLUTR_SENTEVAL_DIR", null),  // STS-B dev selection when given
    evaluate_every: 250,         // SimCSE evaluates every 250 steps and keeps the best
  },
}
