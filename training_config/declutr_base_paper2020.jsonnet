// DeCLUTR-base as the released 2020 models were trained (the paper-era reference code, a6103d0):
// spans of 32-512 *whitespace words* (text.split()), the minimum document of
// num_anchors * max_span_len * 2 = 2048 counted in words too, and every span then truncated to
// the model maximum, 510 subword tokens plus <s> and </s>. declutr_base.jsonnet is the 2021
// reference (PR #214): spans counted in subword tokens. Everything else is the same.
//   python bin/preprocess_openwebtext.py openwebtext/ data/owt-words.txt --min-length 2048 --unit whitespace
//   declutr train training_config/declutr_base_paper2020.jsonnet -s runs/declutr-base-2020 \
//     --overrides '{"train_data_path": "data/owt-words.txt"}'
(import "declutr_base.jsonnet") + {
  hyperparameters+:: {
    unit: "whitespace",     // span lengths and the 2048 minimum in whitespace words
    max_length: null,            // each span truncated to the model maximum: 512 with special tokens
  },
}
