// Shared building blocks of the shipped experiments (docs/configs.md).
//
// An experiment file fills the hidden object `hyperparameters`, laid out like a paper's table,
// and one template below turns it into declutr's experiment schema. The templates read
// `self.hyperparameters` late, so a file can start from another and change single values:
//   (import "declutr_base.jsonnet") + { hyperparameters+:: { mlm_weight: 0 } }
// Anything else can still be changed on the command line with --overrides (final keys, e.g.
// {"train_data_path": "data/owt.txt", "trainer.optimizer.lr": 1e-4}).

// `std.extVar(name)`, or `default` when NAME is neither given with --ext-var nor set in the
// environment. declutr's loader defines the ext code DECLUTR_EXT_VARS (every ext var as one
// object) for this; with the plain `jsonnet` binary pass --ext-code DECLUTR_EXT_VARS='{}'.
local extVarOr(name, default) =
  local given = std.extVar("DECLUTR_EXT_VARS");
  if std.objectHas(given, name) then given[name] else default;

// Parameter-name regexes (re.search) that get no weight decay: biases and LayerNorm weights.
local noDecay = ["bias", "LayerNorm\\.weight", "layer_norm\\.weight"];

local adamw(h) = {
  type: "adamw",
  lr: h.lr,
  eps: h.eps,
  correct_bias: h.correct_bias,
  weight_decay: h.weight_decay,
  parameter_groups: [[noDecay, { weight_decay: 0.0 }]],
};

local encoder(h) = { type: "transformer", model_name: h.model_name };

// The hyperparameters each template reads: the one place to add a knob (a template that reads a
// new one lists it here). Any other name in an experiment's `hyperparameters` is an error, so a
// misspelt `mlm_weigth` cannot silently train with the default.
local knownHyperparameters = {
  local optimizer = ["lr", "eps", "correct_bias", "weight_decay", "grad_norm", "use_amp", "num_epochs"],
  declutr: optimizer + [
    "model_name", "max_length", "num_anchors", "num_positives", "min_span_len", "max_span_len",
    "strategy", "unit", "mlm_probability", "batch_size", "num_workers", "pooler", "temperature",
    "contrastive_weight", "mlm_weight", "scale_fix", "mlm_global_mean", "mlm_mean_groups", "cut_frac", "ratio",
    "reproduce_lazy_bug", "short_documents",
  ],
  transformer: ["model_name", "pooler"],
  simcse: optimizer + [
    "model_name", "max_length", "reader", "batch_size", "num_workers", "pooler", "temperature",
    "hard_negative_weight", "warmup_steps", "evaluate_every", "senteval_dir", "seed",
  ],
  isbert: optimizer + [
    "model_name", "max_length", "batch_size", "num_workers", "kernel_sizes", "out_channels", "cnn_activation",
    "warmup_ratio",
  ],
};

// Names of earlier releases: each hyperparameter now has its final key's name (one name per knob).
local renamedHyperparameters = { transformer_model: "model_name", sampling_strategy: "strategy", span_unit: "unit" };

// true, or an error naming every hyperparameter `template` does not know.
local onlyKnown(template, h) =
  local known = std.set(knownHyperparameters[template]);
  local unknown = std.setDiff(std.set(std.objectFieldsAll(h)), known);
  local describe(name) =
    if std.objectHas(renamedHyperparameters, name) then "%s (renamed %s)" % [name, renamedHyperparameters[name]] else name;
  std.length(unknown) == 0 || error (
    "unknown hyperparameters of the %s template: %s (known: %s)"
    % [template, std.join(", ", std.map(describe, unknown)), std.join(", ", known)]
  );

{
  extVarOr:: extVarOr,
  noDecay:: noDecay,
  knownHyperparameters:: knownHyperparameters,

  // DeCLUTR (Giorgi et al., ACL 2021): spans sampled from documents, NT-Xent between anchors
  // and their averaged positives plus masked LM on the anchors, slanted-triangular schedule.
  declutr:: {
    local h = self.hyperparameters,
    assert onlyKnown("declutr", self.hyperparameters),
    hyperparameters:: error "set hyperparameters (see declutr_base.jsonnet)",
    dataset_reader: {
      type: "declutr",
      tokenizer: { model_name: h.model_name, max_length: h.max_length },
      span_sampler: {
        type: "declutr",
        num_anchors: h.num_anchors,
        num_positives: h.num_positives,
        min_span_len: h.min_span_len,
        max_span_len: h.max_span_len,
        strategy: h.strategy,
        unit: h.unit,
      },
      mlm_probability: h.mlm_probability,
      short_documents: h.short_documents,
    },
    train_data_path: null,  // --overrides '{"train_data_path": "data/owt.txt"}'
    validation_data_path: null,
    data_loader: { batch_size: h.batch_size, num_workers: h.num_workers, drop_last: true },
    model: {
      type: "declutr",
      encoder: encoder(h),
      pooler: { type: h.pooler },
      loss: { type: "nt_xent", temperature: h.temperature },
      contrastive_weight: h.contrastive_weight,
      mlm_weight: h.mlm_weight,
      scale_fix: h.scale_fix,
      mlm_global_mean: h.mlm_global_mean,
      mlm_mean_groups: h.mlm_mean_groups,
    },
    trainer: {
      num_epochs: h.num_epochs,
      optimizer: adamw(h),
      learning_rate_scheduler: {
        type: "slanted_triangular",
        cut_frac: h.cut_frac,
        ratio: h.ratio,
        reproduce_lazy_bug: h.reproduce_lazy_bug,
      },
      grad_norm: h.grad_norm,
      use_amp: h.use_amp,  // CUDA only: on CPU the trainer warns and trains in float32
    },
    distributed: null,  // --overrides '{"distributed": {"cuda_devices": [0, 1, 2, 3]}}'
    random_seed: 13,
  },

  // An untrained checkpoint exported as a sentence encoder (the paper's "Transformer-small/base"
  // baselines): the no_op trainer writes the run directory's model/ without training.
  transformer:: {
    local h = self.hyperparameters,
    assert onlyKnown("transformer", self.hyperparameters),
    hyperparameters:: error "set hyperparameters (see transformer_mean.jsonnet)",
    dataset_reader: { type: "declutr", tokenizer: { model_name: h.model_name } },  // only its tokenizer is used
    train_data_path: null,
    // mlm_weight 0: the encoder is loaded (and exported) without its masked-LM head
    model: { type: "declutr", encoder: encoder(h), pooler: { type: h.pooler }, mlm_weight: 0 },
    trainer: { type: "no_op" },
    random_seed: 13,
  },

  // SimCSE (Gao et al., EMNLP 2021): unsupervised (each sentence its own positive, two dropout
  // views) or supervised (NLI triplets with the contradiction as hard negative), InfoNCE.
  simcse:: {
    local h = self.hyperparameters,
    assert onlyKnown("simcse", self.hyperparameters),
    hyperparameters:: error "set hyperparameters (see simcse_unsup.jsonnet)",
    dataset_reader: {
      type: h.reader,
      tokenizer: { model_name: h.model_name, max_length: h.max_length },
    },
    train_data_path: null,
    validation_data_path: null,
    data_loader: { batch_size: h.batch_size, num_workers: h.num_workers, drop_last: true },
    model: {
      type: "simcse",
      encoder: encoder(h),
      pooler: { type: h.pooler },
      loss: { type: "info_nce", temperature: h.temperature, hard_negative_weight: h.hard_negative_weight },
      scale_fix: false,
    },
    trainer: {
      num_epochs: h.num_epochs,
      optimizer: adamw(h),
      learning_rate_scheduler: { type: "linear_with_warmup", warmup_steps: h.warmup_steps },
      grad_norm: h.grad_norm,
      use_amp: h.use_amp,
      // SimCSE's checkpoint selection: STS-B dev cosine Spearman every `evaluate_every` steps, the
      // best model kept in RUN/best_model. On when SentEval's data folder is given
      // (--ext-var DECLUTR_SENTEVAL_DIR=path or the environment); off otherwise.
      callbacks: if h.senteval_dir == null then [] else [
        { type: "senteval", data_dir: h.senteval_dir, task: "STSBenchmark", split: "dev",
          every: h.evaluate_every, keep_best: true },
      ],
    },
    distributed: null,
    random_seed: h.seed,
  },

  // IS-BERT (Zhang et al., EMNLP 2020): CNN over the token vectors, Jensen-Shannon mutual
  // information between each sentence and its own local features, plain sentences, no labels.
  isbert:: {
    local h = self.hyperparameters,
    assert onlyKnown("isbert", self.hyperparameters),
    hyperparameters:: error "set hyperparameters (see isbert.jsonnet)",
    dataset_reader: { type: "isbert", tokenizer: { model_name: h.model_name, max_length: h.max_length } },
    train_data_path: null,
    validation_data_path: null,
    data_loader: { batch_size: h.batch_size, num_workers: h.num_workers, drop_last: true },
    model: {
      type: "isbert",
      encoder: encoder(h),
      pooler: { type: "cnn", kernel_sizes: h.kernel_sizes, out_channels: h.out_channels, activation: h.cnn_activation },
      loss: { type: "infomax" },
    },
    trainer: {
      num_epochs: h.num_epochs,
      optimizer: adamw(h),
      learning_rate_scheduler: { type: "linear_with_warmup", warmup_ratio: h.warmup_ratio },
      grad_norm: h.grad_norm,
      use_amp: h.use_amp,
    },
    distributed: null,
    random_seed: 13,
  },
}
