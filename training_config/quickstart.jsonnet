// DeCLUTR on a CPU: continued pretraining of a small checkpoint on the shipped Gutenberg sample,
// with the paper's objective (span contrastive + masked LM) and CPU-sized spans.
//   declutr train training_config/quickstart.jsonnet -s runs/quickstart --ext-var TRANSFORMER_MODEL=PATH
local model = std.extVar("TRANSFORMER_MODEL");
{
  dataset_reader: {
    type: "declutr",
    tokenizer: { model_name: model },
    span_sampler: { type: "declutr", num_anchors: 2, num_positives: 2, min_span_len: 16, max_span_len: 64 },
    mlm_probability: 0.15,
  },
  train_data_path: "data/quickstart/gutenberg_sample.jsonl",
  data_loader: { batch_size: 8, drop_last: true },
  model: {
    type: "declutr",
    encoder: { type: "transformer", model_name: model },
    pooler: { type: "mean" },
    loss: { type: "nt_xent", temperature: 0.05 },
  },
  trainer: {
    num_epochs: 1,
    optimizer: {
      type: "adamw", lr: 5e-5, eps: 1e-6, correct_bias: false, weight_decay: 0.1,
      parameter_groups: [[["bias", "LayerNorm\\.weight", "layer_norm\\.weight"], { weight_decay: 0.0 }]],
    },
    learning_rate_scheduler: { type: "slanted_triangular", cut_frac: 0.1, ratio: 32 },
    grad_norm: 1.0,
    log_every: 5,
    checkpoint_every: 20,
  },
  random_seed: 13,
}
