// The openai JavaScript SDK against Quasar's /v1/responses: prints what each call gave, as JSON.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.QUASAR_BASE_URL, apiKey: process.env.QUASAR_KEY, maxRetries: 0 });
const model = process.env.QUASAR_MODEL;
const weather = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: true,
};

const plain = await client.responses.create({ model, input: "Say hello" });
const events = [];
for await (const event of await client.responses.create({ model, input: "Say hello", stream: true })) {
  events.push(event);
}
const tool = await client.responses.create({ model, input: "Weather in Paris?", tools: [weather] });
const call = tool.output[0];
const followUp = await client.responses.create({
  model,
  previous_response_id: tool.id,
  input: [{ type: "function_call_output", call_id: call.call_id, output: "18C" }],
});
const retrieved = await client.responses.retrieve(followUp.id);
let missing = null;
try {
  await client.responses.retrieve("resp_nope");
} catch (err) {
  missing = err.status;
}
console.log(
  JSON.stringify({
    plain: plain.output_text,
    types: events.map((e) => e.type),
    sequence: events.map((e) => e.sequence_number),
    deltas: events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join(""),
    final: events.at(-1).response.output.flatMap((item) => item.content ?? []).map((part) => part.text).join(""),
    call: { type: call.type, name: call.name, arguments: call.arguments },
    followUp: followUp.output_text,
    retrieved: retrieved.id === followUp.id,
    missing,
  }),
);
