// Masked-LM pretraining from scratch on a CPU: a 4-layer, 256-wide BERT (5.4M parameters with
// an 8,192-token WordPiece vocabulary trained on the corpus) on contiguous 128-token windows of the Gutenberg
// training split (packed: no padding), logits only at the masked positions. This config made
// the shipped raw checkpoint models/bert-mini-gutenberg (its README.md has the command,
// the data hash and the loss curve).
//   declutr tokenizer ../shared/data/gutenberg_docs/train.jsonl -o runs/tokenizer --vocab-size 8192 --max-length 128
//   declutr train training_config/pretrain_small.jsonnet -s runs/pretrain --ext-var TOKENIZER=runs/tokenizer
// Continue an interrupted run exactly with --recover.
local lib = import "lib/declutr.libsonnet";
local tokenizer = lib.extVarOr("TOKENIZER", "models/bert-mini-gutenberg");
local data = lib.extVarOr("DATA_DIR", "../shared/data") + "/gutenberg_docs";
local window = 128;  // tokens per input, [CLS] and [SEP] included

{
  dataset_reader: {
    type: "windows",
    tokenizer: { model_name: tokenizer, max_length: window },
    mlm_probability: 0.15,
  },
  train_data_path: data + "/train.jsonl",
  validation_data_path: data + "/valid.jsonl",
  data_loader: { batch_size: 16, drop_last: true },  // 2,048 tokens a step: more, smaller steps learn faster here
  validation_data_loader: { batch_size: 64, shuffle: false },
  model: {
    type: "declutr",
    contrastive_weight: 0,  // masked LM only: the anchors are the windows
    encoder: {
      type: "transformer",
      architecture: {
        model_type: "bert",
        vocab_size: 8192,
        hidden_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 1024,
        max_position_embeddings: window,
        // no dropout while pretraining: with one pass over a small corpus the model underfits
        // (as Cramming, Geiping & Goldstein 2023); continued training sets model.encoder.dropout
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
      },
      init_seed: 13,
    },
    pooler: { type: "mean" },
  },
  trainer: {
    max_steps: 6000,  // 12.3M tokens, 1.3 epochs
    optimizer: {
      type: "adamw", lr: 1e-3, betas: [0.9, 0.98], eps: 1e-6, correct_bias: true, weight_decay: 0.01,
      parameter_groups: [[lib.noDecay, { weight_decay: 0.0 }]],
    },
    learning_rate_scheduler: { type: "linear_with_warmup", warmup_steps: 500 },
    grad_norm: 1.0,
    log_every: 20,
    checkpoint_every: 250,
    validation_every: 2000,
  },
  random_seed: 13,
}
