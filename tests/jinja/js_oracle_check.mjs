// CI's second chat-template oracle: renders every case of tests/fixtures/jinja/
// chat_cases.json (the real templates of Llama 3, Qwen3 with tools and enable_thinking,
// Llama 2, Mistral, Gemma, ...) with @huggingface/jinja and requires the committed
// expectation, which jinja2 produced and which jinja_tests holds our interpreter to,
// byte for byte (raised messages included). Templates are found as transformers finds
// them: the override file, chat_template.jinja, chat_template.json, tokenizer_config.json
// (a string, or named templates: "tool_use" with tools, else "default").
//   node tests/jinja/js_oracle_check.mjs     (exit 1 naming every case that differs)
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const jinjaPath = join(root, "tests/oracles/node_modules/@huggingface/jinja/dist/index.js");
if (!existsSync(jinjaPath)) {
  console.error(`missing ${jinjaPath}: run npm ci --prefix tests/oracles (scripts/test.sh does)`);
  process.exit(1);
}
const { Template } = await import(pathToFileURL(jinjaPath).href);
// strftime_now sees jinja2's fixed clock (run with TZ=UTC).
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(2024, 6, 26, 13, 5, 9);
    else super(...args);
  }
};

const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const fixtures = readJson(join(root, "tests/fixtures/jinja/chat_cases.json"));
const token = (v) => (v && typeof v === "object" ? v.content : v);

function loadModel(model) {
  const dir = join(root, model.dir);
  const configPath = join(dir, "tokenizer_config.json");
  const config = existsSync(configPath) ? readJson(configPath) : {};
  let template;
  if (model.override) template = readFileSync(join(root, model.override), "utf8");
  else if (existsSync(join(dir, "chat_template.jinja"))) template = readFileSync(join(dir, "chat_template.jinja"), "utf8");
  else if (existsSync(join(dir, "chat_template.json"))) template = readJson(join(dir, "chat_template.json")).chat_template;
  else template = config.chat_template;
  const tokens = {};
  for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    if (config[k] != null) tokens[k] = token(config[k]);
  }
  return { template, tokens };
}

const models = {};
for (const [name, model] of Object.entries(fixtures.models)) models[name] = loadModel(model);
const failures = [];
for (const c of fixtures.cases) {
  const { template, tokens } = models[c.model];
  const tools = c.tools ?? null;
  const source = Array.isArray(template)
    ? Object.fromEntries(template.map((t) => [t.name, t.template]))[
        tools !== null && template.some((t) => t.name === "tool_use") ? "tool_use" : "default"]
    : template;
  const context = { ...tokens, messages: c.messages, tools, documents: c.documents ?? null,
                    add_generation_prompt: c.add_generation_prompt ?? false, ...(c.kwargs ?? {}) };
  let output, error;
  try {
    output = new Template(source).render(context);
  } catch (e) {
    error = String(e && e.message !== undefined ? e.message : e);
  }
  const ok = c.raised !== undefined ? error === c.raised : output === c.expected;
  if (!ok) failures.push(`${c.name}: want ${JSON.stringify(c.expected ?? c.raised)}, got ${JSON.stringify(output ?? error)}`);
}
console.log(`${fixtures.cases.length - failures.length} of ${fixtures.cases.length} chat cases as jinja2 renders them`);
if (failures.length) {
  for (const f of failures) console.error(f);
  process.exit(1);
}
