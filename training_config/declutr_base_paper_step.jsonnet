// DeCLUTR-base with the paper's optimizer step on 1, 2, 4 or 8 GPUs (--ext-var GPUS=N, default 1).
//   declutr train training_config/declutr_base_paper_step.jsonnet -s runs/declutr-base --ext-var GPUS=1 \
//     --overrides '{"train_data_path": "data/owt.txt"}'
// The paper trained on 4 GPUs with 4 documents each, without scale_fix. One step therefore saw 16
// documents (32 anchors, 62 negatives each), and DDP's averaging of the 4 ranks' gradients made it
// the gradient of  contrastive / 4 + (the mean of the 4 ranks' own masked-LM means):  rank r's loss
// is C + M_r with C computed on the gathered global batch but differentiated only through rank r's
// own embeddings, so the 4 ranks' contrastive gradients sum to the full-batch gradient of C and
// their average is 1/4 of it. On N GPUs with 16/N documents each the same averaging gives C * w / N
// for a contrastive weight w, so w = N / 4 reproduces the 1/4; the masked-LM term is the mean of 4
// group means (mlm_mean_groups: 4, the step's documents in rank order cut into the paper's 4 ranks'
// shares), which on 4 GPUs is each rank's own mean again. So (dropout masks aside) every N trains the
// paper's 4-GPU step: the same documents, negatives and gradient. N = 4 is declutr_base.jsonnet itself.
// Memory: 16 documents on one GPU hold 32 anchors and 64 positives of up to 512 tokens at once; add
// "model.encoder.gradient_checkpointing": true to --overrides when it does not fit.
local lib = import "lib/declutr.libsonnet";
local gpus = std.parseInt(lib.extVarOr("GPUS", "1"));
local paperDocuments = 16;  // 4 GPUs x 4 documents
local paperGpus = 4;

assert std.member([1, 2, 4, 8], gpus) : "GPUS must be 1, 2, 4 or 8 (16 documents per step split evenly), got %d" % gpus;

(import "declutr_base.jsonnet") + {
  hyperparameters+:: {
    batch_size: paperDocuments / gpus,         // documents per GPU per step: 16, 8, 4, 2
    contrastive_weight: gpus / paperGpus,      // 0.25, 0.5, 1, 2: the paper's 1/4 after DDP's average
    mlm_mean_groups: paperGpus,                // the mean of the paper's 4 ranks' masked-LM means
  },
  distributed: if gpus == 1 then null else { cuda_devices: std.range(0, gpus - 1) },
}
