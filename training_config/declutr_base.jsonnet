// DeCLUTR-base (Giorgi et al., ACL 2021): continued pretraining of roberta-base on OpenWebText
// documents of at least 2048 tokens, one epoch, with the paper's hyperparameters.
//   declutr train training_config/declutr_base.jsonnet -s runs/declutr-base \
//     --overrides '{"train_data_path": "data/owt.txt"}'
// Another checkpoint: --ext-var TRANSFORMER_MODEL=name-or-path. More GPUs: add
// "distributed": {"cuda_devices": [0, 1, 2, 3]} to --overrides (4 documents per GPU per step).
//
// Learning-rate schedule: this is the correct slanted-triangular schedule over the real number
// of steps. The reference ran under AllenNLP 1.1 with "lazy": true, where the schedule stays at
// lr / ratio (1.5625e-6) after the first step; to reproduce that reading of the paper's run:
//   --overrides '{"trainer.learning_rate_scheduler.reproduce_lazy_bug": true}'
local lib = import "lib/declutr.libsonnet";

lib.declutr {
  hyperparameters:: {
    model_name: lib.extVarOr("TRANSFORMER_MODEL", "roberta-base"),
    max_length: null,            // model inputs up to the model maximum: 512 with special tokens

    // span sampling
    num_anchors: 2,              // A: anchors per document
    num_positives: 2,            // P: positives per anchor
    min_span_len: 32,            // span lengths in tokens
    max_span_len: 512,
    strategy: "default",  // positives adjacent to, overlapping or inside their anchor
    unit: "subword",        // tokens are the model tokenizer's subwords
    // a document shorter than num_anchors * max_span_len * 2 = 2048 tokens stops the run before
    // training (file:line, length, how many), as the reference's ValueError did; "skip" skips
    // and counts them (a WARNING with their share, and in the run summary)
    short_documents: "error",

    // objective
    pooler: "mean",              // mean over all non-padding tokens, special tokens included
    temperature: 0.05,           // NT-Xent
    contrastive_weight: 1,
    mlm_weight: 1,
    mlm_probability: 0.15,       // BERT masking of the anchors
    scale_fix: false,            // the paper trained without the multi-GPU gradient fix
    mlm_global_mean: false,      // masked LM: each GPU's own mean over its masked tokens, as the reference
    mlm_mean_groups: null,       // (declutr_*_paper_step.jsonnet: the 4-GPU mean on any number of GPUs)

    // optimisation
    batch_size: 4,               // documents per GPU per step (8 anchors)
    num_workers: 1,
    num_epochs: 1,
    lr: 5e-5,                    // AdamW
    eps: 1e-6,
    correct_bias: false,         // no bias correction
    weight_decay: 0.1,           // 0.0 for biases and LayerNorm weights (lib.noDecay)
    grad_norm: 1.0,
    cut_frac: 0.1,               // slanted triangular
    ratio: 32,
    reproduce_lazy_bug: false,   // see the top of this file
    use_amp: true,               // mixed precision (CUDA only)
  },
}
