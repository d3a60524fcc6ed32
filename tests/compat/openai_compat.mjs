// Runs the official `openai` npm client against an OpenAI-compatible base URL (an infermesh agent) and checks
// what a user of the client relies on. Usage: node openai_compat.mjs http://127.0.0.1:PORT/v1 [MODEL]
// Exits 0 when every check passes, 1 with a message naming the failed check otherwise.
import OpenAI from 'openai';

const baseURL = process.argv[2];
if (!baseURL) {
  console.error('usage: node openai_compat.mjs BASE_URL [MODEL]   e.g. http://127.0.0.1:8080/v1');
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey: 'sk-infermesh-compat', maxRetries: 0, timeout: 30_000 });

class CheckError extends Error {}

function check(cond, what, detail) {
  if (!cond) {
    const extra = detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`;
    throw new CheckError(`${what}${extra}`);
  }
}

function checkUsage(usage, what) {
  check(usage && typeof usage === 'object', `${what}: usage present`, usage);
  check(Number.isInteger(usage.prompt_tokens) && usage.prompt_tokens > 0, `${what}: usage.prompt_tokens > 0`, usage);
  check(Number.isInteger(usage.completion_tokens) && usage.completion_tokens > 0,
    `${what}: usage.completion_tokens > 0`, usage);
  check(usage.total_tokens === usage.prompt_tokens + usage.completion_tokens,
    `${what}: usage.total_tokens = prompt + completion`, usage);
}

// With EXPECT_COST=1 the agent has a price for the model: usage.cost (OpenRouter's convention) must be there.
const expectCost = process.env.EXPECT_COST === '1';
function checkCost(usage, what) {
  if (expectCost) check(typeof usage.cost === 'number' && usage.cost > 0, `${what}: usage.cost > 0`, usage);
  else check(usage.cost === undefined, `${what}: no usage.cost without a price`, usage);
}

const checks = [];
const test = (name, fn) => checks.push({ name, fn });

let model = process.argv[3];

test('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    check(typeof m.id === 'string' && m.id.length > 0, 'models.list: every model has an id', m);
    check(m.object === 'model', "models.list: object is 'model'", m);
    ids.push(m.id);
  }
  check(ids.length > 0, 'models.list: at least one model');
  if (model) check(ids.includes(model), `models.list: includes ${model}`, ids);
  else model = ids[0];
});

test('chat.completions.create', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello to the mesh.' }],
    max_tokens: 16,
  });
  check(r.object === 'chat.completion', "chat: object is 'chat.completion'", r.object);
  check(typeof r.id === 'string' && r.id.length > 0, 'chat: id present', r);
  check(r.model === model, 'chat: model echoed', r.model);
  check(Array.isArray(r.choices) && r.choices.length === 1, 'chat: one choice', r.choices);
  const msg = r.choices[0].message;
  check(msg.role === 'assistant', 'chat: assistant role', msg);
  check(typeof msg.content === 'string' && msg.content.length > 0, 'chat: content non-empty', msg);
  check(typeof r.choices[0].finish_reason === 'string', 'chat: finish_reason present', r.choices[0]);
  checkUsage(r.usage, 'chat');
  checkCost(r.usage, 'chat');
  check(r.usage.completion_tokens <= 16, 'chat: max_tokens honoured', r.usage);
  // The raw response carries infermesh's routing headers.
  const { response } = await client.chat.completions
    .create({ model, messages: [{ role: 'user', content: 'again' }], max_tokens: 4 })
    .withResponse();
  check(response.status === 200, 'chat withResponse: status 200', response.status);
  check(!!response.headers.get('x-request-id'), 'chat: x-request-id header');
  check(!!response.headers.get('x-infermesh-target'), 'chat: x-infermesh-target header');
  if (expectCost) {
    const cost = Number(response.headers.get('x-infermesh-cost'));
    check(cost > 0, 'chat: x-infermesh-cost header', response.headers.get('x-infermesh-cost'));
  }
});

async function streamChat(extra) {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Stream a few words, please.' }],
    max_tokens: 12,
    stream: true,
    ...extra,
  });
  const chunks = [];
  let content = '';
  let finish = null;
  for await (const chunk of stream) {
    check(chunk.object === 'chat.completion.chunk', "stream: object is 'chat.completion.chunk'", chunk);
    chunks.push(chunk);
    for (const c of chunk.choices) {
      if (c.delta && typeof c.delta.content === 'string') content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { chunks, content, finish };
}

test('chat.completions.create stream', async () => {
  const { chunks, content, finish } = await streamChat({});
  const withContent = chunks.filter((c) => c.choices.some((x) => x.delta && x.delta.content));
  check(withContent.length >= 3, 'stream: several content chunks', chunks.length);
  check(content.length > 0, 'stream: content assembled', content);
  check(finish !== null, 'stream: a finish_reason arrives');
  const usageChunks = chunks.filter((c) => c.usage);
  check(usageChunks.length === 0, 'stream without include_usage: no usage chunk', usageChunks);
});

test('chat.completions.create stream include_usage', async () => {
  const { chunks, content } = await streamChat({ stream_options: { include_usage: true } });
  check(content.length > 0, 'stream+usage: content assembled', content);
  const last = chunks[chunks.length - 1];
  check(last && last.usage, 'stream+usage: the final chunk carries usage', last);
  check(Array.isArray(last.choices) && last.choices.length === 0, 'stream+usage: usage chunk has no choices', last);
  checkUsage(last.usage, 'stream+usage');
  checkCost(last.usage, 'stream+usage');
  check(last.usage.completion_tokens <= 12, 'stream+usage: max_tokens honoured', last.usage);
});

test('completions.create', async () => {
  const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 8 });
  check(r.object === 'text_completion', "completions: object is 'text_completion'", r.object);
  check(Array.isArray(r.choices) && r.choices.length === 1, 'completions: one choice', r.choices);
  check(typeof r.choices[0].text === 'string' && r.choices[0].text.length > 0, 'completions: text non-empty',
    r.choices[0]);
  checkUsage(r.usage, 'completions');
  checkCost(r.usage, 'completions');
});

test('completions.create stream', async () => {
  const stream = await client.completions.create({ model, prompt: 'Count:', max_tokens: 6, stream: true });
  let text = '';
  let n = 0;
  for await (const chunk of stream) {
    n++;
    for (const c of chunk.choices) text += c.text || '';
  }
  check(n >= 3, 'completions stream: several chunks', n);
  check(text.length > 0, 'completions stream: text assembled', text);
});

test('unknown model -> NotFoundError', async () => {
  let err = null;
  try {
    await client.chat.completions.create({
      model: 'no-such-model-infermesh-compat',
      messages: [{ role: 'user', content: 'hi' }],
    });
  } catch (e) {
    err = e;
  }
  check(err !== null, 'unknown model: the client throws');
  check(err instanceof OpenAI.NotFoundError, 'unknown model: NotFoundError', `${err && err.constructor.name}: ${err}`);
  check(err.status === 404, 'unknown model: status 404', err.status);
  check(err.code === 'model_not_found', "unknown model: code 'model_not_found'", err.code);
  check(typeof err.message === 'string' && err.message.includes('no-such-model-infermesh-compat'),
    'unknown model: message names the model', err.message);
});

test('malformed request -> BadRequestError', async () => {
  let err = null;
  try {
    // messages must be an array; the client sends what it is given.
    await client.chat.completions.create({ model, messages: 'not-an-array' });
  } catch (e) {
    err = e;
  }
  check(err instanceof OpenAI.BadRequestError, 'bad request: BadRequestError', `${err && err.constructor.name}: ${err}`);
  check(err.status === 400, 'bad request: status 400', err.status);
});

test('models.retrieve', async () => {
  const m = await client.models.retrieve(model);
  check(m.id === model && m.object === 'model', 'models.retrieve: the model object', m);
  let err = null;
  try {
    await client.models.retrieve('no-such-model-infermesh-compat');
  } catch (e) {
    err = e;
  }
  check(err instanceof OpenAI.NotFoundError, 'models.retrieve unknown: NotFoundError', `${err && err.constructor.name}`);
});

test('chat tools: tool_choice names a function', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Weather in Paris?' }],
    max_tokens: 32,
    tools: [{ type: 'function', function: { name: 'get_weather', description: 'weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const c = r.choices[0];
  check(c.finish_reason === 'tool_calls', "tools: finish_reason 'tool_calls'", c);
  const call = c.message.tool_calls && c.message.tool_calls[0];
  check(call && call.type === 'function' && call.function.name === 'get_weather', 'tools: a get_weather call', c);
  check(typeof JSON.parse(call.function.arguments).city === 'string', 'tools: arguments JSON with city', call);
});

test('chat response_format json_schema', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'A person' }],
    max_tokens: 32,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: { type: 'object',
      properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'] } } },
  });
  const doc = JSON.parse(r.choices[0].message.content);
  check(typeof doc.name === 'string' && Number.isInteger(doc.age), 'json_schema: content matches the schema', doc);
});

let failed = 0;
for (const { name, fn } of checks) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    const what = e instanceof CheckError ? e.message : `${e && e.constructor ? e.constructor.name : 'error'}: ${e && e.stack ? e.stack : e}`;
    console.log(`FAIL ${name}: ${what}`);
  }
}
if (failed) {
  console.error(`openai_compat: ${failed} of ${checks.length} checks failed against ${baseURL}`);
  process.exit(1);
}
console.log(`openai_compat: all ${checks.length} checks passed against ${baseURL} (model ${model})`);
