// GGUF files parsed by @huggingface/gguf (pinned in package-lock.json), a parser that shares
// nothing with wq, for tests/reference/llama_kl_check.py.
//
// usage: node gguf_parse.mjs FILE.gguf...
// Prints one JSON line per file: {"file", "version", "metadata": {key: value}, "tensors":
// [{"name", "shape" (ggml ne order), "dtype" (ggml type id), "offset"}]}; arrays in the
// metadata are reduced to their length, big integers to numbers.
import {gguf} from "@huggingface/gguf";

for (const file of process.argv.slice(2)) {
  const {metadata, tensorInfos} = await gguf(file, {allowLocalFile: true});
  const meta = {};
  for (const [key, value] of Object.entries(metadata)) {
    meta[key] = Array.isArray(value) ? {length: value.length} : typeof value === "bigint" ? Number(value) : value;
  }
  const tensors = tensorInfos.map((t) => ({name: t.name, shape: t.shape.map(Number), dtype: t.dtype,
                                           offset: Number(t.offset)}));
  console.log(JSON.stringify({file, version: Number(metadata.version), metadata: meta, tensors}));
}
