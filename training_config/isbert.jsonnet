// IS-BERT-NLI (Zhang et al., EMNLP 2020): mutual information between each sentence and its
// CNN token features, trained on the sentences of SNLI + MultiNLI without their labels
// (plain text, one sentence per line).
//   declutr train training_config/isbert.jsonnet -s runs/isbert-nli \
//     --overrides '{"train_data_path": "data/nli_sentences.txt"}'
// Values marked "reference code" come from the authors' training script and trainer
// (github.com/yanzhangnlp/IS-BERT), not from the paper's text.
local lib = import "lib/declutr.libsonnet";

lib.isbert {
  hyperparameters:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "bert-base-uncased"),
    max_length: 130,             // reference code: 128 tokens plus [CLS] and [SEP]

    kernel_sizes: [1, 3, 5],     // one 1-D convolution per window size
    out_channels: 256,           // reference code: 256 filters per window size (768 in all)
    // reference code: no activation after the convolutions (models/CNN.py returns conv(x)), so
    // this follows the code that produced the published numbers; "relu" gives the ReLU of
    // the paper's description (Zhang et al., EMNLP 2020) (docs/configs.md).
    cnn_activation: null,

    batch_size: 32,              // reference code
    num_workers: 1,
    num_epochs: 1,               // reference code
    lr: 5e-6,                    // reference code (one version of it has 2e-6 and eps 1e-7)
    eps: 1e-6,                   // reference code
    correct_bias: false,         // reference code
    weight_decay: 0.01,          // reference code; 0.0 for biases and LayerNorm weights
    warmup_ratio: 0.1,           // reference code: linear warm-up over 10% of the steps, then linear decay
    grad_norm: 1.0,              // reference code
    use_amp: false,              // reference code
  },
}
