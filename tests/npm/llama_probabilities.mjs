// Next-token probabilities of GGUF models, computed by the real llama.cpp (node-llama-cpp's
// prebuilt CPU build, pinned in package-lock.json), for tests/reference/llama_kl_check.py.
//
// usage: node llama_probabilities.mjs TOKENS MODEL.gguf...
//   TOKENS: comma-separated token ids, evaluated from an empty context.
// Prints one JSON line per model: {"model": path, "probabilities": [p_0, ..., p_{n_vocab-1}]}
// for the position after the last token; a model that fails to load prints {"model", "error"}.
// One thread: the results are the same run to run. The end-of-generation token is yielded like
// any other, or a prompt whose sampled next token is EOS would give nothing.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [tokensArg, ...models] = process.argv.slice(2);
if (!tokensArg || models.length === 0) {
  console.error("usage: node llama_probabilities.mjs TOKENS MODEL.gguf...");
  process.exit(2);
}
const tokens = tokensArg.split(",").map(Number);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error});
for (const modelPath of models) {
  let model;
  try {
    model = await llama.loadModel({modelPath});
  } catch (e) {
    console.log(JSON.stringify({model: modelPath, error: String(e && e.message || e)}));
    continue;
  }
  const context = await model.createContext({contextSize: 64, batchSize: 64, threads: 1});
  const sequence = context.getSequence();
  const it = sequence.evaluateWithMetadata(tokens, {probabilities: true}, {temperature: 1, topK: 0, topP: 1, minP: 0, yieldEogToken: true});
  const first = await it.next();
  await it.return();
  const n = model.tokens.vocabularySize ?? 320;
  const p = new Array(n).fill(0);
  for (const [id, prob] of first.value.probabilities) p[id] = prob;
  console.log(JSON.stringify({model: modelPath, probabilities: p}));
  await context.dispose();
  await model.dispose();
}
await llama.dispose();
